import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { createLogger } from '../../src/log/index.ts';
import { Mailer, type MailTask } from '../../src/mail/mailer.ts';
import { EmailSchema } from '../../src/config/mail.ts';
import { freePort } from '../helpers/gatehouse.ts';
import { startSmtp, type TestSmtp } from '../helpers/smtp.ts';
import { selfSigned, type TestCert } from '../helpers/tls.ts';

/**
 * The mailer against real SMTP servers (smtp-server on loopback) with nodemailer as the
 * client: STARTTLS that is required and verified against a given CA, implicit TLS, AUTH,
 * temporary failures retried and permanent ones not, a full queue, a server that is down.
 */

let cert: TestCert;
let starttls: TestSmtp;
let implicit: TestSmtp;
let plain: TestSmtp;
const AUTH = { user: 'gatehouse', pass: 'smtp-secret-pass' };

before(async () => {
  cert = selfSigned({ cn: 'smtp test' });
  [starttls, implicit, plain] = await Promise.all([
    startSmtp({ tls: cert, auth: AUTH }),
    startSmtp({ tls: cert, implicitTls: true }),
    startSmtp(),
  ]);
});
after(async () => {
  await Promise.all([starttls?.close(), implicit?.close(), plain?.close()]);
});

function mailer(smtp: Record<string, unknown>, over: Record<string, unknown> = {}) {
  const lines: Record<string, unknown>[] = [];
  let text = '';
  const sink = new Writable({
    write(chunk, _enc, cb) {
      text += String(chunk);
      for (const l of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(l));
      cb();
    },
  });
  const config = EmailSchema.parse({
    from: 'no-reply@acme.example',
    smtp: { host: '127.0.0.1', timeouts: { connect: '2s', greeting: '2s', socket: '5s' }, ...smtp },
    delivery: { attempts: 3, retryDelay: '100ms' },
    ...over,
  });
  const m = new Mailer(config, { logger: createLogger('debug', sink), publicUrl: 'https://app.example.com' });
  return { m, lines, text: () => text };
}

let n = 0;
function task(to: string, body = 'hello'): MailTask {
  return {
    kind: 'verify_email',
    userId: `user-${n++}`,
    prepare: async () => ({ to, subject: 'Test message', text: body, html: `<p>${body}</p>`, fromName: 'Acme Portal' }),
  };
}

