import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
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
    const { stdout } = await exec(process.execPath, [join(out, 'cli/main.js'), 'check', '--config', 'demo/gatehouse.yaml'], { cwd: root });
    assert.match(stdout, /demo\/gatehouse\.yaml: OK/);
    const { stdout: help } = await exec(process.execPath, [join(out, 'cli/main.js'), '--help'], { cwd: root });
    assert.match(help, /gatehouse serve/);
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});
