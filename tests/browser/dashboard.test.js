// The dashboard in headless Chromium against the demo proxy (simulated
// TS-2000 on a pseudo-terminal, simulated power meter) with the proxy's
// default limits: states, recovery, toasts, the event log, the debug panel
// and its tests, the radio controls, the band, the meters and the plots,
// contrast and accessibility (axe-core). Screenshots land in
// target/test-artifacts/ (and in docs/ with DASHBOARD_SCREENSHOTS=docs).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { Proxy, StationSim, launch, dashboardDir, artifactsDir } from './harness.js';

const docsDir = fileURLToPath(new URL('../../docs/', import.meta.url));
/** Saves a screenshot into the artifacts, and into docs/ when asked to. */
async function shoot(p, name, opts = {}) {
  await p.screenshot({ path: join(artifactsDir(), name), ...opts });
  if (process.env.DASHBOARD_SCREENSHOTS === 'docs') await p.screenshot({ path: join(docsDir, name), ...opts });
}
const axePath = createRequire(import.meta.url).resolve('axe-core/axe.min.js');
/** axe-core's serious and critical findings on the page as it is. */
async function axeFindings(p) {
  await p.addScriptTag({ path: axePath });
  const result = await p.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] }));
  return result.violations.filter((v) => ['serious', 'critical'].includes(v.impact))
    .map((v) => `${v.id} (${v.impact}): ${v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join(', ')}`);
}

let browser;
let proxy;
let page;
let context;

before(async () => {
  // The proxy's default limits (max_publish_per_sec = 50): the dashboard must work under them.
  proxy = await new Proxy(dashboardDir(), 'radio_poll_ms = 100\n', ['--demo']).start();
  browser = await launch();
  context = await browser.newContext({ viewport: { width: 1280, height: 900 }, acceptDownloads: true });
  page = await context.newPage();
  page.on('pageerror', (e) => console.error('page error:', e.message));
  await page.goto(`${proxy.url}/?stabilityMs=3000`);
});

after(async () => {
  await browser?.close();
  await proxy?.kill9();
});

const badge = () => page.textContent('#badge');
const waitBadge = (state, timeout = 20_000) =>
  page.waitForFunction((s) => document.getElementById('badge').textContent === s, state, { timeout, polling: 50 });

test('connects, shows the radio, and its controls reach the radio and come back', async () => {
  await waitBadge('connected');
  await page.waitForFunction(() => document.getElementById('freq').textContent === '14.074000', null, { timeout: 20_000 });
  await page.fill('#freq-in', '7074');
  await page.click('#freq-form button');
  await page.waitForFunction(() => document.getElementById('freq').textContent === '7.074000', null, { timeout: 20_000 });
  await page.selectOption('#mode-in', 'CW');
  await page.waitForFunction(() => document.getElementById('mode').textContent === 'CW', null, { timeout: 20_000 });
  await page.dispatchEvent('#ptt-btn', 'pointerdown');
  await page.waitForFunction(() => document.getElementById('ptt').textContent === 'TX', null, { timeout: 20_000 });
  await page.waitForFunction(() => parseFloat(document.getElementById('watts').textContent) > 50, null, { timeout: 20_000 });
  await page.dispatchEvent('#ptt-btn', 'pointerup');
  await page.waitForFunction(() => document.getElementById('ptt').textContent === 'RX', null, { timeout: 20_000 });
  assert.equal(await page.textContent('#link-state'), 'connected', 'the radio link and its health are shown');
  assert.match(await page.textContent('#link-health'), /^\d+$/);
});

const visible = (sel) => page.evaluate((s) => { const el = document.querySelector(s); return !!el && !el.hidden && el.offsetParent !== null; }, sel);
const waitVisible = (sel, want = true, timeout = 20_000) => page.waitForFunction(([s, w]) => {
  const el = document.querySelector(s);
  return (!!el && !el.hidden && el.offsetParent !== null) === w;
}, [sel, want], { timeout, polling: 50 });

