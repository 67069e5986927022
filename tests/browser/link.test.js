// The npm package in real headless Chromium against the real edge proxy:
// reconnects, kill -9, reloads, offline sends, max attempts, the console API.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { installPackage, Proxy, Nats, launch, until } from './harness.js';

let app;
let browser;

before(async () => {
  app = installPackage();
  browser = await launch();
});

after(async () => {
  await browser?.close();
});

const range = (a, b) => Array.from({ length: b - a + 1 }, (_, i) => a + i);
const fast = { baseDelayMs: 200, maxDelayMs: 1000, outboxCapacity: 1000 };

async function openPage(proxy, query = {}) {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.on('pageerror', (e) => console.error('page error:', e.message));
  const params = new URLSearchParams({ ...query, opts: JSON.stringify(query.opts ?? fast) });
  await page.goto(`${proxy.url}/index.html?${params}`);
  await until(page, () => window.ready === true);
  return { context, page };
}

// The pages publish faster than the proxy's default 50/s per client.
const PROXY_CONFIG = 'max_publish_per_sec = 2000\n';

test('events arrive once and in order across kill -9, SIGTERM and simulated disconnects; offline sends are delivered', async () => {
  const proxy = await new Proxy(app, PROXY_CONFIG).start();
  const { context, page } = await openPage(proxy);
  try {
    await until(page, () => rec.states.includes('connected'));
    // The page publishes a numbered note every 20 ms, whatever the link's state.
    await page.evaluate(() => { window.n = 0; window.pump = setInterval(() => link.send('note', { n: ++window.n }), 20); });
    await until(page, () => notes().length >= 20);

    await proxy.kill9();
    await until(page, () => rec.states.at(-1) === 'reconnecting');
    await sleep(800); // publishes made now wait in the outbox
    await proxy.start();
    await until(page, () => rec.reconnected.length >= 1 && notes().length >= window.n - 5);

    await proxy.stop();
    await until(page, () => rec.errors.some((e) => e.kind === 'shutting_down'));
    await proxy.start();
    await until(page, () => rec.reconnected.length >= 2);

    await page.evaluate(() => link.simulateDisconnect(400));
    await until(page, () => rec.reconnected.length >= 3);

    const sent = await page.evaluate(() => { clearInterval(window.pump); return window.n; });
    await until(page, (n) => notes().length >= n, sent);
    await sleep(300);
    const got = await page.evaluate(() => notes());
    assert.deepEqual(got, range(1, sent), 'every note exactly once, in order');
    const seqs = await page.evaluate(() => rec.events.map((e) => e.seq));
    assert.ok(seqs.every((s, i) => i === 0 || s > seqs[i - 1]), 'seqs strictly increase');
    const buffered = await page.evaluate(() => link.buffer().length);
    assert.equal(buffered, 0, 'the outbox drained');
  } finally {
    await context.close();
    await proxy.kill9();
  }
});

test('a reload during a stream resumes from last_seq with no loss and no duplicate', async () => {
  const proxy = await new Proxy(app, PROXY_CONFIG).start();
  const publisher = await openPage(proxy, { opts: { ...fast, storagePrefix: 'pub', consoleName: null } });
  // The watcher keeps what it saw in sessionStorage, which survives reloads.
  const watcher = await openPage(proxy, { keep: '1', opts: { ...fast, storagePrefix: 'watch' } });
  try {
    const { page } = watcher;
    await until(page, () => rec.states.includes('connected'));
    await publisher.page.evaluate(() => { window.n = 0; window.pump = setInterval(() => { if (window.n < 300) link.send('note', { n: ++window.n }); }, 10); });
    await until(page, () => notes().length >= 40);
    await page.reload();
    await until(page, () => window.ready === true);
    await until(publisher.page, () => window.n >= 300 && link.buffer().length === 0);
    await until(page, () => JSON.parse(sessionStorage.getItem('seen') || '[]').length >= 300);
    await sleep(300);
    const seen = await page.evaluate(() => JSON.parse(sessionStorage.getItem('seen')));
    assert.deepEqual(seen, range(1, 300));
    const resumed = await page.evaluate(() => rec.snapshots.every((s) => s.restored) && rec.events.length > 0 && rec.events[0].seq > 1);
    assert.ok(resumed, 'the reloaded page resumed (no snapshot from the proxy, continued after last_seq)');
    // It showed the state the last page stored, as of where it resumed.
    const restored = await page.evaluate(() => rec.snapshots.map((s) => [s.upto, s.state.note?.n, typeof s.asOfMs]));
    const first = await page.evaluate(() => rec.events[0].seq);
    assert.equal(restored.length, 1, 'one restored snapshot');
    assert.equal(restored[0][0], first - 1, 'as of the position the page resumed from');
    assert.equal(restored[0][2], 'number');
  } finally {
    await publisher.context.close();
    await watcher.context.close();
    await proxy.kill9();
  }
});

