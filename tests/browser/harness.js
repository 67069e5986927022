// Harness for the browser tests: a real edge-proxy process serving a fresh
// project that installed the packed npm package, and Debian's Chromium
// driven by playwright-core.
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, readFileSync, existsSync, copyFileSync, rmSync, cpSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..');

export const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--no-first-run', '--disable-quic',
];

/** `npm pack`s wasm-client/pkg and installs the tarball into a fresh ESM project. */
export function installPackage() {
  const pkg = process.env.STATION_LINK_PKG || join(root, 'wasm-client', 'pkg');
  if (!existsSync(join(pkg, 'package.json'))) {
    throw new Error(`${pkg} has no package.json: run \`cargo xtask pkg\` first`);
  }
  const work = mkdtempSync(join(tmpdir(), 'station-link-app-'));
  const tarball = execFileSync('npm', ['pack', '--silent', '--pack-destination', work, pkg], { encoding: 'utf8' }).trim().split('\n').pop();
  writeFileSync(join(work, 'package.json'), JSON.stringify({ name: 'fresh-app', private: true, type: 'module' }));
  execFileSync('npm', ['install', '--no-audit', '--no-fund', '--offline', join(work, tarball)], { cwd: work, stdio: 'ignore' });
  copyFileSync(join(here, 'fixture', 'index.html'), join(work, 'index.html'));
  return work;
}

function proxyBinary() {
  const bin = process.env.EDGE_PROXY_BIN || join(root, 'target', 'debug', 'edge-proxy');
  if (!existsSync(bin)) throw new Error(`${bin} is missing: run \`cargo build -p edge-proxy\``);
  return bin;
}

/**
 * `station-sim station`: a simulated TS-2000 and LP-100A on real
 * pseudo-terminals, in their own process; faults are typed on its stdin
 * (`pa-fail`, `pa-ok`, `tx-drop` ...).
 */
export class StationSim {
  static async start() {
    const bin = join(dirname(proxyBinary()), 'station-sim');
    if (!existsSync(bin)) throw new Error(`${bin} is missing: run \`cargo build -p station-sim\``);
    const sim = new StationSim();
    sim.child = spawn(bin, ['station'], { stdio: ['pipe', 'pipe', 'inherit'] });
    sim.output = '';
    sim.child.stdout.on('data', (d) => { sim.output += d; });
    const deadline = Date.now() + 10_000;
    while (!/meter: LP-100A on \S+/.test(sim.output)) {
      if (Date.now() > deadline) throw new Error(`station-sim did not start: ${sim.output}`);
      await sleep(20);
    }
    sim.radio = sim.output.match(/radio: TS-2000 on (\S+)/)[1];
    sim.meter = sim.output.match(/meter: LP-100A on (\S+)/)[1];
    return sim;
  }

  /** Types a fault command and waits for the simulator's `ok:`. */
  async send(command) {
    const before = this.output.length;
    this.child.stdin.write(`${command}\n`);
    const deadline = Date.now() + 5_000;
    while (!this.output.slice(before).includes('ok:')) {
      if (Date.now() > deadline) throw new Error(`station-sim did not take ${command}: ${this.output.slice(before)}`);
      await sleep(10);
    }
  }

  kill() { this.child?.kill('SIGKILL'); }
}

/** A real edge-proxy process; `kill9`, `stop` (SIGTERM) and `start` again on the same port. */
export class Proxy {
  constructor(www, config = '', extraArgs = []) {
    this.dir = mkdtempSync(join(tmpdir(), 'station-link-proxy-'));
    this.www = www;
    this.extraArgs = extraArgs;
    this.addr = '127.0.0.1:0';
    writeFileSync(join(this.dir, 'proxy.toml'), config);
  }

