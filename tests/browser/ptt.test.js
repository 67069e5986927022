// The dashboard's PTT button in headless Chromium, against station
// simulators (a TS-2000 on a real pseudo-terminal, in its own process)
// behind real proxies. `#ptt` is the radio's own polled state, so TX and RX
// here are what the radio did, not what the page believes.
//
// Two stations: `standard` has the proxy's default TX watchdog (a keyed
// client must repeat PTT-on within tx_keepalive_ms = 3000); `strict` gives
// it 10 s, so a radio back on RX within 1.5 s was unkeyed by the page itself
// letting go, not by the watchdog.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { Proxy, StationSim, launch, dashboardDir } from './harness.js';

let browser;
const running = [];
let standard;
let strict;

async function station(config = []) {
  const sim = await StationSim.start();
  running.push(sim);
  const proxy = new Proxy(dashboardDir(), [`radio_port = "${sim.radio}"`, 'radio_poll_ms = 100', ...config].join('\n') + '\n');
  running.push(proxy);
  await proxy.start();
  return { sim, proxy };
}

before(async () => {
  [standard, strict] = await Promise.all([station(), station(['tx_keepalive_ms = 10000'])]);
  browser = await launch();
});

after(async () => {
  await browser?.close();
  for (const p of running.reverse()) await (p.kill9?.() ?? p.kill());
});

/** A dashboard in a context of its own (its own client), connected, its radio controls enabled and on RX. */
async function open(at, { viewport = { width: 1280, height: 720 }, init } = {}) {
  const context = await browser.newContext({ viewport });
  if (init) await context.addInitScript(init);
  const page = await context.newPage();
  page.on('pageerror', (e) => console.error('page error:', e.message));
  await page.goto(at.proxy.url);
  await waitFor(page, () => document.getElementById('badge').textContent === 'connected'
    && !document.getElementById('ptt-btn').disabled && document.getElementById('ptt').textContent === 'RX', null, 20_000, 'connected, radio on RX');
  // What the page sends as radio.ptt, every change of the radio's state, every toast shown.
  await page.evaluate(() => {
    const link = window.dashboardLink;
    const send = link.send.bind(link);
    window.pttSent = [];
    link.send = (kind, payload, options) => {
      if (kind === 'radio.ptt') pttSent.push(payload.on);
      return send(kind, payload, options);
    };
    const ptt = document.getElementById('ptt');
    window.pttSeen = [ptt.textContent];
    new MutationObserver(() => { if (pttSeen.at(-1) !== ptt.textContent) pttSeen.push(ptt.textContent); })
      .observe(ptt, { childList: true, characterData: true, subtree: true });
    window.toastsShown = [];
    new MutationObserver((ms) => {
      for (const m of ms) for (const n of m.addedNodes) if (n.classList?.contains('toast')) toastsShown.push({ text: n.textContent, kind: n.className, region: n.parentElement.id });
    }).observe(document.getElementById('toast-stack'), { childList: true, subtree: true });
  });
  return { page, context };
}

/** Waits (polling) until `fn` is truthy in the page; a failure says what the page saw. */
async function waitFor(page, fn, arg, timeout, what) {
  try {
    await page.waitForFunction(fn, arg, { timeout, polling: 50 });
  } catch (e) {
    const seen = await page.evaluate(() => JSON.stringify({
      badge: document.getElementById('badge').textContent, ptt: document.getElementById('ptt').textContent,
      pressed: document.getElementById('ptt-btn').getAttribute('aria-pressed'), released: document.getElementById('ptt-btn').dataset.released,
      pttSeen: window.pttSeen, pttSent: window.pttSent, toasts: window.toastsShown?.map((t) => t.text),
    })).catch(() => 'page unavailable');
    throw new Error(`not ${what} within ${timeout} ms\n  page: ${seen}`);
  }
}
const radioIs = (page, want, timeout, what = `radio on ${want}`) =>
  waitFor(page, (w) => document.getElementById('ptt').textContent === w, want, timeout, what);
const pressed = (page) => page.getAttribute('#ptt-btn', 'aria-pressed');
const released = (page) => page.evaluate(() => document.getElementById('ptt-btn').dataset.released);

async function keyWithMouse(page) {
  await page.hover('#ptt-btn');
  await page.mouse.down();
  await radioIs(page, 'TX', 5_000, 'keyed with the mouse');
}

async function keyWithSpace(page) {
  await page.focus('#ptt-btn');
  await page.keyboard.down('Space');
  await radioIs(page, 'TX', 5_000, 'keyed by Space');
  assert.equal(await pressed(page), 'true');
}

