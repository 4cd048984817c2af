import { argon2, pbkdf2, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { promisify } from 'node:util';
import { Worker } from 'node:worker_threads';

const argon2Async = promisify(argon2);
const pbkdf2Async = promisify(pbkdf2);

/**
 * Password hashing with argon2id from node:crypto. The work runs on libuv's thread pool,
 * never on the event loop. Parameters are OWASP's first recommendation (19 MiB, t=2, p=1).
 * Hashes are PHC strings, so parameters can be raised later and old hashes still verify.
 */
export const ARGON2_PARAMS = { memory: 19_456, passes: 2, parallelism: 1, tagLength: 32 } as const;

/** Hard limits on what is hashed at all: a megabyte "password" is refused before any work. */
export const MAX_PASSWORD_CHARS = 1024;

export class PasswordBusyError extends Error {}

/** Whether a password check now would be refused with PasswordBusyError (the queue is full). */
export function passwordsBusy(): boolean {
  return queue.length >= MAX_QUEUED;
}

// At most two hashes at once (one per core), and a short queue behind them: a login flood
// gets fast 503s instead of a thread pool (and the DNS and file I/O sharing it) stalled.
const MAX_RUNNING = 2;
const MAX_QUEUED = 64;
let running = 0;
const queue: (() => void)[] = [];

async function slot<T>(fn: () => Promise<T>): Promise<T> {
  if (running >= MAX_RUNNING) {
    if (queue.length >= MAX_QUEUED) throw new PasswordBusyError('too many password checks in progress');
    await new Promise<void>((resolve) => queue.push(resolve));
  }
  running++;
  try {
    return await fn();
  } finally {
    running--;
    queue.shift()?.();
  }
}

function prepare(password: string): Buffer {
  return Buffer.from(password.normalize('NFKC'), 'utf8');
}

export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  const { memory, passes, parallelism, tagLength } = ARGON2_PARAMS;
  const tag = await slot(() =>
    argon2Async('argon2id', { message: prepare(password), nonce: salt, memory, passes, parallelism, tagLength }),
  );
  return `$argon2id$v=19$m=${memory},t=${passes},p=${parallelism}$${salt.toString('base64').replace(/=+$/, '')}$${tag.toString('base64').replace(/=+$/, '')}`;
}

/**
 * The hashes Gatehouse checks: its own (argon2id, above), and those imported from another system
 * (`gatehouse users import`), each replaced by Gatehouse's own at the user's first sign-in
 * (needsRehash):
 *   argon2id, argon2i, argon2d  PHC strings, version 19, any parameters within LIMITS
 *   bcrypt                      $2a$, $2b$, $2y$ (cost up to LIMITS.bcryptCost), checked by bcryptjs on
 *                               a worker thread, never on the event loop
 *   PBKDF2-SHA256               Django's pbkdf2_sha256$<iterations>$<salt>$<base64 of 32 bytes>
 *   PBKDF2-SHA1, -SHA256, -SHA512  $pbkdf2-sha256$i=<iterations>$<salt>$<key>, salt and key in base64
 *                               without padding (a salt of 1-64 bytes, a key of 16-64): Keycloak's
 *                               pbkdf2, pbkdf2-sha256 and pbkdf2-sha512 as `users import` writes them
 *                               (cli/keycloak.ts); the password as typed, in UTF-8
 * Bounded, so that an imported hash cannot make one sign-in cost minutes or gigabytes.
 */
const ARGON2 =
  /^\$(argon2id|argon2i|argon2d)\$v=19\$m=(\d{1,9}),t=(\d{1,4}),p=(\d{1,4})\$([A-Za-z0-9+/]{11,88})\$([A-Za-z0-9+/]{22,88})$/;
const BCRYPT = /^\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}$/;
const DJANGO_PBKDF2 = /^pbkdf2_sha256\$(\d{1,9})\$([A-Za-z0-9./+=_-]{1,128})\$([A-Za-z0-9+/]{43}=)$/;
const PBKDF2 = /^\$pbkdf2-(sha1|sha256|sha512)\$i=(\d{1,9})\$([A-Za-z0-9+/]{2,86})\$([A-Za-z0-9+/]{22,86})$/;
/** The bytes of one PBKDF2 block: the HMAC's output. */
const DIGEST_BYTES = { sha1: 20, sha256: 32, sha512: 64 } as const;
export const HASH_LIMITS = {
  argon2Memory: 262_144,
  argon2Passes: 16,
  argon2Parallelism: 16,
  bcryptCost: 14,
  pbkdf2Iterations: 5_000_000,
} as const;

