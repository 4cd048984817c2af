import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { Client, registerJson } from '../helpers/client.ts';
import { runCli, withConfigFile } from '../helpers/cli.ts';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.ts';
import { refusal } from '../helpers/config.ts';

/**
 * `hsts`: Strict-Transport-Security for an https publicUrl (README, Configuration). Gatehouse is
 * reached as behind a TLS-terminating proxy on loopback (X-Forwarded-Proto: https), as the
 * browser would reach it by name.
 */

const STS = 'strict-transport-security';

/** An app that answers every path, and sends its own Strict-Transport-Security on /own-sts. */
async function app(): Promise<{ url: string; close(): Promise<void> }> {
  const server = http.createServer((req, res) => {
    const headers: http.OutgoingHttpHeaders = { 'content-type': 'text/plain' };
    if (req.url === '/own-sts') headers[STS] = 'max-age=60';
    res.writeHead(200, headers).end('app');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

/** A client that reaches `gh` as https://<host> through a trusted proxy. */
function browser(gh: TestGatehouse, host: string): Client {
  const c = new Client(gh.url);
  c.defaultHeaders = { host, 'x-forwarded-proto': 'https' };
  return c;
}

describe('an https publicUrl', () => {
  let upstream: Awaited<ReturnType<typeof app>>;
  let gh: TestGatehouse;
  before(async () => {
    upstream = await app();
    gh = await startGatehouse(() => ({
      publicUrl: 'https://app.example.test',
      trustedProxies: ['loopback'],
      upstream: upstream.url,
      routes: [{ path: '/open/**', access: 'public' }],
    }));
  });
  after(async () => {
    await gh?.close();
    await upstream?.close();
  });

  test('every response carries Strict-Transport-Security: pages, redirects, refusals, the app’s; an app’s own is kept', async () => {
    const c = browser(gh, 'app.example.test');
    const year = 'max-age=31536000';
    const seen = {
      'the sign-in page': await c.html('/.auth/login'),
      'the redirect to it': await c.html('/private'),
      'a 401 for an API': await c.get('/private', { accept: 'application/json' }),
      'the JWKS': await c.get('/.well-known/jwks.json'),
      'a public page of the app': await c.get('/open/page'),
      'a bad request': await c.get('/open/%00'),
    };
    for (const [what, res] of Object.entries(seen)) assert.equal(res.headers[STS], year, what);
    assert.equal(seen['the redirect to it'].status, 302);
    await registerJson(c);
    assert.equal((await c.get('/private')).headers[STS], year, 'signed in, from the app');
    const own = await c.get('/own-sts');
    assert.equal(own.status, 200);
    assert.equal(own.headers[STS], 'max-age=60', 'the app’s own value, once');
  });
});

test('hsts options; localhost and an http publicUrl get none; hsts: false turns it off; check shows the header', async () => {
  const upstream = await app();
  const nodes: TestGatehouse[] = [];
  try {
    const https = await startGatehouse(() => ({
      publicUrl: 'https://app.example.test',
      trustedProxies: ['loopback'],
      hsts: { maxAge: '730d', includeSubDomains: true, preload: true },
      apps: [
        { name: 'a', upstream: upstream.url },
        { name: 'dev', host: 'dev.localhost', upstream: upstream.url, routes: [{ path: '/**', access: 'public' }] },
      ],
    }));
    nodes.push(https);
    assert.equal(
      (await browser(https, 'app.example.test').get('/x')).headers[STS],
      'max-age=63072000; includeSubDomains; preload',
    );
    const dev = await browser(https, 'dev.localhost').get('/x');
    assert.equal(dev.status, 200);
    assert.equal(dev.headers[STS], undefined, 'a pin on localhost would reach every local server');
    const off = await startGatehouse(() => ({
      publicUrl: 'https://app.example.test',
      trustedProxies: ['loopback'],
      hsts: false,
      upstream: upstream.url,
    }));
    nodes.push(off);
    assert.equal((await browser(off, 'app.example.test').html('/.auth/login')).headers[STS], undefined);
    const plain = await startGatehouse(() => ({ upstream: upstream.url }));
    nodes.push(plain);
    assert.equal((await new Client(plain.url).html('/.auth/login')).headers[STS], undefined, 'http: none');
  } finally {
    await Promise.all(nodes.map((n) => n.close()));
    await upstream.close();
  }
  await withConfigFile(
    'publicUrl: https://app.example.test\nupstream: http://10.0.0.1:3000\nhsts: {maxAge: 30d}\n',
    async (file) => {
      const check = await runCli(['check', '--config', file]);
      assert.match(
        check.stdout,
        /https:\/\/app\.example\.test every response: Strict-Transport-Security: max-age=2592000 \(hsts\)/,
      );
    },
  );
  const refused = (hsts: string) =>
    refusal(`publicUrl: https://app.example.test\nupstream: http://10.0.0.1:3000\nhsts: ${hsts}\n`);
  assert.match(refused('{preload: true}'), /hsts\.preload.*includeSubDomains/);
  assert.match(refused('{preload: true, includeSubDomains: true, maxAge: 30d}'), /hsts\.preload.*365d/);
  assert.match(refused('{maxAge: 800d}'), /hsts\.maxAge.*between "0s" and "730d"/);
  assert.match(refused('true'), /hsts/);
});
