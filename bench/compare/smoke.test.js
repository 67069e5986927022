// A few seconds' check, run by `cargo xtask test`, that the comparison's
// clients still work: run.js against a real edge proxy (EDGE_PROXY_BIN, or
// the workspace's debug build) and against socketio-server.js, 2 clients for
// a second each; every event delivered once and in order, nothing refused.
//   node --test bench/compare/
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = fileURLToPath(new URL('.', import.meta.url));
const proxyBin = process.env.EDGE_PROXY_BIN ?? join(here, '../../target/debug/edge-proxy');
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function load(system, url, pid) {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, ['run.js', '--system', system, '--url', url, '--server-pid', String(pid),
      '--clients', '2', '--seconds', '1', '--warmup', '0.3'], { cwd: here, timeout: 30_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${err.message}\n${stderr}`));
      else resolve(JSON.parse(stdout.trim().split('\n').pop()));
    });
  });
}

function check(r) {
  assert.ok(r.delivered > 0, `nothing delivered: ${JSON.stringify(r)}`);
  assert.equal(r.out_of_order, 0);
  assert.equal(r.rejected, 0);
  assert.equal(r.gaps, 0);
  assert.equal(r.holes, 0);
  assert.equal(r.duplicates, 0);
  assert.ok(r.p99_ms > 0);
}

test('the Node client receives every event from a real edge proxy', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'compare-smoke-'));
  writeFileSync(join(dir, 'proxy.toml'), 'max_publish_per_sec = 1000000\nmax_handshakes_per_sec = 100000\n');
  const proxy = spawn(proxyBin, ['--config', join(dir, 'proxy.toml'), '--data-dir', join(dir, 'data'),
    '--listen', '127.0.0.1:0', '--port-file', join(dir, 'port')], { stdio: 'ignore', env: { ...process.env, EDGE_PROXY_LOG: 'error' } });
  try {
    let addr = '';
    for (let i = 0; i < 500 && !addr; i++) {
      await sleep(20);
      try { addr = readFileSync(join(dir, 'port'), 'utf8').trim(); } catch { /* not yet */ }
    }
    assert.ok(addr, 'the proxy did not start');
    check(await load('edge', `ws://${addr}/ws`, proxy.pid));
  } finally {
    proxy.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the same load runs against Socket.IO', async () => {
  const server = spawn(process.execPath, [join(here, 'socketio-server.js'), '0'], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    const port = await new Promise((resolve) => server.stdout.on('data', (d) => {
      const m = /listening (\d+)/.exec(String(d));
      if (m) resolve(Number(m[1]));
    }));
    check(await load('socketio', `http://127.0.0.1:${port}`, server.pid));
  } finally {
    server.kill('SIGKILL');
  }
});