test('Space held on the focused button keeps the radio keyed past the watchdog\'s keepalive; letting go unkeys', async () => {
  const { page, context } = await open(standard);
  try {
    await page.evaluate(() => window.addEventListener('keydown', (e) => { if (e.code === 'Space') window.spacePrevented = e.defaultPrevented; }));
    await keyWithSpace(page);
    assert.equal(await page.evaluate(() => window.spacePrevented), true, 'Space does not scroll the page');
    // Longer than tx_keepalive_ms (3000): the first PTT-on alone would have
    // been unkeyed by the watchdog by now; only the repeats keep it on.
    await sleep(4_000);
    assert.equal(await page.textContent('#ptt'), 'TX', 'still transmitting');
    assert.deepEqual(await page.evaluate(() => window.pttSeen), ['RX', 'TX'], 'never dropped while held');
    assert.ok(await page.isHidden('#unkey-btn'), 'no "Unkey now" while this dashboard holds PTT');
    const sent = await page.evaluate(() => window.pttSent);
    assert.ok(sent.length >= 4 && sent.every((on) => on), `PTT-on repeated every second: ${sent}`);

    await page.keyboard.up('Space');
    await radioIs(page, 'RX', 3_000, 'unkeyed after Space was let go');
    assert.equal(await pressed(page), 'false');
    assert.equal(await released(page), 'space released');
    assert.equal((await page.evaluate(() => window.pttSent)).at(-1), false);
  } finally {
    await context.close();
  }
});

test('Enter does not key (or latch) the button', async () => {
  const { page, context } = await open(strict);
  try {
    await page.focus('#ptt-btn');
    await page.keyboard.press('Enter');
    // The keyboard handlers ran before press() returned.
    assert.equal(await pressed(page), 'false');
    assert.deepEqual(await page.evaluate(() => window.pttSent), [], 'no PTT sent');
  } finally {
    await context.close();
  }
});

test('the page hidden while PTT is held unkeys at once, not when the watchdog would', async () => {
  const { page, context } = await open(strict);
  try {
    await keyWithSpace(page);
    await page.evaluate(() => {
      Object.defineProperty(document, 'visibilityState', { value: 'hidden', configurable: true });
      Object.defineProperty(document, 'hidden', { value: true, configurable: true });
      document.dispatchEvent(new Event('visibilitychange'));
    });
    // tx_keepalive_ms is 10 s here: only the page letting go unkeys this soon.
    await radioIs(page, 'RX', 1_500, 'unkeyed after the page was hidden');
    assert.equal(await pressed(page), 'false');
    assert.equal(await released(page), 'page hidden');
    await page.keyboard.up('Space');
  } finally {
    await context.close();
  }
});

test('the window losing focus while PTT is held unkeys at once; Space\'s auto-repeat does not key again', async () => {
  const { page, context } = await open(strict);
  try {
    await keyWithSpace(page);
    await page.evaluate(() => window.dispatchEvent(new Event('blur')));
    await radioIs(page, 'RX', 1_500, 'unkeyed after the window lost focus');
    assert.equal(await pressed(page), 'false');
    assert.equal(await released(page), 'window lost focus');

    // Space is still down: the keyboard's auto-repeat (keydown, repeat: true) is no new press.
    const sent = (await page.evaluate(() => window.pttSent)).length;
    await page.keyboard.down('Space');
    assert.equal(await page.evaluate(() => window.pttSent.length), sent, 'an auto-repeat sends nothing');
    assert.equal(await pressed(page), 'false');
    await page.keyboard.up('Space');
  } finally {
    await context.close();
  }
});

test('the browser cancelling the pointer (pointercancel) while PTT is held unkeys at once', async () => {
  const { page, context } = await open(strict);
  try {
    await keyWithMouse(page);
    await page.dispatchEvent('#ptt-btn', 'pointercancel');
    await radioIs(page, 'RX', 1_500, 'unkeyed after pointercancel');
    assert.equal(await released(page), 'pointercancel');
    await page.mouse.up();
  } finally {
    await context.close();
  }
});

