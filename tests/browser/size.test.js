// The package's size target (issue: browser client; docs/BENCHMARKS.md):
// the release wasm and its JS glue, as `cargo xtask pkg` builds them,
// gzipped at level 9, at most 60 KiB together. Measured as docs/BENCHMARKS.md
// and `cargo xtask pkg` measure it, `gzip -9 -c FILE | wc -c` (GNU gzip;
// Node's zlib at level 9 comes out about 1 % larger on the same file).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const TARGET = 60 * 1024;

test('wasm + JS glue, gzipped, is within 60 KiB', () => {
  const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
  const pkg = process.env.STATION_LINK_PKG || join(root, 'wasm-client', 'pkg');
  let total = 0;
  for (const file of ['station_link_bg.wasm', 'station_link.js']) {
    const bytes = readFileSync(join(pkg, file));
    const gzipped = execFileSync('gzip', ['-9', '-c', join(pkg, file)], { maxBuffer: 1 << 24 }).length;
    console.log(`${file}: ${bytes.length} B, ${gzipped} B gzipped`);
    total += gzipped;
  }
  console.log(`total ${total} B (${(total / 1024).toFixed(1)} KiB), target ${TARGET} B`);
  assert.ok(total <= TARGET, `the package is ${total} B gzipped, over the ${TARGET} B target`);
});
