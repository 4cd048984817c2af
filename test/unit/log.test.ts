import { EventEmitter } from 'node:events';
import assert from 'node:assert/strict';
import { mkdtempSync, openSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { describe, test } from 'node:test';
import { batchedStdout, createLogger, redact, requestLine } from '../../src/log/index.ts';

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

describe('the batched stdout writer', () => {
  test('flush calls back once everything logged has reached the file descriptor, not before', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gatehouse-log-'));
    const file = join(dir, 'out.log');
    // Left open: the writer may still be writing to it when an assertion fails.
    const fd = openSync(file, 'w');
    try {
      const out = batchedStdout(fd);
      const line = `${'x'.repeat(999)}\n`;
      for (let i = 0; i < 4000; i++) out.write(line); // 4 MB: many asynchronous writes
      await new Promise<void>((resolve, reject) => out.flush((err) => (err ? reject(err) : resolve())));
      assert.equal(statSync(file).size, 4000 * 1000, 'all of it is in the file when flush calls back');
      const logger = createLogger('info', out);
      logger.fatal({ event: 'fatal' }, 'last words');
      await new Promise<void>((resolve) => logger.flush(() => resolve()));
      assert.match(readFileSync(file, 'utf8').slice(-200), /"event":"fatal","msg":"last words"}\n$/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('the batched stdout writer, under a fatal line', () => {
  test('a fatal line logged while a write is under way comes after it, never ahead of it', () => {
    // A stand-in for sonic-boom that records what it is asked: its flushSync would write the
    // queue at once, past the write under way.
    const calls: string[] = [];
    const stream = Object.assign(new EventEmitter(), {
      write(s: string) {
        calls.push(`write ${s.trim().length ? JSON.parse(s.trim().split('\n').at(-1)!).msg : ''}`);
        return true;
      },
      flushSync() {
        calls.push('flushSync');
      },
    });
    const out = batchedStdout(1, stream as unknown as Parameters<typeof batchedStdout>[1]);
    const logger = createLogger('info', out);
    logger.warn('configuration warning');
    out.flush(); // handed to the writer: under way until it says drain
    logger.fatal('cannot start');
    assert.deepEqual(calls, ['write configuration warning', 'write cannot start'], 'queued behind, not flushed past');
    stream.emit('drain');
    logger.fatal('again');
    assert.deepEqual(calls.slice(2), ['write again', 'flushSync'], 'nothing was under way: flushed as pino asks');
  });
});

describe('the request line', () => {
  test("is the same JSON as logger.info's, bindings of a child included; odd paths are escaped; off above info", () => {
    const { logger, lines } = capture();
    const child = logger.child({ worker: 2 });
    const trace = '4bf92f3577b34da6a3ce929d0e0e4736';
    const cases: [string, string | undefined, string, number, number, string | undefined, string | undefined][] = [
      ['0f3c-id', 'GET', '/home/item', 200, 1.3, 'user-1', trace],
      ['id2', undefined, '(invalid)', 400, 0, undefined, undefined],
      ['id3', 'POST', '/a"b\\c/\u00e9/\u0001', 502, 12.5, undefined, trace],
    ];
    for (const [id, method, path, status, ms, user, t] of cases) {
      child.info({ req: { id, method, path }, status, ms, user, trace: t }, 'request');
      requestLine(child)(id, method, path, status, ms, user, t);
    }
    const all = lines();
    assert.equal(all.length, 6);
    for (let i = 0; i < all.length; i += 2) {
      const { time: t1, ...viaPino } = all[i]!;
      const { time: t2, ...fast } = all[i + 1]!;
      assert.deepEqual(fast, viaPino);
      assert.equal(typeof t2, typeof t1);
    }
    assert.equal(all[1]!.worker, 2);
    logger.level = 'warn';
    requestLine(logger)('id4', 'GET', '/x', 200, 1, undefined, undefined);
    assert.equal(lines().length, 6);
  });
});
