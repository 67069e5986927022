// Benchmark (by hand, not in CI): the dashboard's own main-thread cost while
// events arrive, charts on, with Chromium's CPU throttled 4x as a phone
// stand-in. A second, unthrottled page publishes `note` events at the rate;
// the dashboard's share of its main thread is Chromium's TaskDuration over
// the wall time. Run after `cargo xtask pkg` and `cargo build -p edge-proxy`
// (BARE=1: the npm package alone, no dashboard; REDUCED_MOTION=1: with
// prefers-reduced-motion):
//   node bench/browser/dashboard.js
import { Proxy, launch, dashboardDir } from '../../tests/browser/harness.js';
import { setTimeout as sleep } from 'node:timers/promises';

const WINDOW_MS = 10_000;
const proxy = await new Proxy(dashboardDir(), 'max_publish_per_sec = 5000\n', ['--demo']).start();
const browser = await launch();
try {
  const dash = await (await browser.newContext({ viewport: { width: 1280, height: 900 } })).newPage();
  if (process.env.REDUCED_MOTION) await dash.emulateMedia({ reducedMotion: 'reduce' });
  if (process.env.BARE) {
    // The client alone, no dashboard: what the npm package costs by itself.
    await dash.goto(`${proxy.url}/bands.js`);
    await dash.evaluate(async () => {
      const { default: init, Link } = await import('./pkg/station_link.js');
      await init();
      window.dashboardLink = new Link(`ws://${location.host}/ws`, { storagePrefix: 'bare' });
      window.dashboardLink.on('event', () => {});
      await new Promise((r) => window.dashboardLink.on('state', ({ state }) => state === 'connected' && r()));
    });
  } else {
    await dash.goto(`${proxy.url}/`);
    await dash.waitForFunction(() => document.getElementById('badge').textContent === 'connected', null, { timeout: 20_000 });
  }
  const cdp = await dash.context().newCDPSession(dash);
  await cdp.send('Emulation.setCPUThrottlingRate', { rate: 4 });
  await cdp.send('Performance.enable');
  const pub = await (await browser.newContext()).newPage();
  await pub.goto(`${proxy.url}/bands.js`);
  await pub.evaluate(async () => {
    const { default: init, Link } = await import('./pkg/station_link.js');
    await init();
    window.pubLink = new Link(`ws://${location.host}/ws`, { storagePrefix: 'bench-publisher' });
    await new Promise((r) => window.pubLink.on('state', ({ state }) => state === 'connected' && r()));
  });
  const taskSeconds = async () => (await cdp.send('Performance.getMetrics')).metrics.find((m) => m.name === 'TaskDuration').value;
  const rows = [];
  for (const rate of [0, 100, 1000]) {
    await pub.evaluate((r) => {
      clearInterval(window.pubTimer);
      let n = 0;
      const t0 = performance.now();
      if (r > 0) window.pubTimer = setInterval(() => {
        const due = Math.floor(((performance.now() - t0) / 1000) * r);
        for (; n < due; n++) window.pubLink.send('note', { n }, { delivery: 'volatile' });
      }, 10);
    }, rate);
    await sleep(2_000); // settle into the rate
    const seqBefore = await dash.evaluate(() => window.dashboardLink.metrics().last_seq);
    const before = await taskSeconds();
    const t0 = Date.now();
    await sleep(WINDOW_MS);
    const busy = (await taskSeconds()) - before;
    const wall = (Date.now() - t0) / 1000;
    const seqAfter = await dash.evaluate(() => window.dashboardLink.metrics().last_seq);
    rows.push({ rate, delivered_per_s: Math.round((seqAfter - seqBefore) / wall), main_thread_pct: Math.round((busy / wall) * 1000) / 10 });
  }
  console.table(rows);
} finally {
  await browser.close();
  await proxy.kill9();
}
