import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';
import { Client, registerJson } from '../helpers/client.ts';
import { startGatehouse } from '../helpers/gatehouse.ts';
import { runCli as cli } from '../helpers/cli.ts';
import { until } from '../helpers/timing.ts';

test('keys rotate (CLI, same store) while requests flow: every assertion verifies against the live JWKS, before, during and after the old key is retired', async () => {
  // Short, consistent delays: a new key is published 1.5 s before it signs; nodes reload every
  // 200 ms; the JWKS max-age is therefore 1 s; an old key is dropped 2 s + 1 s after the switch.
  const tokens = {
    assertionTtl: '2s',
    maxLifetime: '2s',
    clockSkew: '1s',
    keys: { publishBefore: '1500ms', refreshInterval: '200ms' },
  };
  const gh = await startGatehouse(() => ({ tokens }));
  try {
    const file = join(gh.dir, 'gatehouse.yaml');
    writeFileSync(
      file,
      `publicUrl: ${gh.url}\nupstream: ${gh.upstream.url}\nstore: {type: sqlite, path: ${join(gh.dir, 'gatehouse.db')}}\ntokens: ${JSON.stringify(tokens)}\n`,
    );
    const user = new Client(gh.url);
    const me = await registerJson(user);

    // A strict verifier: it honours the served max-age and never refetches early on an unknown
    // kid (30 s cooldown), so only publish-before-sign can keep it working.
    const jwksUrl = new URL(`${gh.url}/.well-known/jwks.json`);
    const maxAge = Number(/max-age=(\d+)/.exec(String((await fetch(jwksUrl)).headers.get('cache-control')))?.[1]);
    assert.equal(maxAge, 1);
    const jwks = createRemoteJWKSet(jwksUrl, { cacheMaxAge: maxAge * 1000, cooldownDuration: 30_000 });

    const oldKid = gh.gatehouse.keys.currentKid;
    const kids = new Map<string, number>();
    const failures: string[] = [];
    let verified = 0;
    let running = true;
    const traffic = (async () => {
      for (let i = 0; running && i < 20_000; i++) {
        const res = await user.get(`/flow/${i}`);
        if (res.status !== 200) failures.push(`request ${i}: ${res.status}`);
        const token = res.json().headers['x-gatehouse-assertion'] as string;
        try {
          const { payload } = await jwtVerify(token, jwks, {
            issuer: gh.url,
            audience: 'app',
            typ: 'gatehouse-assertion+jwt',
          });
          assert.equal(payload.sub, me.id);
          verified++;
          const kid = decodeProtectedHeader(token).kid!;
          kids.set(kid, (kids.get(kid) ?? 0) + 1);
        } catch (err) {
          failures.push(`request ${i} (kid ${decodeProtectedHeader(token).kid}): ${(err as Error).message}`);
        }
      }
    })();
    const published = async () =>
      ((await (await fetch(jwksUrl)).json()) as { keys: { kid: string }[] }).keys.map((k) => k.kid);

    await until('traffic flows', () => verified >= 20);
    const rotate = await cli(['keys', 'rotate', '--config', file]);
    assert.equal(rotate.code, 0, rotate.stderr);
    const newKid = /added key (\S+) \(EdDSA\)/.exec(rotate.stdout)?.[1];
    assert.ok(newKid, rotate.stdout);
    assert.match(rotate.stdout, /signs from .* \(in 1500ms: tokens\.keys\.publishBefore\)/);
    const listed = JSON.parse((await cli(['keys', 'list', '--json', '--config', file])).stdout) as {
      kid: string;
      state: string;
      signs: string;
    }[];
    // Pending until it signs; on a busy machine the CLI may start after that moment.
    const signs = Date.parse(listed.find((k) => k.kid === newKid)?.signs ?? '');
    const states = JSON.stringify(Object.fromEntries(listed.map((k) => [k.kid, k.state])));
    const pending = JSON.stringify({ [oldKid]: 'current', [newKid]: 'pending' });
    const switched = JSON.stringify({ [oldKid]: 'retiring', [newKid]: 'current' });
    if (Date.now() < signs) assert.equal(states, pending);
    else assert.ok(states === pending || states === switched, states);
    await until('the new key is published', async () => (await published()).includes(newKid));
    if (Date.now() < signs) assert.equal(kids.get(newKid), undefined, 'published before it signs');

    await until('assertions are signed with the new key', () => (kids.get(newKid) ?? 0) >= 5);
    await until('the old key is unpublished', async () => !(await published()).includes(oldKid));
    const afterRetire = verified;
    await until('traffic goes on after the retirement', () => verified >= afterRetire + 20);
    running = false;
    await traffic;

    assert.deepEqual(failures, [], 'no failed request or verification');
    assert.ok((kids.get(oldKid) ?? 0) >= 20 && (kids.get(newKid) ?? 0) >= 20, JSON.stringify([...kids]));
    const final = JSON.parse((await cli(['keys', 'list', '--json', '--config', file])).stdout) as {
      kid: string;
      state: string;
    }[];
    assert.deepEqual(
      final.map((k) => [k.kid, k.state]),
      [[newKid, 'current']],
      'the old key is dropped from the store',
    );
    const events = gh.logs.filter((l) => l.event === 'keys_loaded').map((l) => l.signing);
    assert.deepEqual([...new Set(events)], [oldKid, newKid], 'the node logged the switch');
  } finally {
    await gh.close();
  }
});

test('keys rotate --now (a leaked key): the old key is unpublished at once and the node signs with the new one after its next refresh', async () => {
  const gh = await startGatehouse(() => ({ tokens: { keys: { publishBefore: '2s', refreshInterval: '200ms' } } }));
  try {
    const file = join(gh.dir, 'gatehouse.yaml');
    writeFileSync(
      file,
      `publicUrl: ${gh.url}\nupstream: ${gh.upstream.url}\nstore: {type: sqlite, path: ${join(gh.dir, 'gatehouse.db')}}\n`,
    );
    const user = new Client(gh.url);
    await registerJson(user);
    const oldKid = gh.gatehouse.keys.currentKid;
    const r = await cli(['keys', 'rotate', '--now', '--algorithm', 'ES256', '--config', file]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /every other key is unpublished now/);
    await until('the node switched', () => gh.gatehouse.keys.currentKid !== oldKid, 5000);
    const token = (await user.get('/x')).json().headers['x-gatehouse-assertion'] as string;
    assert.equal(decodeProtectedHeader(token).alg, 'ES256');
    const body = (await (await fetch(`${gh.url}/.well-known/jwks.json`)).json()) as { keys: { kid: string }[] };
    assert.deepEqual(
      body.keys.map((k) => k.kid),
      [gh.gatehouse.keys.currentKid],
    );
  } finally {
    await gh.close();
  }
});