test('backoff stays in its jitter band, gives up at max attempts, and online retries at once', async () => {
  const proxy = await new Proxy(app).start();
  const opts = { maxAttempts: 4, baseDelayMs: 300, maxDelayMs: 5000, jitter: 0.3, consoleName: null };
  const context = await browser.newContext();
  const page = await context.newPage();
  // Record when the link opens sockets.
  await page.addInitScript(() => {
    window.opens = [];
    const Real = window.WebSocket;
    window.WebSocket = function (url, protocols) { window.opens.push(performance.now()); return new Real(url, protocols); };
    window.WebSocket.prototype = Real.prototype;
    Object.assign(window.WebSocket, { CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3 });
  });
  try {
    // Port 9 on loopback: nothing listens, every attempt fails fast.
    const params = new URLSearchParams({ url: 'ws://127.0.0.1:9/ws', opts: JSON.stringify(opts) });
    await page.goto(`${proxy.url}/index.html?${params}`);
    await until(page, () => rec.maxAttempts.length === 1, undefined, 30_000);
    const { opens, states, attempts } = await page.evaluate(() => ({ opens: window.opens, states: rec.states, attempts: rec.maxAttempts[0].attempts }));
    assert.equal(attempts, 4);
    assert.equal(states.at(-1), 'failed');
    assert.equal(opens.length, 5, 'the first try and 4 retries');
    for (let k = 1; k < opens.length; k++) {
      const nominal = Math.min(5000, 300 * 2 ** (k - 1));
      const delay = opens[k] - opens[k - 1];
      // Lower bound: the band. Upper: the band plus the failed connect and timer slack.
      assert.ok(delay >= nominal * 0.7 - 20, `retry ${k}: ${delay.toFixed(0)} ms < ${nominal * 0.7}`);
      assert.ok(delay <= nominal * 1.3 + 400, `retry ${k}: ${delay.toFixed(0)} ms > ${nominal * 1.3} + slack`);
    }
    const before = opens.length;
    const t0 = await page.evaluate(() => { window.dispatchEvent(new Event('online')); return performance.now(); });
    await until(page, (n) => window.opens.length > n, before);
    const t1 = await page.evaluate(() => window.opens.at(-1));
    assert.ok(t1 - t0 < 100, `online retried after ${t1 - t0} ms`);
  } finally {
    await context.close();
    await proxy.kill9();
  }
});

test('transmit commands are never stored; storage trouble is reported and the link keeps working', async () => {
  const proxy = await new Proxy(app).start();
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.addInitScript(() => {
    if (!sessionStorage.getItem('corrupted')) {
      localStorage.setItem('bad:outbox', '{not json');
      localStorage.setItem('bad:cursor', '"nonsense"');
      sessionStorage.setItem('corrupted', '1');
    }
  });
  try {
    const params = new URLSearchParams({ opts: JSON.stringify({ ...fast, storagePrefix: 'bad' }) });
    await page.goto(`${proxy.url}/index.html?${params}`);
    await until(page, () => window.ready && rec.states.includes('connected'));
    const errors = await page.evaluate(() => rec.errors.filter((e) => e.kind === 'storage').map((e) => e.message));
    assert.equal(errors.length, 2, `corrupt cursor and outbox reported: ${errors}`);

    await proxy.kill9();
    await until(page, () => rec.states.at(-1) === 'reconnecting');
    await page.evaluate(() => {
      link.send('radio.ptt', { on: true }, { delivery: 'volatile', ttlMs: 2000 });
      link.send('radio.ptt', { on: true }, { ttlMs: 2000 }); // even asked as reliable
      link.send('note', { n: 1 });
      link.send('sensor.reading', { watts: 5 }, { delivery: 'volatile' });
    });
    const stored = await page.evaluate(() => JSON.parse(localStorage.getItem('bad:outbox')).outbox.map((p) => p.kind));
    assert.deepEqual(stored, ['note'], 'only the reliable note is in storage');
    const notSent = await page.evaluate(() => rec.errors.filter((e) => e.kind === 'notSent').length);
    assert.equal(notSent, 3, 'both PTTs and the volatile reading are reported as not sent');

    await proxy.start();
    await until(page, () => notes().includes(1));
    const kinds = await page.evaluate(() => rec.events.map((e) => e.kind));
    assert.ok(!kinds.includes('radio.ptt'), 'no PTT was replayed after the reconnect');
  } finally {
    await context.close();
    await proxy.kill9();
  }
});

