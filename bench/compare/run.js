// One run of the comparison against a server that is already running
// (`cargo xtask bench` starts a fresh one per run): N subscribers spread
// over `--workers` threads, one publisher in its own thread, the same code
// and flow control for both servers (worker.js). Prints one JSON line.
//   node run.js --system edge --url ws://127.0.0.1:PORT/ws --server-pid PID --clients 100
//   node run.js --system socketio --url http://127.0.0.1:PORT --server-pid PID --clients 100
import { readFileSync } from 'node:fs';
import { MessageChannel, Worker } from 'node:worker_threads';
import { PHASE, SLOTS, WARMUP, MEASURING, STOPPED, BUCKETS } from './shared.js';

const args = Object.fromEntries(process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith('--') ? [...acc, [a.slice(2), all[i + 1]]] : acc), []));
const system = args.system;
if (system !== 'edge' && system !== 'socketio') throw new Error('--system edge|socketio');
const url = args.url;
const serverPid = Number(args['server-pid']);
const clients = Number(args.clients ?? 100);
const seconds = Number(args.seconds ?? 5);
const warmup = Number(args.warmup ?? 2);
const window = Number(args.window ?? 32);
const payloadBytes = Number(args['payload-bytes'] ?? 64);
const threads = Math.max(1, Math.min(clients, Number(args.workers ?? 2)));
const runId = `${process.pid}-${Date.now()}`;

const ticks = (pid) => {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return Number(fields[11]) + Number(fields[12]);
};
const rssMib = (pid) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const seconds_ = () => Number(process.hrtime.bigint()) / 1e9;

const ctl = new Int32Array(new SharedArrayBuffer(4 * (SLOTS + threads)));
const setPhase = (p) => Atomics.store(ctl, PHASE, p);
const common = { system, url, ctl: ctl.buffer, subscriberThreads: threads, window, payloadBytes, runId, clockBase: String(process.hrtime.bigint()) };

const start = (data, transferList = []) => {
  const w = new Worker(new URL('./worker.js', import.meta.url), { workerData: { ...common, ...data }, transferList });
  w.on('error', (e) => { console.error(e); process.exit(2); });
  w.on('message', (m) => { if (m.error) { console.error(`worker: ${m.error}`); process.exit(2); } });
  return w;
};
const next = (w) => new Promise((resolve) => w.once('message', resolve));

const connectStarted = seconds_();
const subs = [];
// One channel from each subscriber thread to the publisher, for wake-ups.
const wakes = [];
for (let t = 0; t < threads; t++) {
  const ids = [];
  for (let k = t; k < clients; k += threads) ids.push(`bench-${runId}-sub-${k}`);
  const { port1, port2 } = new MessageChannel();
  wakes.push(port2);
  subs.push(start({ role: 'subscribers', ids, slot: t, wake: port1 }, [port1]));
}
await Promise.all(subs.map(next));
const pub = start({ role: 'publisher', wake: wakes }, wakes);
await next(pub);
const connectSeconds = seconds_() - connectStarted;

setPhase(WARMUP);
pub.postMessage('go');
await sleep(warmup * 1000);
const cpu0 = process.cpuUsage();
const ticks0 = ticks(serverPid);
const t0 = seconds_();
setPhase(MEASURING);
await sleep(seconds * 1000);
setPhase(STOPPED);
pub.postMessage('stop');
const t1 = seconds_();
const ticks1 = ticks(serverPid);
const cpu1 = process.cpuUsage(cpu0);
const serverRss = rssMib(serverPid);
await next(pub);

const reports = await Promise.all([pub, ...subs].map((w) => { const r = next(w); w.postMessage('report'); return r; }));
const [p, ...s] = reports;
const hist = new Float64Array(BUCKETS);
let delivered = 0, outOfOrder = 0, gaps = 0, holes = 0, duplicates = 0;
for (const r of s) {
  delivered += r.delivered; outOfOrder += r.outOfOrder; gaps += r.gaps; holes += r.holes; duplicates += r.duplicates;
  for (let i = 0; i < BUCKETS; i++) if (r.hist[i]) hist[i] += r.hist[i];
}
const samples = hist.reduce((a, b) => a + b, 0);
const quantile = (q) => {
  const target = Math.ceil(q * samples);
  let seen = 0;
  for (let i = 0; i < BUCKETS; i++) { seen += hist[i]; if (seen >= target && seen > 0) return (i * 10) / 1000; }
  return null;
};
const elapsed = t1 - t0;
const serverCpuSeconds = (ticks1 - ticks0) / 100;
console.log(JSON.stringify({
  system, clients, seconds: elapsed, warmup, window, payload_bytes: payloadBytes, threads,
  connect_seconds: connectSeconds,
  published_per_sec: p.publishedMeasured / elapsed,
  delivered_per_sec: delivered / elapsed,
  delivered,
  p50_ms: quantile(0.5), p99_ms: quantile(0.99), p999_ms: quantile(0.999),
  server_cpu_percent: (serverCpuSeconds / elapsed) * 100,
  server_cpu_us_per_delivery: delivered > 0 ? (serverCpuSeconds * 1e6) / delivered : null,
  server_rss_mib: serverRss,
  client_cpu_percent: ((cpu1.user + cpu1.system) / 1e6 / elapsed) * 100,
  rejected: p.rejected, out_of_order: outOfOrder, gaps, holes, duplicates,
}));
process.exit(0);
