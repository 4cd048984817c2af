import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Client, registerJson } from '../helpers/client.ts';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.ts';

let gh: TestGatehouse;
let user: Client;

before(async () => {
  gh = await startGatehouse();
  user = new Client(gh.url);
  await registerJson(user);
});
after(() => gh.close());

const GIVEN = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
const STATE = 'congo=t61rcWkgMzE,rojo=00f067aa0ba902b7';
const VALID = /^00-([0-9a-f]{32})-([0-9a-f]{16})-0[01]$/;

/** The log line of the request the app saw with this x-request-id. */
function logLine(requestId: string): Record<string, any> {
  const line = gh.logs.find((l) => l.msg === 'request' && (l.req as { id: string }).id === requestId);
  assert.ok(line, 'request log line');
  return line;
}

async function untilLogged(requestId: string): Promise<Record<string, any>> {
  const deadline = Date.now() + 3000;
  for (;;) {
    const line = gh.logs.find((l) => l.msg === 'request' && (l.req as { id: string }).id === requestId);
    if (line) return line;
    if (Date.now() > deadline) return logLine(requestId);
    await new Promise((r) => setImmediate(r));
  }
}

describe('W3C trace context over HTTP', () => {
  test("a client's traceparent and tracestate reach the app unchanged; the trace id is in the request line", async () => {
    const res = await user.get('/traced', { traceparent: GIVEN, tracestate: STATE });
    assert.equal(res.status, 200);
    const seen = gh.upstream.last();
    assert.equal(seen.headers.traceparent, GIVEN);
    assert.equal(seen.headers.tracestate, STATE);
    const line = await untilLogged(String(seen.headers['x-request-id']));
    assert.equal(line.trace, '4bf92f3577b34da6a3ce929d0e0e4736');
  });

  test('without one, Gatehouse starts a trace: the app gets a valid traceparent whose id is in the log line', async () => {
    const ids = new Set<string>();
    for (let i = 0; i < 3; i++) {
      assert.equal((await user.get('/untraced')).status, 200);
      const seen = gh.upstream.last();
      const m = VALID.exec(String(seen.headers.traceparent));
      assert.ok(m, String(seen.headers.traceparent));
      assert.notEqual(m[1], '0'.repeat(32));
      ids.add(m[1]!);
      assert.equal((await untilLogged(String(seen.headers['x-request-id']))).trace, m[1]);
    }
    assert.equal(ids.size, 3, 'a new trace id per request');
  });

  test('an invalid traceparent is replaced and its tracestate dropped', async () => {
    for (const bad of [
      'not-a-trace',
      '00-00000000000000000000000000000000-00f067aa0ba902b7-01',
      '00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01',
      '00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01',
      'ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
      `${GIVEN}-extra`,
    ]) {
      assert.equal((await user.get('/bad-trace', { traceparent: bad, tracestate: STATE })).status, 200);
      const seen = gh.upstream.last();
      assert.match(String(seen.headers.traceparent), VALID, bad);
      assert.notEqual(seen.headers.traceparent, bad);
      assert.equal(seen.headers.tracestate, undefined, bad);
      assert.equal(seen.rawHeaders.filter((h) => h.toLowerCase() === 'traceparent').length, 1);
    }
  });

  test("own routes log the client's trace id too", async () => {
    const res = await user.get('/.auth/me', { traceparent: GIVEN, 'x-request-id': 'ignored' });
    assert.equal(res.status, 200);
    const deadline = Date.now() + 3000;
    let line: Record<string, any> | undefined;
    while (!line && Date.now() < deadline) {
      line = gh.logs.findLast((l) => l.msg === 'request' && (l.req as { path: string }).path === '/.auth/me');
      if (!line) await new Promise((r) => setImmediate(r));
    }
    assert.equal(line?.trace, '4bf92f3577b34da6a3ce929d0e0e4736');
  });
});

describe('W3C trace context over WebSocket', () => {
  async function open(headers: Record<string, string>): Promise<any> {
    const { WebSocket } = await import('ws');
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(`${gh.url.replace('http', 'ws')}/ws`, { headers });
      ws.once('message', (m) => {
        resolve(JSON.parse(String(m)));
        ws.close();
      });
      ws.once('error', reject);
    });
  }

  test('the upgrade carries the client trace unchanged, or one Gatehouse started', async () => {
    const given = await open({ cookie: user.cookieHeader()!, origin: gh.url, traceparent: GIVEN, tracestate: STATE });
    assert.equal(given.headers.traceparent, GIVEN);
    assert.equal(given.headers.tracestate, STATE);
    const started = await open({ cookie: user.cookieHeader()!, origin: gh.url });
    const m = VALID.exec(String(started.headers.traceparent));
    assert.ok(m);
    const line = await untilLogged(String(started.headers['x-request-id']));
    assert.equal(line.trace, m[1]);
  });
});