test('the console API, latency test, metrics and exported logs', async () => {
  const proxy = await new Proxy(app).start();
  const { context, page } = await openPage(proxy, { opts: { ...fast, pingIntervalMs: 500 } });
  try {
    await until(page, () => rec.states.includes('connected'));
    const rtt = await page.evaluate(() => link.testConnection());
    assert.ok(typeof rtt === 'number' && rtt >= 0 && rtt < 5000, `rtt ${rtt}`);
    await until(page, () => rec.latency.length >= 2);
    const api = await page.evaluate(() => Object.keys(window.stationLink).sort());
    for (const name of ['buffer', 'clearBuffer', 'exportLogs', 'forceReconnect', 'help', 'metrics', 'simulateDisconnect']) {
      assert.ok(api.includes(name), `console API lacks ${name}`);
    }
    const logs = [];
    page.on('console', (m) => logs.push(m.text()));
    await page.evaluate(() => stationLink.help());
    await until(page, () => true);
    assert.ok(logs.some((l) => l.includes('forceReconnect()')), 'help() prints the calls');
    const m = await page.evaluate(() => stationLink.metrics());
    assert.equal(m.state, 'connected');
    assert.ok(m.quality > 0.5 && m.quality <= 1, `quality ${m.quality}`);
    for (const key of ['quality_stability', 'quality_ack_rate', 'quality_uptime', 'quality_activity', 'rtt_p50_ms', 'rtt_p95_ms', 'pongs_received']) {
      assert.ok(key in m, `metrics lack ${key}`);
    }
    const pongsInApp = await page.evaluate(() => rec.events.filter((e) => /pong|ping/i.test(e.kind)).length);
    assert.equal(pongsInApp, 0, 'pongs never reach the application');
    await page.evaluate(() => stationLink.forceReconnect());
    await until(page, () => rec.reconnected.length >= 1);
    // A string from the console is a number of ms, as JS would read it.
    await page.evaluate(() => stationLink.simulateDisconnect('300'));
    await until(page, () => rec.reconnected.length >= 2);
    const away = await page.evaluate(() => rec.stateTimes.map((s) => s[2]).filter((r) => /^simulated/.test(r)));
    assert.deepEqual(away, ['simulated disconnect for 300 ms']);
    const report = await page.evaluate(async () => JSON.parse(await link.exportLogs().text()));
    assert.ok(report.metrics && Array.isArray(report.history) && Array.isArray(report.log));
    assert.ok(report.history.some((h) => h.event === 'reconnected'));
    const stats = await proxy.stats();
    assert.equal(stats.connections.active, 1, 'never two sockets for one page');
  } finally {
    await context.close();
    await proxy.kill9();
  }
});

test('two proxies on one JetStream log: the page fails over and has every note once, in order, with no new snapshot', async () => {
  const nats = await new Nats().start();
  const shared = (name) => `${PROXY_CONFIG}allowed_origins = ["*"]\nlog = "${nats.url}"\nproxy_name = "${name}"\n`;
  const a = await new Proxy(app, shared('site-a')).start();
  const b = await new Proxy(app, shared('site-b')).start();
  const wsB = `ws://${b.addr}/ws`;
  const { context, page } = await openPage(a, { opts: { ...fast, fallbackUrls: [wsB] } });
  try {
    await until(page, () => rec.states.includes('connected'));
    const snapshots = await page.evaluate(() => rec.snapshots.length);
    // Notes 1..60 every 10 ms; A dies after the 20th.
    const sending = page.evaluate(async () => {
      for (let n = 1; n <= 60; n++) {
        link.send('note', { n });
        await new Promise((r) => setTimeout(r, 10));
      }
    });
    await until(page, () => notes().length >= 20);
    await a.kill9();
    await sending;
    await until(page, (url) => link.status().url === url && link.status().state === 'connected', wsB);
    await until(page, () => notes().length >= 60);
    await sleep(300);
    const got = await page.evaluate(() => notes());
    assert.deepEqual(got, Array.from({ length: 60 }, (_, i) => i + 1), 'every note once, in order');
    const seqs = await page.evaluate(() => rec.events.map((e) => e.seq));
    for (let i = 1; i < seqs.length; i++) assert.ok(seqs[i] > seqs[i - 1], `seq ${seqs[i]} after ${seqs[i - 1]}`);
    assert.equal(await page.evaluate(() => rec.snapshots.length), snapshots, 'same stream, same epoch: resumed, not restarted');
    assert.equal((await b.stats()).log.backend, 'jetstream');
  } finally {
    await context.close();
    await a.kill9();
    await b.kill9();
    await nats.kill9();
  }
});

test('with fallbackUrls the link fails over to the next proxy when its proxy dies', async () => {
  const a = await new Proxy(app, PROXY_CONFIG).start();
  // B serves the same station from its own log (another epoch), so the
  // client starts over from B's snapshot, then carries on.
  const b = await new Proxy(app, `${PROXY_CONFIG}allowed_origins = ["*"]\n`).start();
  const wsB = `ws://${b.addr}/ws`;
  const { context, page } = await openPage(a, { opts: { ...fast, fallbackUrls: [wsB] } });
  try {
    await until(page, () => rec.states.includes('connected'));
    await page.evaluate(() => link.send('note', { n: 1 }));
    await until(page, () => notes().includes(1));
    const snapshots = await page.evaluate(() => rec.snapshots.length);
    await a.kill9();
    await until(page, (url) => link.status().url === url && link.status().state === 'connected', wsB);
    // Another log (another epoch): the client starts over from B's snapshot.
    assert.ok(await page.evaluate((n) => rec.snapshots.length > n, snapshots), 'a snapshot from B');
    await page.evaluate(() => link.send('note', { n: 2 }));
    await until(page, () => notes().includes(2));
    assert.equal((await b.stats()).connections.active, 1);
  } finally {
    await context.close();
    await a.kill9();
    await b.kill9();
  }
});