describe('the mailer over real SMTP', () => {
  test('STARTTLS, required and checked against the configured CA, with AUTH', async () => {
    const { m, lines } = mailer({ port: starttls.port, requireTLS: true, auth: AUTH, tls: { ca: cert.cert } });
    try {
      assert.equal(m.send(task('ann@example.com', 'secret body')), true);
      const got = await starttls.waitFor((x) => x.to.includes('ann@example.com'));
      assert.equal(got.secure, true, 'the session was upgraded to TLS');
      assert.equal(got.user, AUTH.user);
      assert.match(got.headers.get('from')!, /Acme Portal.*<no-reply@acme\.example>/);
      assert.equal(got.envelopeFrom, 'no-reply@acme.example');
      assert.equal(got.text.trim(), 'secret body');
      await m.idle();
      const sent = lines.find((l) => l.event === 'mail_sent')!;
      assert.equal(sent.kind, 'verify_email');
      assert.ok(!JSON.stringify(lines).includes('secret body'), 'bodies are never logged');
      assert.ok(!JSON.stringify(lines).includes(AUTH.pass));
    } finally {
      await m.close(1000);
    }
  });

  test('a certificate the configured CAs do not vouch for is refused: nothing is sent, the failure is logged', async () => {
    const { m, lines } = mailer({ port: starttls.port, requireTLS: true, auth: AUTH }, { delivery: { attempts: 1 } });
    try {
      const before = starttls.messages.length;
      m.send(task('bob@example.com'));
      await m.idle();
      assert.equal(starttls.messages.length, before);
      const failed = lines.find((l) => l.event === 'mail_failed')!;
      assert.match(String((failed.error as { message: string }).message), /self-signed|certificate/i);
    } finally {
      await m.close(1000);
    }
  });

  test('requireTLS against a server that offers no STARTTLS: not sent in clear', async () => {
    const { m, lines } = mailer({ port: plain.port, requireTLS: true }, { delivery: { attempts: 1 } });
    try {
      m.send(task('carol@example.com'));
      await m.idle();
      assert.equal(plain.to('carol@example.com').length, 0);
      assert.ok(
        lines.some(
          (l) => l.event === 'mail_failed' && /STARTTLS|TLS/i.test(String((l.error as { message: string }).message)),
        ),
        JSON.stringify(lines.filter((l) => l.event)),
      );
    } finally {
      await m.close(1000);
    }
  });

  test('implicit TLS (secure: true)', async () => {
    const { m } = mailer({ port: implicit.port, secure: true, tls: { ca: cert.cert } });
    try {
      m.send(task('dave@example.com'));
      assert.equal((await implicit.waitFor((x) => x.to.includes('dave@example.com'))).secure, true);
    } finally {
      await m.close(1000);
    }
  });

  test('a temporary refusal (451) is retried with a growing delay; a permanent one (550) is not', async () => {
    const { m, lines } = mailer({ port: plain.port });
    try {
      plain.failNext(2, 451);
      m.send(task('erin@example.com'));
      await plain.waitFor((x) => x.to.includes('erin@example.com'));
      await m.idle();
      const retries = lines.filter((l) => l.event === 'mail_retry');
      assert.deepEqual(
        retries.map((l) => l.attempt),
        [1, 2],
      );
      assert.ok((retries[1]!.delayMs as number) > (retries[0]!.delayMs as number), 'the delay doubles');
      assert.equal((retries[0]!.error as { responseCode: number }).responseCode, 451);
      assert.equal(lines.find((l) => l.event === 'mail_sent')?.attempt, 3);

      plain.failNext(1, 550);
      m.send(task('frank@example.com'));
      await m.idle();
      assert.equal(plain.to('frank@example.com').length, 0);
      const failed = lines.filter((l) => l.event === 'mail_failed');
      assert.equal(failed.length, 1);
      assert.equal(failed[0]!.attempt, 1, 'not retried');
      assert.equal((failed[0]!.error as { permanent: boolean }).permanent, true);
      assert.match(
        String((failed[0]!.error as { message: string }).message),
        /<address>/,
        "the server's reply is logged",
      );
      assert.ok(
        !JSON.stringify(lines).includes('erin@example.com') && !JSON.stringify(lines).includes('frank@example.com'),
        'never the address',
      );
    } finally {
      await m.close(1000);
    }
  });

  test('messages waiting for a retry hold no delivery slot: others are sent meanwhile', async () => {
    const { m, lines } = mailer({ port: plain.port }, { delivery: { attempts: 3, retryDelay: '1h' } });
    try {
      plain.failNext(2, 451);
      m.send(task('grey1@example.com'));
      m.send(task('grey2@example.com'));
      await new Promise<void>((resolve) => {
        const t = setInterval(
          () => lines.filter((l) => l.event === 'mail_retry').length === 2 && (clearInterval(t), resolve()),
          10,
        );
      });
      m.send(task('next@example.com'));
      await plain.waitFor((x) => x.to.includes('next@example.com'), 5000);
      assert.equal(
        plain.to('grey1@example.com').length + plain.to('grey2@example.com').length,
        0,
        'the two still wait for their retry',
      );
    } finally {
      await m.close(100);
    }
  });

  test('a server that is down: each message is tried `attempts` times, then logged as mail_failed', async () => {
    const { m, lines } = mailer({ port: await freePort() }, { delivery: { attempts: 2, retryDelay: '100ms' } });
    try {
      m.send(task('gina@example.com'));
      await m.idle();
      assert.equal(lines.filter((l) => l.event === 'mail_retry').length, 1);
      const failed = lines.find((l) => l.event === 'mail_failed')!;
      assert.equal(failed.attempt, 2);
      assert.ok(failed.userId);
    } finally {
      await m.close(1000);
    }
  });

  test('a full queue drops new messages (logged) instead of growing; a failing prepare is logged too', async () => {
    const { m, lines } = mailer({ port: plain.port }, { delivery: { queueSize: 2 } });
    try {
      let release!: () => void;
      const gate = new Promise<void>((r) => (release = r));
      const slow = (to: string): MailTask => ({
        kind: 'password_reset',
        prepare: async () => (await gate, { to, subject: 's', text: 't', html: 'h' }),
      });
      // Two are being prepared (the concurrency), two wait; the fifth has no room.
      const accepted = ['q1', 'q2', 'q3', 'q4', 'q5'].map((x) => m.send(slow(`${x}@example.com`)));
      assert.deepEqual(accepted, [true, true, true, true, false]);
      assert.equal(lines.filter((l) => l.event === 'mail_dropped' && l.reason === 'queue_full').length, 1);
      release();
      await m.idle();
      assert.equal(['q1', 'q2', 'q3', 'q4'].filter((x) => plain.to(`${x}@example.com`).length === 1).length, 4);
      m.send({ kind: 'verify_email', prepare: async () => Promise.reject(new Error('store down')) });
      await m.idle();
      assert.ok(lines.some((l) => l.event === 'mail_failed' && l.stage === 'prepare'));
    } finally {
      await m.close(1000);
    }
  });

  test('an unreadable email.smtp.tls.ca stops the start with a message that names the key', () => {
    assert.throws(
      () => mailer({ port: plain.port, tls: { ca: '/nonexistent/ca.pem' } }),
      /^Error: email\.smtp\.tls\.ca: cannot read \/nonexistent\/ca\.pem \(ENOENT\)$/,
    );
  });

  test('close: no new messages; pending retries are dropped and logged', async () => {
    const { m, lines } = mailer({ port: await freePort() }, { delivery: { attempts: 5, retryDelay: '1h' } });
    m.send(task('henry@example.com'));
    await new Promise<void>((resolve) => {
      const t = setInterval(() => lines.some((l) => l.event === 'mail_retry') && (clearInterval(t), resolve()), 10);
    });
    await m.close(1000);
    assert.ok(lines.some((l) => l.event === 'mail_dropped' && l.reason === 'shutting_down' && l.count === 1));
    assert.equal(m.send(task('ivy@example.com')), false);
  });
});