test('the band is named from the frequency', async () => {
  for (const [khz, band] of [['7074', '40 m'], ['14074', '20 m'], ['3573', '80 m'], ['1840', '160 m'], ['50313', '6 m'], ['144174', '2 m'], ['432174', '70 cm'], ['8000', 'out of band']]) {
    await page.fill('#freq-in', khz);
    await page.click('#freq-form button');
    await page.waitForFunction((hz) => document.getElementById('freq').textContent === (hz / 1e6).toFixed(6), Number(khz) * 1000, { timeout: 20_000 });
    assert.equal(await page.textContent('#band'), band, `${khz} kHz`);
  }
  await page.fill('#freq-in', '14074');
  await page.click('#freq-form button');
  await page.waitForFunction(() => document.getElementById('band').textContent === '20 m', null, { timeout: 20_000 });
});

test('the S-meter shows while receiving, power and SWR while transmitting; the plots draw and update', async () => {
  await waitVisible('#smeter-row');
  assert.match(await page.textContent('#smeter-text'), /^S\d( |$)|^S9\+\d+ dB$/);
  assert.match(await page.getAttribute('#smeter-bar', 'aria-valuetext'), /dB relative to S9/);
  assert.equal(await visible('#tx-row'), false, 'no power row while receiving');
  // The simulated band fades: the meter moves.
  const first = await page.getAttribute('#smeter-bar', 'aria-valuenow');
  await page.waitForFunction((v) => document.getElementById('smeter-bar').getAttribute('aria-valuenow') !== v, first, { timeout: 20_000 });
  assert.ok(await page.$('#power-chart canvas'), 'the power chart is drawn');
  assert.ok(await page.$('#latency-chart canvas') && await page.$('#quality-chart canvas'));
  const before = await page.textContent('#power-cap');
  await page.dispatchEvent('#ptt-btn', 'pointerdown');
  await waitVisible('#smeter-row', false);
  await waitVisible('#tx-row');
  await page.waitForFunction(() => parseFloat(document.getElementById('watts').textContent) > 50, null, { timeout: 20_000 });
  await waitVisible('#swr-box');
  await page.waitForFunction((b) => document.getElementById('power-cap').textContent !== b && /now (9\d|1\d\d)\.\d W/.test(document.getElementById('power-cap').textContent), before, { timeout: 20_000 });
  await page.waitForFunction(() => /\d+ ms/.test(document.getElementById('latency-cap').textContent), null, { timeout: 20_000 });
  await page.waitForFunction(() => document.querySelectorAll('#timeline .tl-band.connected').length >= 2, null, { timeout: 20_000 });
  await shoot(page, 'dashboard.png');
  await page.dispatchEvent('#ptt-btn', 'pointerup');
  await waitVisible('#tx-row', false);
  await waitVisible('#smeter-row');
  await shoot(page, 'dashboard-desktop.png');
});

