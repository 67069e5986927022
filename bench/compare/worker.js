// One thread of the comparison (run.js starts them): either the publisher
// or a share of the subscribers, on either server, through the same code.
//
// The publisher sends event i only while i - (lowest low-water mark of the
// subscriber threads, shared.js) <= window and it has fewer than `window`
// publishes unanswered: at most `window` publishes unacknowledged and at
// most `window` events undelivered per subscriber, on both servers alike.
import { parentPort, workerData } from 'node:worker_threads';
import { EdgeConnection, startTicks as edgeTicks } from './edge-client.js';
import { SocketIoConnection, startTicks as sioTicks } from './socketio-client.js';
import { PHASE, WAITING, SLOTS, WARMUP, MEASURING, BUCKETS } from './shared.js';

const { role, system, url, ids, slot, subscriberThreads, window, payloadBytes, runId, clockBase } = workerData;
const ctl = new Int32Array(workerData.ctl);
const Connection = system === 'edge' ? EdgeConnection : SocketIoConnection;
const startTicks = system === 'edge' ? edgeTicks : sioTicks;
const base = BigInt(clockBase);
/// Microseconds on the monotonic clock, the same in every thread.
const nowUs = () => Number(process.hrtime.bigint() - base) / 1000;

async function subscribers() {
  const hist = new Uint32Array(BUCKETS);
  let delivered = 0, outOfOrder = 0, reportQueued = false;
  const highest = new Array(ids.length).fill(0);
  const report = () => {
    reportQueued = false;
    let low = Infinity;
    for (const h of highest) if (h < low) low = h;
    Atomics.store(ctl, SLOTS + slot, low);
    if (Atomics.exchange(ctl, WAITING, 0) === 1) workerData.wake.postMessage(0);
  };
  const connections = [];
  const connect = (id, k) => {
    const c = new Connection(url, id, {
      onEvent: (p) => {
        if (p.i !== highest[k] + 1) outOfOrder++;
        if (p.i > highest[k]) highest[k] = p.i;
        if (Atomics.load(ctl, PHASE) === MEASURING) {
          delivered++;
          hist[Math.min(BUCKETS - 1, Math.round((nowUs() - p.t) / 10))]++;
        }
        if (!reportQueued) { reportQueued = true; setImmediate(report); }
      },
    });
    connections.push(c);
    return c.ready;
  };
  // At most 64 handshakes at once per thread.
  for (let k = 0; k < ids.length; k += 64) {
    await Promise.all(ids.slice(k, k + 64).map((id, j) => connect(id, k + j)));
  }
  const stopTicks = startTicks(connections);
  parentPort.postMessage({ ready: true });
  parentPort.on('message', (m) => {
    if (m !== 'report') return;
    stopTicks();
    const sum = (k) => connections.reduce((n, c) => n + c[k], 0);
    parentPort.postMessage({
      delivered, outOfOrder, hist,
      gaps: sum('gaps'), holes: sum('holes'), duplicates: sum('duplicates'),
    }, [hist.buffer]);
  });
}

async function publisher() {
  const pad = Buffer.alloc(payloadBytes);
  let published = 0, publishedMeasured = 0, pumping = false;
  const c = new Connection(url, `bench-${runId}-publisher`, { onAnswer: () => pump() });
  await c.ready;
  const w = Math.min(window, c.window);
  const lowWater = () => {
    let low = Infinity;
    for (let s = 0; s < subscriberThreads; s++) {
      const v = Atomics.load(ctl, SLOTS + s);
      if (v < low) low = v;
    }
    return low;
  };
  function pump() {
    if (pumping) return;
    const phase = Atomics.load(ctl, PHASE);
    if (phase !== WARMUP && phase !== MEASURING) return;
    pumping = true;
    let low = lowWater();
    for (;;) {
      while (published - c.answered < w && published + 1 - low <= w) {
        published++;
        if (phase === MEASURING) publishedMeasured++;
        c.publish({ i: published, t: Math.round(nowUs()), pad });
      }
      if (published + 1 - low <= w) break; // waiting for answers: onAnswer pumps
      // Waiting for a subscriber: ask to be woken, then look again (its
      // progress may have come in between).
      Atomics.store(ctl, WAITING, 1);
      const again = lowWater();
      if (again === low) break;
      low = again;
    }
    pumping = false;
  }
  for (const port of workerData.wake) port.on('message', pump);
  const stopTicks = startTicks([c]);
  parentPort.postMessage({ ready: true });
  await new Promise((resolve) => parentPort.once('message', resolve));
  pump();
  // Until run.js says stop; meanwhile answers and wake-ups pump.
  await new Promise((resolve) => parentPort.once('message', resolve));
  stopTicks();
  for (const port of workerData.wake) port.close();
  parentPort.on('message', (m) => {
    if (m !== 'report') return;
    parentPort.postMessage({ published, publishedMeasured, answered: c.answered, rejected: c.rejected });
  });
  parentPort.postMessage({ stopped: true });
}

(role === 'publisher' ? publisher() : subscribers()).catch((e) => {
  parentPort.postMessage({ error: String(e?.stack ?? e) });
});
