import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { describe, test } from 'node:test';
import { createLogger, redact } from '../../src/log/index.ts';

function capture(): { logger: ReturnType<typeof createLogger>; lines: () => Record<string, unknown>[] } {
  const chunks: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      chunks.push(String(chunk));
      cb();
    },
  });
  const logger = createLogger('debug', sink);
  return {
    logger,
    lines: () =>
      chunks
        .join('')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

describe('log redaction (second line of defence)', () => {
  test('secret fields at the top level and one level down are censored', () => {
    const { logger, lines } = capture();
    logger.info({ password: 'p1', token: 't1', cookie: 'c1', authorization: 'a1', secret: 's1', keep: 'k' }, 'top');
    logger.info(
      {
        headers: { cookie: 'gatehouse=abc', authorization: 'Bearer x', accept: 'text/html' },
        body: { password: 'p2', email: 'e@x' },
      },
      'nested',
    );
    const [top, nested] = lines();
    assert.deepEqual(
      [top!.password, top!.token, top!.cookie, top!.authorization, top!.secret, top!.keep],
      ['[redacted]', '[redacted]', '[redacted]', '[redacted]', '[redacted]', 'k'],
    );
    assert.deepEqual(nested!.headers, { cookie: '[redacted]', authorization: '[redacted]', accept: 'text/html' });
    assert.deepEqual(nested!.body, { password: '[redacted]', email: 'e@x' });
    assert.equal(top!.msg, 'top');
    assert.equal(top!.level, 'info');
  });

  test('the caller’s object is not changed, and is passed through when clean', () => {
    const obj = { req: { id: 'r', method: 'GET', path: '/x' }, status: 200 };
    assert.equal(redact(obj), obj);
    const dirty = { headers: { cookie: 'c' }, n: 1 };
    const out = redact(dirty);
    assert.notEqual(out, dirty);
    assert.equal(dirty.headers.cookie, 'c');
    assert.deepEqual(out, { headers: { cookie: '[redacted]' }, n: 1 });
  });

  test('request lines keep their shape', () => {
    const { logger, lines } = capture();
    logger.info({ req: { id: 'abc', method: 'GET', path: '/a' }, status: 200, ms: 1.5, user: 'u1' }, 'request');
    const [line] = lines();
    assert.deepEqual(line!.req, { id: 'abc', method: 'GET', path: '/a' });
    assert.equal(line!.status, 200);
    assert.equal(line!.user, 'u1');
    assert.equal(typeof line!.time, 'string');
    assert.equal(line!.pid, process.pid);
  });

  test('an error keeps its class, message and stack when a field of it is censored', () => {
    const { logger, lines } = capture();
    const err = Object.assign(new TypeError('boom'), { token: 'secret-token' });
    logger.error({ err }, 'failed');
    const [line] = lines();
    const e = line!.err as Record<string, unknown>;
    assert.equal(e.token, '[redacted]');
    assert.equal(e.message, 'boom');
    assert.equal(e.type, 'TypeError');
    assert.match(String(e.stack), /boom/);
    assert.equal(err.token, 'secret-token');
  });
});
