import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Client } from '../helpers/client.ts';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.ts';
import { rawRequest } from '../helpers/raw.ts';
import { ConfigError, parseConfig } from '../../src/config/load.ts';

/**
 * `maxRequestBody`: the largest request body an app is sent (README, Configuration). The app is
 * the test upstream, which counts the bytes of each body it receives (/upload).
 */

let gh: TestGatehouse;
before(async () => {
  gh = await startGatehouse(() => ({ maxRequestBody: '1KiB', routes: [{ path: '/**', access: 'public' }] }));
});
after(() => gh.close());

/** A raw HTTP/1.1 request with a chunked body of `sizes` chunks (no Content-Length), its connection closed after. */
function chunked(sizes: number[]): Promise<{ text: string; status: number; closed: boolean }> {
  const chunks = sizes.map((n) => `${n.toString(16)}\r\n${'x'.repeat(n)}\r\n`).join('');
  return rawRequest(
    gh.port,
    `POST /upload HTTP/1.1\r\nHost: 127.0.0.1:${gh.port}\r\nAccept: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n${chunks}0\r\n\r\n`,
  );
}

describe('an app with maxRequestBody: 1KiB', () => {
  test('a body of the limit passes whole; one byte more is refused with 413 before the app sees it', async () => {
    const c = new Client(gh.url);
    const at = await c.fetch('/upload', {
      method: 'POST',
      body: 'x'.repeat(1024),
      headers: { 'content-type': 'text/plain' },
    });
    assert.equal(at.status, 200);
    assert.equal(gh.upstream.last().bodyBytes, 1024);
    const before = gh.upstream.requests.length;
    const over = await c.fetch('/upload', {
      method: 'POST',
      body: 'x'.repeat(1025),
      headers: { 'content-type': 'text/plain', accept: 'application/json' },
    });
    assert.equal(over.status, 413);
    assert.equal(over.json().error, 'payload_too_large');
    assert.match(over.json().message, /at most 1KiB/);
    assert.equal(over.headers.connection, 'close', 'the rest of the body is not read: the connection ends');
    assert.equal(gh.upstream.requests.length, before, 'the app never saw it');
    assert.ok(gh.logs.some((l) => l.event === 'request_body_too_large' && l.limit === 1024));
    assert.equal((await c.get('/after')).status, 200, 'the next request is served as usual');
  });

  test('a streamed body (no length) passes within the limit and is cut off past it: the app never gets it whole', async () => {
    const ok = await chunked([512, 512]);
    assert.equal(ok.status, 200);
    assert.equal(gh.upstream.last().bodyBytes, 1024);
    const before = gh.upstream.requests.length;
    const over = await chunked([600, 600, 600]);
    assert.equal(over.status, 413);
    assert.match(over.text, /payload_too_large/);
    assert.ok(over.closed, 'the connection is closed after the 413');
    // The app may have got the start of it (it was streamed before its end was known), never more.
    for (const r of gh.upstream.requests.slice(before))
      assert.ok(r.bodyBytes <= 1024, `the app got ${r.bodyBytes} bytes`);
  });
});

test('config: maxRequestBody takes a size', () => {
  const parsed = (v: string) =>
    parseConfig(`publicUrl: http://127.0.0.1:8080\nupstream: http://10.0.0.1:3000\nmaxRequestBody: ${v}\n`, 'g.yaml')
      .maxRequestBody;
  assert.equal(parsed('10MB'), 10_000_000);
  assert.equal(parsed('512KiB'), 524_288);
  assert.equal(parsed('1.5GiB'), 1_610_612_736);
  assert.equal(parsed('2048'), 2048);
  for (const bad of ['10 parsecs', '0', '-1', 'MB'])
    assert.throws(
      () => parsed(bad),
      (e: unknown) => e instanceof ConfigError && /maxRequestBody.*a size such as "10MB"/.test(e.message),
      bad,
    );
});
