// Beyond the README: every event's payload is typed, options are optional.
import init, { Link, type StateEvent, type LinkEvents } from 'station-link';
await init();
const link = new Link('ws://127.0.0.1:8080/ws', { maxAttempts: 5, fallbackUrls: ['ws://10.0.0.2:8080/ws'], consoleName: null });
const onState = (s: StateEvent) => console.log(s.state === 'failed', s.access);
link.on('state', onState);
link.off('state', onState);
link.on('latency', ({ rttMs, p95Ms }) => console.log(rttMs + (p95Ms ?? 0)));
link.on('rejected', ({ clientSeq, reason }) => console.log(clientSeq, reason));
link.on('error', ({ kind, message }) => console.log(kind === 'unauthorized', message));
link.on('snapshot', ({ restored, asOfMs }) => console.log(restored, asOfMs));
link.send('note');
link.send('radio.set_mode', { mode: 'CW' }, { delivery: 'reliable' });
const rtt: number = await link.testConnection();
const seq: number = link.status().lastSeq + link.metrics().last_seq + rtt;
const names: (keyof LinkEvents)[] = ['state', 'event', 'gap', 'quality', 'accepted', 'maxAttemptsReached', 'reconnected'];
console.log(seq, names);
