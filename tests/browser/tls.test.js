// HTTPS and WSS straight from the proxy (rustls): the dashboard loads over
// https://, gets its events over wss://, and a SIGHUP with a renewed
// certificate keeps every session while new connections get the new one.
// The test certificates are made with Debian's openssl and trusted by their
// public key (--ignore-certificate-errors-spki-list), as a LAN CA would be.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync } from 'node:fs';
import { X509Certificate, createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { chromium } from 'playwright-core';
import { Proxy, dashboardDir, CHROMIUM_ARGS } from './harness.js';

const dir = mkdtempSync(join(tmpdir(), 'station-link-tls-'));

/** A self-signed certificate for 127.0.0.1 and localhost; returns its SPKI hash. */
function makeCert(name) {
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', join(dir, `${name}.key`), '-out', join(dir, `${name}.crt`), '-days', '2',
    '-subj', `/CN=${name}`, '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost',
  ], { stdio: 'ignore' });
  const cert = new X509Certificate(readFileSync(join(dir, `${name}.crt`)));
  const spki = cert.publicKey.export({ type: 'spki', format: 'der' });
  return { spki: createHash('sha256').update(spki).digest('base64'), fingerprint: cert.fingerprint256 };
}

/** The certificate a fresh TLS connection to the proxy is given. */
function servedFingerprint(addr) {
  const [host, port] = [addr.slice(0, addr.lastIndexOf(':')), Number(addr.slice(addr.lastIndexOf(':') + 1))];
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host, port, rejectUnauthorized: false }, () => {
      resolve(s.getPeerX509Certificate().fingerprint256);
      s.end();
    });
    s.on('error', reject);
  });
}

const first = makeCert('first');
const second = makeCert('second');
copyFileSync(join(dir, 'first.crt'), join(dir, 'live.crt'));
copyFileSync(join(dir, 'first.key'), join(dir, 'live.key'));

let proxy;
let browser;

before(async () => {
  const config = `radio_poll_ms = 100\ntls_cert = "${join(dir, 'live.crt')}"\ntls_key = "${join(dir, 'live.key')}"\n`;
  proxy = await new Proxy(dashboardDir(), config, ['--demo']).start();
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: [...CHROMIUM_ARGS, `--ignore-certificate-errors-spki-list=${first.spki},${second.spki}`],
  });
});

after(async () => {
  await browser?.close();
  await proxy?.kill9();
});

test('the dashboard over https gets events over wss, and a renewed certificate keeps its session', async () => {
  const page = await browser.newPage();
  await page.addInitScript(() => {
    window.states = [];
    const Native = window.WebSocket;
    window.WebSocket = class extends Native {
      constructor(url, p) { super(url, p); window.wsUrl = url; window.opened = (window.opened || 0) + 1; }
    };
  });
  await page.goto(`https://${proxy.addr}/`);
  assert.equal(await page.evaluate(() => window.isSecureContext), true);
  await page.waitForFunction(() => document.getElementById('badge').textContent === 'connected', null, { timeout: 20_000 });
  await page.waitForFunction(() => document.getElementById('freq').textContent === '14.074000', null, { timeout: 20_000 });
  assert.match(await page.evaluate(() => window.wsUrl), /^wss:\/\//);
  assert.equal(await servedFingerprint(proxy.addr), first.fingerprint);

  // Renewed: new files in place, SIGHUP.
  copyFileSync(join(dir, 'second.crt'), join(dir, 'live.crt'));
  copyFileSync(join(dir, 'second.key'), join(dir, 'live.key'));
  proxy.child.kill('SIGHUP');
  const deadline = Date.now() + 10_000;
  while ((await servedFingerprint(proxy.addr)) !== second.fingerprint) {
    assert.ok(Date.now() < deadline, 'the new certificate was never served');
    await new Promise((r) => setTimeout(r, 50));
  }
  // The open session carried on: same socket, still live (a tuning shows).
  await page.fill('#freq-in', '7074');
  await page.click('#freq-form button');
  await page.waitForFunction(() => document.getElementById('freq').textContent === '7.074000', null, { timeout: 20_000 });
  assert.equal(await page.evaluate(() => window.opened), 1, 'no reconnect across the reload');
  assert.equal(await page.textContent('#badge'), 'connected');
  // And a new page gets in with the new certificate.
  const fresh = await browser.newPage();
  await fresh.goto(`https://${proxy.addr}/`);
  await fresh.waitForFunction(() => document.getElementById('freq').textContent === '7.074000', null, { timeout: 20_000 });
});
