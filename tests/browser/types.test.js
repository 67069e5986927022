// The package's TypeScript declarations, checked by npm's `typescript` in a
// fixture project with `strict` and without `skipLibCheck` (libs es2022 and
// dom, no esnext): the READMEs' examples type-check, and a file with one
// typo each (an option, a profile, an event name, an event field, a
// delivery value, a send option) fails on that very line. Then, in
// Chromium, the same mistakes throw at run time.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync, readdirSync, copyFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { installPackage, Proxy, launch, until } from './harness.js';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..');
const tsc = join(here, 'node_modules', 'typescript', 'bin', 'tsc');

let app;

before(() => {
  app = installPackage();
  for (const f of readdirSync(join(here, 'types'))) copyFileSync(join(here, 'types', f), join(app, f));
  // The READMEs' browser examples, each ```js block as a file of its own.
  let n = 0;
  for (const readme of ['wasm-client/npm/README.md', 'README.md']) {
    const text = readFileSync(join(root, readme), 'utf8');
    for (const [, code] of text.matchAll(/```js\n([\s\S]*?)```/g)) {
      if (!code.includes("from 'station-link'")) continue;
      writeFileSync(join(app, `readme-${++n}.ts`), code);
    }
  }
  assert.ok(n >= 2, `README examples found: ${n}`);
});

/** Runs tsc on one file of the fixture; returns its exit status and errors. */
function check(file) {
  writeFileSync(join(app, 'tsconfig.check.json'), JSON.stringify({ extends: './tsconfig.json', files: ['prelude.d.ts', file] }));
  try {
    execFileSync(process.execPath, [tsc, '-p', 'tsconfig.check.json', '--pretty', 'false'], { cwd: app, encoding: 'utf8' });
    return { ok: true, errors: [] };
  } catch (e) {
    const errors = e.stdout.split('\n').filter(Boolean).map((l) => {
      const m = l.match(/^(.*?)\((\d+),\d+\): error (TS\d+): (.*)$/);
      return m ? { file: m[1], line: Number(m[2]), code: m[3], text: m[4] } : { text: l };
    });
    return { ok: false, errors };
  }
}

test("the READMEs' examples and a typed use type-check under strict, without skipLibCheck", () => {
  const files = readdirSync(app).filter((f) => /^readme-\d+\.ts$/.test(f) || f === 'typed.ts');
  for (const file of files) {
    const r = check(file);
    assert.ok(r.ok, `${file}:\n${r.errors.map((e) => `${e.line}: ${e.text}`).join('\n')}`);
  }
});

for (const file of ['bad-option.ts', 'bad-profile.ts', 'bad-event.ts', 'bad-field.ts', 'bad-delivery.ts', 'bad-send-option.ts']) {
  test(`${file}: one typo, one error on its line`, () => {
    const lines = readFileSync(join(here, 'types', file), 'utf8').split('\n');
    const typo = lines.findIndex((l) => l.includes('// typo')) + 1;
    const r = check(file);
    assert.equal(r.ok, false, `${file} type-checked`);
    const mine = r.errors.filter((e) => e.file === file);
    assert.ok(mine.length >= 1 && mine.every((e) => e.line === typo), `errors on line ${typo} only: ${JSON.stringify(r.errors)}`);
  });
}

let browser;
let proxy;
after(async () => {
  await browser?.close();
  await proxy?.kill9();
});

test('at run time, an unknown event name and an unknown send option throw', async () => {
  browser = await launch();
  proxy = await new Proxy(app).start();
  const page = await (await browser.newContext()).newPage();
  await page.goto(`${proxy.url}/index.html`);
  await until(page, () => window.ready === true);
  const thrown = await page.evaluate(() => {
    const attempt = (f) => { try { f(); return null; } catch (e) { return String(e.message); } };
    return {
      on: attempt(() => link.on('evnet', () => {})),
      off: attempt(() => link.off('evnet', () => {})),
      ttl: attempt(() => link.send('radio.ptt', { on: true }, { delivery: 'volatile', ttl: 2000 })),
      notObject: attempt(() => link.send('note', 1, 'volatile')),
      fine: attempt(() => { link.on('event', () => {}); link.send('note', { n: 1 }, { delivery: 'reliable', ttlMs: 5000 }); }),
    };
  });
  assert.match(thrown.on, /unknown event `evnet`/);
  assert.match(thrown.off, /unknown event `evnet`/);
  assert.match(thrown.ttl, /unknown send option `ttl`/);
  assert.match(thrown.notObject, /send options must be an object/);
  assert.equal(thrown.fine, null);
});
