import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.ts';

/**
 * `Expect: 100-continue` (RFC 9110 §10.1.1): a client that asks waits for "100 Continue" before it
 * sends its body. Gatehouse sends it only when the body is going to be read, so a refusal costs the
 * client no upload. Raw HTTP/1.1 on a socket: the test decides when the body is sent.
 */

let gh: TestGatehouse;
before(async () => {
  gh = await startGatehouse(() => ({ routes: [{ path: '/open/**', access: 'public' }], maxRequestBody: '1KiB' }));
});
after(() => gh.close());

/**
 * Sends the head of a POST with Expect: 100-continue and `length` declared; when "100 Continue"
 * comes, sends the body. Resolves with everything received once the connection is closed (or 3 s
 * after the last byte), and whether a 100 came before the final answer.
 */
function post(
  path: string,
  length: number,
  extra = '',
): Promise<{ text: string; continued: boolean; closed: boolean }> {
  return new Promise((resolve, reject) => {
    let text = '';
    let continued = false;
    let timer: NodeJS.Timeout | undefined;
    const done = (closed: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      resolve({ text, continued, closed });
    };
    const socket = net.connect(gh.port, '127.0.0.1', () =>
      socket.write(
        `POST ${path} HTTP/1.1\r\nHost: 127.0.0.1:${gh.port}\r\nAccept: application/json\r\nContent-Type: application/json\r\nContent-Length: ${length}\r\nExpect: 100-continue\r\n${extra}\r\n`,
      ),
    );
    socket.on('data', (chunk) => {
      text += chunk.toString('latin1');
      if (!continued && text.startsWith('HTTP/1.1 100 Continue\r\n\r\n')) {
        continued = true;
        socket.write('x'.repeat(length));
      }
      clearTimeout(timer);
      timer = setTimeout(() => done(false), 3000);
    });
    socket.on('end', () => done(true));
    socket.on('error', reject);
  });
}

const finalStatus = (text: string) => Number(/HTTP\/1\.1 ([2-5]\d\d) /.exec(text)?.[1]);

describe('Expect: 100-continue', () => {
  test('a request that will be refused gets its answer before it sends a byte of its body, and the connection ends', async () => {
    const before = gh.upstream.requests.length;
    const anonymous = await post('/private/upload', 10_000_000);
    assert.equal(anonymous.continued, false, 'no 100: the body is not wanted');
    assert.equal(finalStatus(anonymous.text), 401);
    assert.ok(
      anonymous.closed,
      'the connection closes: the body the client might still send is never read as a request',
    );
    const tooLarge = await post('/open/upload', 10_000_000);
    assert.equal(tooLarge.continued, false);
    assert.equal(finalStatus(tooLarge.text), 413);
    assert.equal(gh.upstream.requests.length, before, 'the app saw neither');
  });

  test('a request that goes to the app gets 100 Continue, then its body is forwarded and answered', async () => {
    const r = await post('/open/upload', 1000, 'Connection: close\r\n');
    assert.equal(r.continued, true);
    assert.equal(finalStatus(r.text), 200);
    assert.equal(gh.upstream.last().url, '/open/upload');
    assert.equal(gh.upstream.last().bodyBytes, 1000);
  });

  test('Gatehouse’s own routes want their body: 100 Continue, then the form is read', async () => {
    const r = await post('/.auth/register', 2, 'Connection: close\r\n');
    assert.equal(r.continued, true);
    // "xx" is no JSON: the answer is the route's own refusal of the body it read.
    assert.equal(finalStatus(r.text), 400);
  });
});
