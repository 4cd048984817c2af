import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { runCli as run } from '../helpers/cli.ts';

const dir = mkdtempSync(join(tmpdir(), 'gatehouse-cli-keys-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('gatehouse keys list and rotate: states, times, JSON, ES256, and usage errors', async () => {
  const file = join(dir, 'gatehouse.yaml');
  writeFileSync(
    file,
    `publicUrl: https://app.example.com\nupstream: http://127.0.0.1:3000\nstore: {type: sqlite, path: ${join(dir, 'g.db')}}\ntokens: {maxLifetime: 10m, clockSkew: 30s, keys: {publishBefore: 5m}}\n`,
  );
  const empty = await run(['keys', 'list', '--config', file]);
  assert.equal(empty.code, 0, empty.stderr);
  assert.match(empty.stdout, /no signing keys yet: Gatehouse makes the first one when it starts/);

  const first = await run(['keys', 'rotate', '--config', file]);
  assert.equal(first.code, 0, first.stderr);
  assert.match(
    first.stdout,
    /^added key [A-Za-z0-9_-]{43} \(EdDSA\), published now\nit signs from now on \(the store had no key\)\.$/m,
  );

  const started = Date.now();
  const second = await run(['keys', 'rotate', '--algorithm', 'ES256', '--json', '--config', file]);
  assert.equal(second.code, 0, second.stderr);
  const r = JSON.parse(second.stdout) as { kid: string; alg: string; signs: string; othersDroppedAfter: string };
  assert.equal(r.alg, 'ES256');
  const signs = Date.parse(r.signs);
  assert.ok(Math.abs(signs - started - 5 * 60_000) < 5_000, 'signs after publishBefore');
  assert.ok(
    Math.abs(Date.parse(r.othersDroppedAfter) - signs - 10.5 * 60_000) < 1_000,
    'old key dropped after maxLifetime + clockSkew',
  );

  const list = await run(['keys', 'list', '--config', file]);
  assert.match(list.stdout, /^KID +ALG +STATE +PUBLISHED +SIGNS +DROPPED AFTER$/m);
  assert.match(list.stdout, /EdDSA +current +\S+ +\S+ +\S+Z$/m);
  assert.match(list.stdout, new RegExp(`^${r.kid} +ES256 +pending +\\S+ +\\S+$`, 'm'));
  const json = JSON.parse((await run(['keys', 'list', '--json', '--config', file])).stdout) as { state: string }[];
  assert.deepEqual(json.map((k) => k.state).sort(), ['current', 'pending']);

  for (const bad of [
    ['keys', 'rotate', '--algorithm', 'RS256'],
    ['keys', 'frob'],
    ['keys'],
    ['keys', 'list', 'extra'],
  ]) {
    const u = await run([...bad, '--config', file]);
    assert.equal(u.code, 2, bad.join(' '));
    assert.match(u.stderr, /gatehouse: /);
  }
  assert.match((await run(['--help'])).stdout, /gatehouse keys rotate \[--algorithm EdDSA\|ES256\]/);
  const explained = await run([
    'check',
    '--config',
    file,
    '--explain',
    'https://app.example.com/.well-known/jwks.json',
  ]);
  assert.match(explained.stdout, /Gatehouse's signing keys \(JWKS\), on every site; never forwarded/);
  assert.match((await run(['check', '--config', file, '--explain', '/.well-known/other'])).stdout, /app "app"/);
});
