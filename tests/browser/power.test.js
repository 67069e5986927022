// The dashboard's hardware alarms in headless Chromium: a station simulator
// (TS-2000 and LP-100A on real pseudo-terminals, in its own process, faults
// typed on its stdin) behind the real proxy. A dead amplifier on the air
// must reach the operator as toasts, in order, and clear when repaired.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Proxy, StationSim, launch, dashboardDir, artifactsDir } from './harness.js';

let browser;
let proxy;
let sim;
let page;

before(async () => {
  sim = await StationSim.start();
  proxy = await new Proxy(dashboardDir(), [
    `radio_port = "${sim.radio}"`, 'radio_poll_ms = 100',
    'meter = "lp100"', `meter_port = "${sim.meter}"`, 'meter_poll_ms = 200',
  ].join('\n') + '\n').start();
  browser = await launch();
  page = await (await browser.newContext({ viewport: { width: 1280, height: 720 } })).newPage();
  page.on('pageerror', (e) => console.error('page error:', e.message));
  await page.goto(proxy.url);
});

after(async () => {
  await browser?.close();
  await proxy?.kill9();
  sim?.kill();
});

const text = (id) => page.textContent(`#${id}`);
const waitText = (id, want, timeout = 20_000) =>
  page.waitForFunction(([i, w]) => document.getElementById(i).textContent.startsWith(w), [id, want], { timeout, polling: 50 });
const toasts = () => page.$$eval('#toasts .toast', (ts) => ts.map((t) => t.textContent));
const waitToast = (prefix) => page.waitForFunction(
  (p) => [...document.querySelectorAll('#toasts .toast')].some((t) => t.textContent.startsWith(p)), prefix, { timeout: 20_000 });

test('both hardware links show connected, with health', async () => {
  await waitText('badge', 'connected');
  await waitText('link-state', 'connected');
  await waitText('meter-state', 'connected');
  assert.match(await text('meter-health'), /^\d+$/);
});

test('a dead amplifier on the air: power warning, critical, TX drop toasts; repaired, it clears', async () => {
  await page.dispatchEvent('#ptt-btn', 'pointerdown');
  await page.waitForFunction(() => parseFloat(document.getElementById('watts').textContent) > 50, null, { timeout: 20_000 });
  assert.notEqual(await text('swr'), '–', 'the LP-100A reports SWR');

  await sim.send('pa-fail');
  await waitToast('Power warning');
  await waitToast('Power critical');
  await waitToast('TX dropped');
  await waitText('power-level', 'critical');
  const shown = await toasts();
  const at = (p) => shown.findIndex((t) => t.startsWith(p));
  assert.ok(at('Power warning') < at('Power critical'), `warning before critical: ${shown}`);
  assert.match(shown[at('Power critical')], /3 readings in a row below 0\.1 W/);
  await page.screenshot({ path: join(artifactsDir(), 'power-alarm.png') });

  await sim.send('pa-ok');
  await waitText('power-level', 'normal');
  await page.dispatchEvent('#ptt-btn', 'pointerup');
  await waitText('ptt', 'RX');
});

test('the Reconnect button reconnects a hardware link', async () => {
  const reconnected = () => page.$$eval('#events li[data-kind="link.meter"]',
    (lis) => lis.filter((li) => li.textContent.includes('EVENT_RECONNECT_OK')).length);
  const before = await reconnected();
  await page.click('.relink[data-link="meter"]');
  await page.waitForFunction((n) => [...document.querySelectorAll('#events li[data-kind="link.meter"]')]
    .filter((li) => li.textContent.includes('EVENT_RECONNECT_OK')).length > n, before, { timeout: 20_000 });
  await waitText('meter-state', 'connected');
  assert.ok((await reconnected()) > before);
});

test('the radio controls are disabled, with the reason, while the radio link is down', async () => {
  await sim.send('silent');
  await page.waitForFunction(() => document.getElementById('ptt-btn').disabled, null, { timeout: 20_000 });
  assert.match(await text('controls-why'), /radio link is (reconnecting|tx dropped|connecting|failed)/);
  assert.ok(!(await page.evaluate(() => document.querySelector('.relink[data-link="radio"]').disabled)), 'Reconnect stays available');
  await sim.send('answer');
  await page.waitForFunction(() => !document.getElementById('ptt-btn').disabled, null, { timeout: 20_000 });
  assert.equal(await text('controls-why'), '');
});