type Parsed =
  | {
      kind: 'argon2';
      variant: 'argon2id' | 'argon2i' | 'argon2d';
      memory: number;
      passes: number;
      parallelism: number;
      salt: Buffer;
      tag: Buffer;
    }
  | { kind: 'bcrypt' }
  | {
      kind: 'pbkdf2';
      name: 'pbkdf2_sha256' | 'pbkdf2-sha1' | 'pbkdf2-sha256' | 'pbkdf2-sha512';
      digest: keyof typeof DIGEST_BYTES;
      iterations: number;
      salt: string | Buffer;
      hash: Buffer;
    };

/** What a stored hash is, or why Gatehouse cannot check it (a sentence). */
function parseHash(stored: string): Parsed | string {
  const a = ARGON2.exec(stored);
  if (a) {
    const [memory, passes, parallelism] = [Number(a[2]), Number(a[3]), Number(a[4])];
    if (memory < 8 * parallelism || passes < 1 || parallelism < 1) return 'its argon2 parameters are not valid';
    if (
      memory > HASH_LIMITS.argon2Memory ||
      passes > HASH_LIMITS.argon2Passes ||
      parallelism > HASH_LIMITS.argon2Parallelism
    )
      return `its argon2 parameters exceed m=${HASH_LIMITS.argon2Memory},t=${HASH_LIMITS.argon2Passes},p=${HASH_LIMITS.argon2Parallelism}`;
    return {
      kind: 'argon2',
      variant: a[1] as 'argon2id' | 'argon2i' | 'argon2d',
      memory,
      passes,
      parallelism,
      salt: Buffer.from(a[5]!, 'base64'),
      tag: Buffer.from(a[6]!, 'base64'),
    };
  }
  const b = BCRYPT.exec(stored);
  if (b) {
    const cost = Number(b[1]);
    if (cost < 4 || cost > HASH_LIMITS.bcryptCost)
      return `its bcrypt cost is not between 4 and ${HASH_LIMITS.bcryptCost}`;
    return { kind: 'bcrypt' };
  }
  const d = DJANGO_PBKDF2.exec(stored);
  const p = PBKDF2.exec(stored);
  if (d || p) {
    const iterations = Number(d ? d[1] : p![2]);
    if (iterations < 1 || iterations > HASH_LIMITS.pbkdf2Iterations)
      return `its iterations are not between 1 and ${HASH_LIMITS.pbkdf2Iterations}`;
    if (d)
      return {
        kind: 'pbkdf2',
        name: 'pbkdf2_sha256',
        digest: 'sha256',
        iterations,
        salt: d[2]!,
        hash: Buffer.from(d[3]!, 'base64'),
      };
    const digest = p![1] as keyof typeof DIGEST_BYTES;
    const [salt, hash] = [Buffer.from(p![3]!, 'base64'), Buffer.from(p![4]!, 'base64')];
    return { kind: 'pbkdf2', name: `pbkdf2-${digest}`, digest, iterations, salt, hash };
  }
  return 'it is none of the formats Gatehouse reads: argon2 (PHC), bcrypt ($2a$, $2b$, $2y$), Django pbkdf2_sha256, $pbkdf2-sha256$ (-sha1, -sha512)';
}

/**
 * What a stored hash is, for operators: argon2id, argon2i, argon2d, bcrypt, pbkdf2_sha256 (Django's),
 * pbkdf2-sha1, pbkdf2-sha256, pbkdf2-sha512, or unknown.
 */
export function hashKind(stored: string): string {
  const h = parseHash(stored);
  if (typeof h === 'string') return 'unknown';
  return h.kind === 'argon2' ? h.variant : h.kind === 'pbkdf2' ? h.name : 'bcrypt';
}

/** Why an imported password hash cannot be used, or undefined when Gatehouse can check it. */
export function hashProblem(stored: string): string | undefined {
  const parsed = parseHash(stored);
  return typeof parsed === 'string' ? parsed : undefined;
}

