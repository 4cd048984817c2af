import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';

const exec = promisify(execFile);
const root = new URL('..', import.meta.url).pathname;

test('the publishable build compiles and its CLI runs (npm run build)', async () => {
  // Inside the checkout, so the compiled modules resolve their dependencies from node_modules.
  mkdirSync(join(root, 'node_modules/.cache'), { recursive: true });
  const out = mkdtempSync(join(root, 'node_modules/.cache/gatehouse-dist-'));
  try {
    await exec(join(root, 'node_modules/.bin/tsc'), ['-p', 'tsconfig.build.json', '--outDir', out], { cwd: root });
    await exec(process.execPath, ['scripts/copy-assets.ts', out], { cwd: root });
    const { stdout } = await exec(
      process.execPath,
      [join(out, 'cli/main.js'), 'check', '--config', 'demo/gatehouse.yaml'],
      { cwd: root },
    );
    assert.match(stdout, /demo\/gatehouse\.yaml: OK/);
    const { stdout: help } = await exec(process.execPath, [join(out, 'cli/main.js'), '--help'], { cwd: root });
    assert.match(help, /gatehouse serve/);
    // gatehouse/verify (package.json exports "./verify"): built, typed, and loading jose alone.
    const verifyJs = readFileSync(join(out, 'verify/index.js'), 'utf8');
    assert.deepEqual(
      [...verifyJs.matchAll(/^import .* from '([^']+)';$/gm)].map((m) => m[1]),
      ['jose'],
    );
    assert.ok(existsSync(join(out, 'verify/index.d.ts')));
    const verify = (await import(join(out, 'verify/index.js'))) as Record<string, unknown>;
    for (const name of [
      'verifyAssertion',
      'createVerifier',
      'gatehouseMiddleware',
      'withGatehouse',
      'gatehouseHook',
      'gatehouseFastify',
      'AssertionError',
    ])
      assert.equal(typeof verify[name], 'function', name);
    const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
      exports: Record<string, string>;
      files: string[];
    };
    assert.equal(pkg.exports['./verify'], './dist/verify/index.js');
    // The package root (exports "."): Gatehouse embedded in a Node process, started and stopped.
    assert.equal(pkg.exports['.'], './dist/index.js');
    const lib = (await import(join(out, 'index.js'))) as typeof import('../src/index.ts');
    const config = lib.parseConfig(
      'publicUrl: http://127.0.0.1:1\nupstream: http://127.0.0.1:2\nstore: {type: sqlite, path: ":memory:"}\nlog: {level: silent}\n',
      'embedded.yaml',
      {},
    );
    const gatehouse = await lib.Gatehouse.create(config);
    const { port } = await gatehouse.listen(0, '127.0.0.1');
    const health = await fetch(`http://127.0.0.1:${port}/.auth/health`, { headers: { host: '127.0.0.1:1' } });
    assert.equal(health.status, 200);
    await gatehouse.close();
    for (const dir of ['dist', 'schema', 'docs']) assert.ok(pkg.files.includes(dir), `package files include ${dir}`);
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});
