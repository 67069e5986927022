// Drives server.js with the workload of `loadgen throughput`: N subscribers,
// one publisher, 64-byte payloads carrying the send time; reports delivered
// events/s, latency percentiles, server CPU and RSS, as one JSON line.
//   node load.js --clients 100 --rate 0 --seconds 10
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { io } from 'socket.io-client';
import parser from 'socket.io-msgpack-parser';

const args = Object.fromEntries(process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith('--') ? [...acc, [a.slice(2), all[i + 1]]] : acc), []));
const clients = Number(args.clients ?? 100);
const rate = Number(args.rate ?? 0);
const seconds = Number(args.seconds ?? 10);
const payloadBytes = Number(args['payload-bytes'] ?? 64);
const nowUs = () => (performance.timeOrigin + performance.now()) * 1000;

function procStats(pid) {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const rssKib = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return { rssKib, ticks: Number(fields[11]) + Number(fields[12]), at: performance.now() };
}

// Latency histogram: 10 µs buckets up to 10 s.
const buckets = new Uint32Array(1_000_001);
let samples = 0;
function record(us) { buckets[Math.min(1_000_000, Math.max(0, Math.round(us / 10)))]++; samples++; }
function quantile(q) {
  let target = Math.ceil(q * samples), seen = 0;
  for (let i = 0; i < buckets.length; i++) { seen += buckets[i]; if (seen >= target) return (i * 10) / 1000; }
  return NaN;
}

const server = spawn(process.execPath, [new URL('./server.js', import.meta.url).pathname, '0'], { stdio: ['ignore', 'pipe', 'inherit'] });
const port = await new Promise((resolve) => server.stdout.on('data', (d) => { const m = /listening (\d+)/.exec(String(d)); if (m) resolve(Number(m[1])); }));
const url = `http://127.0.0.1:${port}`;
const opts = { parser, transports: ['websocket'], reconnection: false, forceNew: true };

let delivered = 0;
let counting = false;
const subs = [];
for (let i = 0; i < clients; i++) {
  const s = io(url, opts);
  s.on('event', (p) => { if (counting) { delivered++; record(nowUs() - p.t); } });
  subs.push(new Promise((resolve) => s.on('connect', () => resolve(s))));
}
const sockets = await Promise.all(subs);
const pub = io(url, opts);
await new Promise((resolve) => pub.on('connect', resolve));
const pad = Buffer.alloc(payloadBytes);

const before = procStats(server.pid);
counting = true;
const started = performance.now();
let published = 0, inFlight = 0;
await new Promise((resolve) => {
  const deadline = started + seconds * 1000;
  const send = () => { inFlight++; published++; pub.emit('publish', { t: nowUs(), pad }, () => { inFlight--; }); };
  if (rate > 0) {
    const timer = setInterval(() => {
      if (performance.now() >= deadline) { clearInterval(timer); resolve(); return; }
      for (let i = 0; i < Math.max(1, rate / 100); i++) send();
    }, 10);
  } else {
    // As fast as acknowledgements allow, with the same 4096 in flight as loadgen.
    const pump = () => {
      if (performance.now() >= deadline) { resolve(); return; }
      while (inFlight < 4096) send();
      setImmediate(pump);
    };
    pump();
  }
});
const elapsed = (performance.now() - started) / 1000;
counting = false;
const after = procStats(server.pid);
const result = {
  system: 'socket.io', clients, rate, seconds: elapsed,
  published_per_sec: published / elapsed, delivered_per_sec: delivered / elapsed,
  p50_ms: quantile(0.5), p99_ms: quantile(0.99), p999_ms: quantile(0.999),
  cpu_percent: ((after.ticks - before.ticks) / 100 / ((after.at - before.at) / 1000)) * 100,
  rss_mib: after.rssKib / 1024,
};
console.log(JSON.stringify(result));
for (const s of sockets) s.close();
pub.close();
server.kill('SIGKILL');
process.exit(0);