export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const h = parseHash(stored);
  if (typeof h === 'string') return false;
  if (h.kind === 'bcrypt') return slot(() => bcryptCompare(password, stored));
  if (h.kind === 'pbkdf2') {
    // A key longer than one block (Keycloak's 512-bit keys) is checked by its first block, which is
    // its prefix: one pass of the iterations, not one per block. The password as typed, in UTF-8.
    const length = Math.min(h.hash.length, DIGEST_BYTES[h.digest]);
    const hash = await slot(() => pbkdf2Async(password, h.salt, h.iterations, length, h.digest));
    return timingSafeEqual(hash, h.hash.subarray(0, length));
  }
  const argon2Of = (message: Buffer) =>
    slot(() =>
      argon2Async(h.variant, {
        message,
        nonce: h.salt,
        memory: h.memory,
        passes: h.passes,
        parallelism: h.parallelism,
        tagLength: h.tag.length,
      }),
    );
  if (timingSafeEqual(await argon2Of(prepare(password)), h.tag)) return true;
  // Another system's argon2 hashed the password as typed; Gatehouse hashes it NFKC-normalized.
  return password.normalize('NFKC') !== password && timingSafeEqual(await argon2Of(Buffer.from(password)), h.tag);
}

/** Whether the stored hash is other than Gatehouse's own argon2id at today's parameters (or better). */
export function needsRehash(stored: string): boolean {
  const h = parseHash(stored);
  return (
    typeof h === 'string' ||
    h.kind !== 'argon2' ||
    h.variant !== 'argon2id' ||
    h.memory < ARGON2_PARAMS.memory ||
    h.passes < ARGON2_PARAMS.passes
  );
}

// bcrypt (an imported hash) on one worker thread, made at the first such check: bcryptjs is
// JavaScript, ~70 ms of CPU at cost 10, which the event loop must not spend.
let bcryptWorker: Worker | undefined;
let bcryptIds = 0;
const bcryptWaiting = new Map<number, { resolve: (ok: boolean) => void; reject: (err: Error) => void }>();

function bcryptCompare(password: string, hash: string): Promise<boolean> {
  if (!bcryptWorker) {
    // An eval worker resolves modules from the working directory: bcryptjs is named by its path.
    const bcryptjs = createRequire(import.meta.url).resolve('bcryptjs');
    const w = new Worker(
      `const { parentPort } = require('node:worker_threads');
const bcrypt = require(${JSON.stringify(bcryptjs)});
parentPort.on('message', (m) => parentPort.postMessage({ id: m.id, ok: bcrypt.compareSync(m.password, m.hash) }));`,
      { eval: true },
    );
    w.on('message', (m: { id: number; ok: boolean }) => {
      bcryptWaiting.get(m.id)?.resolve(m.ok);
      bcryptWaiting.delete(m.id);
      if (bcryptWaiting.size === 0) w.unref();
    });
    const fail = (err: Error) => {
      if (bcryptWorker === w) bcryptWorker = undefined;
      for (const p of bcryptWaiting.values()) p.reject(err);
      bcryptWaiting.clear();
    };
    w.on('error', fail);
    w.on('exit', () => fail(new Error('the bcrypt worker stopped')));
    bcryptWorker = w;
  }
  const w = bcryptWorker;
  const id = bcryptIds++;
  return new Promise((resolve, reject) => {
    bcryptWaiting.set(id, { resolve, reject });
    // Kept alive while it has work; idle, it never keeps the process running.
    w.ref();
    w.postMessage({ id, password, hash });
  });
}

let dummy: Promise<string> | undefined;
/** A real hash of a random password: verifying against it costs what a real check costs. */
export function dummyHash(): Promise<string> {
  dummy ??= hashPassword(randomBytes(16).toString('base64'));
  return dummy;
}

let common: Set<string> | undefined;
function commonPasswords(): Set<string> {
  common ??= new Set(readFileSync(new URL('./common-passwords.txt', import.meta.url), 'utf8').split('\n'));
  return common;
}

/**
 * NIST SP 800-63B rules: a minimum length, a generous maximum, any Unicode (including
 * spaces), no composition rules, and not a known-common password or the user's email.
 * Returns the reason it is refused, or undefined.
 */
export function passwordProblem(password: string, options: { minLength: number; email?: string }): string | undefined {
  const normalized = password.normalize('NFKC');
  const length = [...normalized].length;
  if (length < options.minLength) return `Use at least ${options.minLength} characters.`;
  if (length > MAX_PASSWORD_CHARS) return `Use at most ${MAX_PASSWORD_CHARS} characters.`;
  const lower = normalized.toLowerCase();
  if (commonPasswords().has(lower)) return 'This password is too common. Choose one that is harder to guess.';
  if (options.email) {
    const email = options.email.toLowerCase();
    if (lower === email || lower === email.slice(0, email.indexOf('@')))
      return 'Do not use your email address as your password.';
  }
  if (/^(.)\1+$/u.test(normalized)) return 'This password is too easy to guess.';
  return undefined;
}
