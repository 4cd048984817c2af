import { argon2, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';

const argon2Async = promisify(argon2);

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

const PHC = /^\$argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)$/;

export async function verifyPassword(password: string, phc: string): Promise<boolean> {
  const m = PHC.exec(phc);
  if (!m) return false;
  const expected = Buffer.from(m[5]!, 'base64');
  const tag = await slot(() =>
    argon2Async('argon2id', {
      message: prepare(password),
      nonce: Buffer.from(m[4]!, 'base64'),
      memory: Number(m[1]),
      passes: Number(m[2]),
      parallelism: Number(m[3]),
      tagLength: expected.length,
    }),
  );
  return timingSafeEqual(tag, expected);
}

export function needsRehash(phc: string): boolean {
  const m = PHC.exec(phc);
  return !m || Number(m[1]) < ARGON2_PARAMS.memory || Number(m[2]) < ARGON2_PARAMS.passes;
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
