import assert from 'node:assert/strict';
import { test } from 'node:test';
import { serveV8Flags } from '../../src/cli/v8-flags.ts';

test('serve adds its V8 flags when the operator chose none', () => {
  assert.deepEqual(serveV8Flags([]), ['--max-semi-space-size=8', '--no-allocation-site-pretenuring']);
  assert.deepEqual(serveV8Flags(['--enable-source-maps', '']), [
    '--max-semi-space-size=8',
    '--no-allocation-site-pretenuring',
  ]);
});

test("the operator's choice of either flag wins, in any spelling and either way", () => {
  assert.deepEqual(serveV8Flags(['--max-semi-space-size=32']), ['--no-allocation-site-pretenuring']);
  assert.deepEqual(serveV8Flags(['--max_semi_space_size=32']), ['--no-allocation-site-pretenuring']);
  assert.deepEqual(serveV8Flags(['--semi-space-size=4']), ['--no-allocation-site-pretenuring']);
  assert.deepEqual(serveV8Flags(['--allocation-site-pretenuring']), ['--max-semi-space-size=8']);
  assert.deepEqual(serveV8Flags(['--no_allocation_site_pretenuring']), ['--max-semi-space-size=8']);
  assert.deepEqual(serveV8Flags(['--allocation-site-pretenuring', '--max-semi-space-size=16']), []);
});