test('the event log has one number per row, collapses PTT keepalives, pauses, and filters by kind', async () => {
  const rows = await page.$$eval('#events li', (lis) => lis.map((li) => li.textContent));
  assert.ok(rows.every((r) => (r.match(/#\d+/g) || []).length === 1), `one number per row: ${rows.slice(0, 5)}`);
  assert.equal(await page.evaluate(() => getComputedStyle(document.getElementById('events')).listStyleType), 'none', 'no list numbers beside the #seq');
  // A held PTT repeats "on" every second: one row, counted.
  await page.dispatchEvent('#ptt-btn', 'pointerdown');
  await page.waitForFunction(() => [...document.querySelectorAll('#events li[data-kind="radio.ptt"]')].some((li) => Number(li.dataset.count) >= 3), null, { timeout: 20_000 });
  // The connected clients list names this dashboard as the one keying.
  const keying = () => [...document.querySelectorAll('#programs-table tbody tr')].filter((tr) => tr.cells[1].textContent === 'WebSocket' && tr.cells[4].textContent === 'TX').length;
  await page.waitForFunction(keying, null, { timeout: 20_000 });
  await page.dispatchEvent('#ptt-btn', 'pointerup');
  await page.waitForFunction(() => ![...document.querySelectorAll('#programs-table tbody tr')].some((tr) => tr.cells[4].textContent === 'TX'), null, { timeout: 20_000 });
  assert.match(await page.$eval('#events li[data-kind="radio.ptt"][data-count]:not([data-count="1"])', (li) => li.textContent), /radio\.ptt.*×\d+/);
  await page.waitForFunction(() => document.getElementById('ptt').textContent === 'RX', null, { timeout: 20_000 });
  await page.click('#pause-btn');
  const top = await page.$eval('#events li', (li) => li.dataset.seq);
  await page.fill('#freq-in', '7074');
  await page.click('#freq-form button');
  await page.waitForFunction(() => /Resume \([1-9]\d* new\)/.test(document.getElementById('pause-btn').textContent), null, { timeout: 20_000 });
  assert.equal(await page.$eval('#events li', (li) => li.dataset.seq), top, 'paused: the list holds still');
  await page.click('#pause-btn');
  assert.notEqual(await page.$eval('#events li', (li) => li.dataset.seq), top, 'resumed: the new events are shown');
  const seqs = await page.$$eval('#events li', (lis) => lis.map((li) => Number(li.dataset.seq)));
  assert.ok(seqs.length >= 3, `events shown: ${seqs.length}`);
  for (let i = 1; i < seqs.length; i++) assert.ok(seqs[i] < seqs[i - 1], `newest first, each once: ${seqs.slice(0, 20)}`);
  await page.fill('#filter', 'radio.state');
  const kinds = await page.$$eval('#events li:not([hidden])', (lis) => lis.map((li) => li.dataset.kind));
  assert.ok(kinds.length > 0 && kinds.every((k) => k === 'radio.state'), `filtered: ${kinds}`);
  await page.fill('#filter', '');
});

test('stopping the proxy shows reconnecting, restarting it recovers with a toast', async () => {
  await proxy.stop();
  await page.waitForFunction(() => ['reconnecting', 'disconnected'].includes(document.getElementById('badge').textContent), null, { timeout: 20_000 });
  await proxy.start();
  await waitBadge('connected', 30_000);
  await page.waitForFunction(() => [...document.querySelectorAll('#toasts .toast')].some((t) => t.textContent.startsWith('Reconnected')), null, { timeout: 10_000 });
  const live = await page.textContent('#live');
  assert.equal(live, 'Connection connected', 'the ARIA live region announces state changes');
});

test('offline-first: with the proxy down the page still loads, says so, and recovers', async () => {
  await page.evaluate(async () => { await navigator.serviceWorker.ready; });
  await page.waitForFunction(() => !!navigator.serviceWorker.controller, null, { timeout: 10_000 }).catch(async () => {
    await page.reload();
  });
  await page.waitForFunction(() => !!navigator.serviceWorker.controller, null, { timeout: 10_000 });
  await proxy.stop();
  await page.reload();
  await page.waitForFunction(() => ['connecting', 'reconnecting', 'disconnected'].includes(document.getElementById('badge').textContent), null, { timeout: 20_000 });
  assert.notEqual(await badge(), 'connected');
  await proxy.start();
  await waitBadge('connected', 30_000);
});

test('the debug panel: Ctrl+Shift+D, simulate disconnect, latency, throughput and stability tests, export', async () => {
  await page.keyboard.press('Control+Shift+D');
  assert.equal(await page.isVisible('#debug'), true);
  await page.click('[data-act="disconnect"]');
  await waitBadge('reconnecting');
  await waitBadge('connected', 30_000);
  await page.click('[data-act="latency"]');
  await page.waitForFunction(() => /Latency: \d+ ms/.test(document.getElementById('test-result').textContent), null, { timeout: 10_000 });
  const toastsBefore = await page.$$eval('#toasts .toast', (ts) => ts.length);
  await page.click('[data-act="throughput"]');
  await page.waitForFunction(() => /Throughput: 200 of 200 round trips in \d+ ms \(\d+ round trips\/s; RTT p50 \d+ ms, p95 \d+ ms\)$/.test(document.getElementById('test-result').textContent), null, { timeout: 30_000 });
  const rate = Number((await page.textContent('#test-result')).match(/\((\d+) round trips\/s/)[1]);
  assert.ok(rate > 5, `a plausible figure over loopback: ${rate}/s`);
  assert.ok(await page.$$eval('#toasts .toast', (ts) => ts.length) <= toastsBefore, 'no toast from a test that passed');
  await page.click('[data-act="stability"]');
  assert.equal(await page.isVisible('#test-progress'), true, 'a progress indicator while it runs');
  await page.waitForFunction(() => /Stability \(3 s\): \d+ pings ok, 0 failed/.test(document.getElementById('test-result').textContent), null, { timeout: 20_000 });
  // The metrics as a table; the raw JSON behind a toggle.
  await page.waitForFunction(() => document.querySelector('#metrics-table td[data-metric="state"]')?.textContent === 'connected', null, { timeout: 5_000 });
  assert.equal(await page.isVisible('#metrics'), false, 'raw JSON hidden until asked for');
  assert.match(await page.$eval('#metrics-table td[data-metric="rtt_p50_ms"]', (td) => td.textContent), /^\d+ ms$/);
  assert.ok((await page.textContent('#metrics')).includes('"state"'));
  await shoot(page, 'debug-panel.png', { fullPage: true });
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('[data-act="export"]')]);
  const path = await download.path();
  const report = JSON.parse(readFileSync(path, 'utf8'));
  assert.ok(report.metrics && Array.isArray(report.history), 'export logs gives valid JSON with metrics and history');
});

test('the throughput test leaves nothing in the log: a new client\'s snapshot has no bench.* kind', async () => {
  const ctx = await browser.newContext();
  const p = await ctx.newPage();
  try {
    await p.goto(`${proxy.url}/`);
    const kinds = await p.evaluate(async () => {
      const { default: init, Link } = await import('./pkg/station_link.js');
      await init();
      const probe = new Link(`ws://${location.host}/ws`, { storagePrefix: 'probe' });
      return new Promise((resolve) => probe.on('snapshot', ({ state }) => resolve(Object.keys(state))));
    });
    assert.ok(kinds.includes('radio.state'), `a snapshot: ${kinds}`);
    assert.deepEqual(kinds.filter((k) => k.startsWith('bench.')), [], `kinds: ${kinds}`);
    const stats = await proxy.stats();
    assert.equal(stats.publishes.rejected, 0, 'nothing was refused for the tests');
  } finally {
    await ctx.close();
  }
});

test('a burst of refused publishes is one counting toast, and at most a few toasts show', async () => {
  await page.evaluate(() => { for (let i = 0; i < 300; i++) window.dashboardLink.send('note.burst', { i }, { delivery: 'volatile' }); });
  await page.waitForFunction(() => [...document.querySelectorAll('#toasts .toast')].some((t) => /^\d+ refused: rate limited$/.test(t.textContent)), null, { timeout: 20_000 });
  // Until every refusal is in: the counter stops moving.
  await page.waitForFunction(() => [...document.querySelectorAll('#toasts .toast')].some((t) => Number(t.textContent.match(/^(\d+) refused/)?.[1]) >= 200), null, { timeout: 20_000 });
  const shown = await page.$$eval('#toasts .toast', (ts) => ts.map((t) => t.textContent));
  assert.ok(shown.length <= 4, `at most 4 toasts: ${shown}`);
  assert.equal(shown.filter((t) => /refused|rejected/.test(t)).length, 1, `one toast for the burst: ${shown}`);
  assert.equal(await page.getAttribute('#toasts', 'aria-live'), 'polite');
  assert.equal(await page.$$eval('[aria-live="assertive"]', (els) => els.length), 0, 'nothing assertive');
  assert.ok(Number(await page.textContent('#notices-count')) >= 1, 'past notices can be read');
  // A toast can be closed.
  const n = await page.$$eval('#toasts .toast', (ts) => ts.length);
  await page.click('#toasts .toast .toast-close');
  assert.equal(await page.$$eval('#toasts .toast', (ts) => ts.length), n - 1);
});

/** WCAG contrast of two CSS colours (rgb()/rgba()), computed in the page. */
test('every status badge passes WCAG AA contrast (4.5:1), from the computed styles', async () => {
  const ratios = await page.evaluate(() => {
    const lum = (c) => {
      const [r, g, b] = c.match(/[\d.]+/g).slice(0, 3).map(Number).map((v) => {
        const s = v / 255;
        return s <= 0.03928 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4;
      });
      return 0.2126 * r + 0.7152 * g + 0.0722 * b;
    };
    const probe = document.createElement('div');
    document.body.append(probe);
    const out = {};
    for (const s of ['connected', 'connecting', 'reconnecting', 'disconnected', 'stale', 'failed']) {
      probe.className = `badge ${s}`;
      probe.style.animation = 'none';
      const cs = getComputedStyle(probe);
      const [a, b] = [lum(cs.color), lum(cs.backgroundColor)];
      out[s] = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    }
    probe.remove();
    return out;
  });
  for (const [state, ratio] of Object.entries(ratios)) assert.ok(ratio >= 4.5, `${state}: ${ratio.toFixed(2)}:1`);
});

test('axe-core finds no serious or critical violation on the main view or the open debug panel', async () => {
  await page.evaluate(() => { document.getElementById('debug').hidden = true; });
  assert.deepEqual(await axeFindings(page), [], 'main view');
  await page.keyboard.press('Control+Shift+D');
  assert.equal(await page.isVisible('#debug'), true);
  await page.click('#debug details summary');
  assert.deepEqual(await axeFindings(page), [], 'debug panel open');
  await page.keyboard.press('Control+Shift+D');
  // Every form control has a label.
  const unlabelled = await page.$$eval('input, select', (els) => els.filter((e) => !e.labels?.length && !e.getAttribute('aria-label')).map((e) => e.id));
  assert.deepEqual(unlabelled, []);
  const modes = await page.$$eval('#mode-in option', (os) => os.map((o) => o.value));
  for (const m of ['USB', 'LSB', 'CW', 'CW-R', 'FSK', 'FSK-R', 'FM', 'AM']) assert.ok(modes.includes(m), `mode ${m} in ${modes}`);
});

test('readable on a phone-width screen', async () => {
  await page.setViewportSize({ width: 390, height: 844 });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 1, `no horizontal scrolling (${overflow} px too wide)`);
  const ptt = await page.$eval('#ptt-btn', (b) => b.getBoundingClientRect().height);
  assert.ok(ptt >= 44, `PTT ${ptt} px tall`);
  await page.evaluate(() => { document.querySelectorAll('#toasts .toast-close').forEach((b) => b.click()); window.scrollTo(0, 0); });
  await shoot(page, 'dashboard-phone.png');
  await page.setViewportSize({ width: 1280, height: 900 });
});

test('a fresh local connection shows a good quality, not fair', async () => {
  const ctx = await browser.newContext();
  const p = await ctx.newPage();
  try {
    await p.goto(`${proxy.url}/`);
    await p.waitForFunction(() => document.getElementById('badge').textContent === 'connected', null, { timeout: 20_000 });
    await p.waitForFunction(() => document.getElementById('quality').className !== '', null, { timeout: 20_000 });
    assert.equal(await p.getAttribute('#quality', 'class'), 'good');
  } finally {
    await ctx.close();
  }
});

test('Space on the PTT button keys the radio and letting go unkeys it, asked of the radio; SWR is hidden at 0 W', async () => {
  const sim = await StationSim.start();
  const own = await new Proxy(dashboardDir(), [
    `radio_port = "${sim.radio}"`, 'radio_poll_ms = 100',
    'meter = "lp100"', `meter_port = "${sim.meter}"`, 'meter_poll_ms = 200',
  ].join('\n') + '\n').start();
  const ctx = await browser.newContext();
  const p = await ctx.newPage();
  // The simulator's own word: `status` prints "ok: ... TX|RX, RF out N W".
  const radio = async () => { await sim.send('status'); return sim.output.trim().split('\n').filter((l) => l.startsWith('ok:')).pop(); };
  const radioUntil = async (re, what) => {
    const deadline = Date.now() + 10_000;
    for (let last = await radio(); !re.test(last); last = await radio()) {
      if (Date.now() > deadline) throw new Error(`${what}: the radio says ${last}`);
    }
  };
  try {
    await p.goto(`${own.url}/`);
    await p.waitForFunction(() => document.getElementById('badge').textContent === 'connected' && document.getElementById('link-state').textContent === 'connected', null, { timeout: 20_000 });
    await p.focus('#ptt-btn');
    await p.keyboard.down('Space');
    await radioUntil(/, TX, RF out 100 W/, 'Space keys');
    await p.waitForFunction(() => !document.getElementById('swr-box').hidden, null, { timeout: 20_000 });
    // Keyed with no RF out (a failed amplifier): 0 W, and no SWR shown for it.
    await sim.send('pa-fail');
    await p.waitForFunction(() => parseFloat(document.getElementById('watts').textContent) === 0, null, { timeout: 20_000 });
    assert.equal(await p.isVisible('#swr-box'), false, 'SWR hidden at 0 W');
    await sim.send('pa-ok');
    await p.keyboard.up('Space');
    await radioUntil(/, RX, /, 'letting go of Space unkeys');
  } finally {
    await ctx.close();
    await own.kill9();
    sim.kill();
  }
});

test('a read-only token disables the controls, with the reason shown', async () => {
  const tokens = '[[tokens]]\nsecret = "watcher-secret"\nrole = "read"\n';
  const readOnly = await new Proxy(dashboardDir(), tokens, ['--demo']).start();
  const ctx = await browser.newContext();
  const p = await ctx.newPage();
  try {
    await p.goto(`${readOnly.url}/?token=watcher-secret`);
    await p.waitForFunction(() => document.getElementById('badge').textContent === 'connected', null, { timeout: 20_000 });
    // Known from the Welcome: disabled up front, before any command is refused.
    assert.ok(await p.evaluate(() => document.getElementById('ptt-btn').disabled), 'disabled as soon as connected');
    assert.match(await p.textContent('#controls-why'), /read-only/);
    assert.equal(await p.evaluate(() => document.querySelectorAll('#toasts .toast.warn').length), 0, 'nothing was refused');
    // The secret left the address bar (and so the history) at once ...
    assert.equal(await p.evaluate(() => location.search), '', 'no ?token= left in the address');
    // ... and a later visit without it uses the stored one.
    await p.goto(`${readOnly.url}/`);
    await p.waitForFunction(() => document.getElementById('badge').textContent === 'connected', null, { timeout: 20_000 });
    assert.match(await p.textContent('#controls-why'), /read-only/);
    // The service worker never caches a URL with a secret in it.
    const keys = await p.evaluate(async () => {
      const out = [];
      for (const name of await caches.keys()) for (const r of await (await caches.open(name)).keys()) out.push(r.url);
      return out;
    });
    assert.ok(!keys.some((k) => k.includes('token')), `cached: ${keys.join(', ')}`);
  } finally {
    await ctx.close();
    await readOnly.kill9();
  }
});

test('the page says why it is not connected: no proxy, or a refused token', async () => {
  const own = await new Proxy(dashboardDir(), '', ['--demo']).start();
  const ctx = await browser.newContext();
  const p = await ctx.newPage();
  try {
    await p.goto(`${own.url}/?baseDelayMs=200&maxDelayMs=500`);
    await p.waitForFunction(() => document.getElementById('badge').textContent === 'connected', null, { timeout: 20_000 });
    assert.equal(await p.isHidden('#conn-why'), true, 'nothing to explain while connected');
    await own.kill9();
    await p.waitForFunction(() => /No answer from the proxy/.test(document.getElementById('conn-why').textContent), null, { timeout: 20_000 });
  } finally {
    await ctx.close();
    await own.kill9();
  }
  const tokens = '[[tokens]]\nsecret = "operator-secret"\nrole = "control"\n';
  const guarded = await new Proxy(dashboardDir(), tokens, ['--demo']).start();
  const ctx2 = await browser.newContext();
  const q = await ctx2.newPage();
  try {
    await q.goto(`${guarded.url}/`);
    await q.waitForFunction(() => /refused this dashboard's token/.test(document.getElementById('conn-why').textContent), null, { timeout: 20_000 });
    assert.equal(await q.isVisible('#conn-why'), true);
  } finally {
    await ctx2.close();
    await guarded.kill9();
  }
});