  async start() {
    const portFile = join(this.dir, 'port');
    rmSync(portFile, { force: true });
    this.child = spawn(proxyBinary(), [
      '--config', join(this.dir, 'proxy.toml'), '--data-dir', join(this.dir, 'data'),
      '--listen', this.addr, '--www', this.www, '--port-file', portFile, ...this.extraArgs,
    ], { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, EDGE_PROXY_LOG: process.env.EDGE_PROXY_LOG || 'error' } });
    const deadline = Date.now() + 20_000;
    while (!existsSync(portFile) || readFileSync(portFile, 'utf8') === '') {
      if (Date.now() > deadline) throw new Error('edge-proxy did not start');
      await sleep(20);
    }
    this.addr = readFileSync(portFile, 'utf8');
    return this;
  }

  get url() { return `http://${this.addr}`; }

  async kill9() { await this.#signal('SIGKILL'); }
  async stop() { await this.#signal('SIGTERM'); }

  async #signal(sig) {
    // A process killed by a signal has signalCode set and exitCode null.
    if (!this.child || this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise((resolve) => this.child.once('exit', resolve));
    this.child.kill(sig);
    await exited;
  }

  async stats() {
    const res = await fetch(`${this.url}/stats`);
    return res.json();
  }
}

export async function launch() {
  return chromium.launch({ executablePath: '/usr/bin/chromium', args: CHROMIUM_ARGS });
}

/** Waits until `fn()` (run in the page) is truthy. A page's globals may
 * not exist yet (the fixture defines `rec` after the wasm has loaded, which
 * can be after `goto` returned): a ReferenceError counts as not yet. */
export async function until(page, fn, arg, timeout = 20_000) {
  const deadline = Date.now() + timeout;
  try {
    for (;;) {
      try {
        await page.waitForFunction(fn, arg, { timeout: Math.max(1, deadline - Date.now()), polling: 50 });
        return;
      } catch (e) {
        if (!/ReferenceError/.test(e.message) || Date.now() >= deadline) throw e;
        await sleep(50);
      }
    }
  } catch (e) {
    // Say what the page saw, so a failure explains itself.
    const seen = await page.evaluate(() => window.rec && JSON.stringify({
      states: rec.states.slice(-6), events: rec.events.length, lastSeq: rec.events.at(-1)?.seq,
      n: window.n, buffer: window.link?.buffer().length, errors: rec.errors.slice(-4), reconnected: rec.reconnected.length,
    })).catch(() => 'page unavailable');
    throw new Error(`${e.message}\n  waiting for: ${fn}\n  page: ${seen}`);
  }
}

/** The dashboard (www/) with the freshly built package in www/pkg, as `cargo xtask demo` serves it. */
export function dashboardDir() {
  const dir = mkdtempSync(join(tmpdir(), 'station-dashboard-'));
  cpSync(join(root, 'www'), dir, { recursive: true });
  const pkg = process.env.STATION_LINK_PKG || join(root, 'wasm-client', 'pkg');
  mkdirSync(join(dir, 'pkg'), { recursive: true });
  cpSync(pkg, join(dir, 'pkg'), { recursive: true });
  return dir;
}

export const artifactsDir = () => {
  const dir = join(root, 'target', 'test-artifacts');
  mkdirSync(dir, { recursive: true });
  return dir;
};

/** A static file server for `dir` on a free loopback port (pages that
 * need no proxy); resolves once it listens: `server.address().port`. */
export async function serveDir(dir) {
  const { createServer } = await import('node:http');
  const server = createServer((req, res) => {
    const path = join(dir, decodeURIComponent(req.url.split('?')[0]));
    if (!existsSync(path)) { res.writeHead(404); res.end(); return; }
    const type = path.endsWith('.js') ? 'text/javascript' : path.endsWith('.wasm') ? 'application/wasm' : 'text/html';
    res.writeHead(200, { 'content-type': type });
    res.end(readFileSync(path));
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return server;
}

/** A real `nats-server -js` on a free loopback port (for the shared log). */
export class Nats {
  async start() {
    const { createServer } = await import('node:net');
    this.port = await new Promise((resolve) => {
      const s = createServer().listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
    });
    this.dir = mkdtempSync(join(tmpdir(), 'station-nats-'));
    // Debian puts it in /usr/sbin, not on every user's PATH.
    const bin = process.env.NATS_SERVER_BIN || (existsSync('/usr/sbin/nats-server') ? '/usr/sbin/nats-server' : 'nats-server');
    this.child = spawn(bin,
      ['-js', '-a', '127.0.0.1', '-p', String(this.port), '-sd', this.dir], { stdio: 'ignore' });
    const { connect } = await import('node:net');
    const deadline = Date.now() + 20_000;
    for (;;) {
      const up = await new Promise((resolve) => {
        const c = connect(this.port, '127.0.0.1', () => { c.destroy(); resolve(true); });
        c.on('error', () => resolve(false));
      });
      if (up) return this;
      if (Date.now() > deadline) throw new Error('nats-server did not start (cargo xtask setup installs it)');
      await sleep(20);
    }
  }

  get url() { return `nats://127.0.0.1:${this.port}`; }

  async kill9() {
    if (!this.child || this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise((resolve) => this.child.once('exit', resolve));
    this.child.kill('SIGKILL');
    await exited;
  }
}
