// The dashboard in headless Chromium against the demo proxy (simulated
// TS-2000 on a pseudo-terminal, simulated power meter): states, recovery,
// toasts, the event log, the debug panel and its tests, the radio controls.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { Proxy, launch, dashboardDir, artifactsDir } from './harness.js';

let browser;
let proxy;
let page;
let context;

before(async () => {
  // The throughput test sends 200 events at once: above the default 50/s.
  proxy = await new Proxy(dashboardDir(), 'radio_poll_ms = 100\nmax_publish_per_sec = 1000\n', ['--demo']).start();
  browser = await launch();
  context = await browser.newContext({ viewport: { width: 1280, height: 720 }, acceptDownloads: true });
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
  await page.screenshot({ path: join(artifactsDir(), 'dashboard.png') });
  await page.dispatchEvent('#ptt-btn', 'pointerup');
  await page.waitForFunction(() => document.getElementById('ptt').textContent === 'RX', null, { timeout: 20_000 });
  assert.equal(await page.textContent('#link-state'), 'connected', 'the radio link and its health are shown');
  assert.match(await page.textContent('#link-health'), /^\d+$/);
});

test('the event log is in order with no duplicates, and filters by kind', async () => {
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
  await page.click('[data-act="throughput"]');
  await page.waitForFunction(() => /Throughput: 200 of 200/.test(document.getElementById('test-result').textContent), null, { timeout: 20_000 });
  await page.click('[data-act="stability"]');
  assert.equal(await page.isVisible('#test-progress'), true, 'a progress indicator while it runs');
  await page.waitForFunction(() => /Stability \(3 s\): \d+ pings ok, 0 failed/.test(document.getElementById('test-result').textContent), null, { timeout: 20_000 });
  await page.waitForFunction(() => document.getElementById('metrics').textContent.includes('"state"'), null, { timeout: 5_000 });
  await page.screenshot({ path: join(artifactsDir(), 'debug-panel.png'), fullPage: true });
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('[data-act="export"]')]);
  const path = await download.path();
  const report = JSON.parse(readFileSync(path, 'utf8'));
  assert.ok(report.metrics && Array.isArray(report.history), 'export logs gives valid JSON with metrics and history');
});

test('readable on a phone-width screen', async () => {
  await page.setViewportSize({ width: 390, height: 844 });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 1, `no horizontal scrolling (${overflow} px too wide)`);
  await page.setViewportSize({ width: 1280, height: 720 });
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