test('the link dropping while PTT is held ends the hold: the radio is not keyed again after the reconnect', async () => {
  const { page, context } = await open(strict);
  try {
    // Held with the mouse: a Space hold would also end as the disabled button loses focus.
    await keyWithMouse(page);
    await page.evaluate(() => window.dashboardLink.simulateDisconnect(1_000));
    await waitFor(page, () => document.getElementById('badge').textContent !== 'connected', null, 5_000, 'disconnected');
    assert.equal(await pressed(page), 'false');
    assert.match(await released(page), /^link (reconnecting|disconnected|stale)/);
    // The proxy unkeys the session that went away, and says so.
    await radioIs(page, 'RX', 5_000);
    await waitFor(page, () => document.getElementById('badge').textContent === 'connected', null, 20_000, 'reconnected');
    await waitFor(page, () => window.toastsShown.some((t) => t.kind.includes('alarm') && t.text.startsWith('The keying dashboard disconnected while transmitting: unkeyed')),
      null, 10_000, 'a watchdog alarm toast for the ended session');
    // The button is still held down, but the hold ended with the link:
    // nothing keys the radio again (a stale keepalive would within a second).
    await sleep(2_500);
    assert.deepEqual((await page.evaluate(() => window.pttSeen)).slice(-1), ['RX'], 'still on RX after the reconnect');
    assert.equal(await page.textContent('#ptt'), 'RX');
    await page.mouse.up();
  } finally {
    await context.close();
  }
});

test('after the time-out timer, PTT is refused (tx_timeout), not repeated, and said once per press', async () => {
  // A proxy whose time-out timer fires after 1.5 s on the air: the held
  // button's repeats are then refused until it is let go.
  const tot = await station(['tx_keepalive_ms = 10000', 'tx_max_ms = 1500']);
  const { page, context } = await open(tot);
  try {
    const refusals = () => page.evaluate(() => window.toastsShown.filter((t) => t.text.startsWith('Transmit time-out: release')));
    await keyWithSpace(page);
    await radioIs(page, 'RX', 5_000, 'unkeyed by the time-out timer');
    await waitFor(page, () => window.toastsShown.some((t) => t.text === 'Transmit time-out: release PTT, then key again'), null, 5_000, 'told the PTT was refused');
    const sentAtRefusal = (await page.evaluate(() => window.pttSent)).length;
    // Held for more than two repeat periods more.
    await sleep(2_500);
    assert.equal(await pressed(page), 'true', 'still held');
    assert.ok(await page.evaluate(() => document.getElementById('ptt-btn').classList.contains('refused')));
    assert.equal((await page.evaluate(() => window.pttSent)).length, sentAtRefusal, 'no PTT-on repeated after the refusal');
    const shown = await refusals();
    assert.equal(shown.length, 1, `one toast: ${JSON.stringify(await page.evaluate(() => window.toastsShown))}`);
    assert.equal(shown[0].region, 'toasts', 'in the polite region');
    assert.equal(await page.evaluate(() => window.toastsShown.filter((t) => t.text.startsWith('Command')).length), 0, 'no generic rejection toasts');
    assert.equal(await page.evaluate(() => document.getElementById('ptt').textContent), 'RX', 'the radio stays unkeyed');

    // Let go (PTT-off releases the lock-out); a fresh press keys again.
    await page.keyboard.up('Space');
    await sleep(300);
    await keyWithSpace(page);
    await page.keyboard.up('Space');
    await radioIs(page, 'RX', 5_000, 'released');
  } finally {
    await context.close();
  }
});

test('"Unkey now" appears while another client keys the radio, and unkeys it', async () => {
  const { page, context } = await open(strict);
  const other = await open(strict);
  try {
    assert.ok(await page.isHidden('#unkey-btn'));
    // One PTT-on, never repeated: with tx_keepalive_ms = 10000 the watchdog
    // leaves it on for 10 s.
    await other.page.evaluate(() => window.dashboardLink.send('radio.ptt', { on: true }, { delivery: 'volatile', ttlMs: 2000 }));
    await radioIs(page, 'TX', 5_000, 'keyed by the other client');
    await waitFor(page, () => !document.getElementById('unkey-btn').hidden, null, 2_000, 'showing "Unkey now"');
    const box = await page.locator('#unkey-btn').boundingBox();
    assert.ok(box.height >= 44, `"Unkey now" is ${box.height} px tall`);
    await page.click('#unkey-btn');
    await radioIs(page, 'RX', 1_500, 'unkeyed by "Unkey now"');
    await waitFor(page, () => document.getElementById('unkey-btn').hidden, null, 2_000, '"Unkey now" hidden again');
  } finally {
    await other.context.close();
    await context.close();
  }
});

test('on a phone (390x844) the PTT button is a target a thumb can hit', async () => {
  const { page, context } = await open(strict, { viewport: { width: 390, height: 844 } });
  try {
    const box = await page.locator('#ptt-btn').boundingBox();
    assert.ok(box.height >= 44, `PTT button is ${box.height} px tall`);
    assert.ok(box.width >= 176, `PTT button is ${box.width} px wide`);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 1, `no horizontal scrolling (${overflow} px too wide)`);
    // The tooltip promises only what works (Space: tested above).
    assert.match(await page.getAttribute('#ptt-btn', 'title'), /^hold to transmit: .*hold Space; letting go unkeys$/);
  } finally {
    await context.close();
  }
});
