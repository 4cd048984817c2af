// keys/ (model): key material: the master key and what is derived from it (secrets.ts), the signing key
// ring with rotation (this file), and the JWKS document (jwks.ts).
import { hash } from 'node:crypto';
import {
  calculateJwkThumbprint,
  decodeProtectedHeader,
  errors,
  exportJWK,
  generateKeyPair,
  importJWK,
  jwtVerify,
  SignJWT,
  type CryptoKey,
  type JWK,
  type JWTHeaderParameters,
  type JWTPayload,
} from 'jose';
import type { Config } from '../config/schema.ts';
import type { Logger } from '../log/index.ts';
import type { SigningKey, Store } from '../store/index.ts';
import type { Secrets } from './secrets.ts';

/**
 * The signing key ring: the keys every JWT Gatehouse issues is signed with (the identity
 * assertion to apps, and the OAuth server's access tokens), and the JWKS that verifies them.
 *
 * Keys live in the store, private halves encrypted with the master key (Secrets.encrypt,
 * bound to the kid), so every node signs and verifies with the same set. A key's life:
 *
 *   created ──(publishBefore)──► activates ──(until a newer key activates)──► superseded
 *   └─ published in the JWKS from here ───────────────────────────────────────────┐
 *                                              retiresAt = successor's activation + maxLifetime + clockSkew
 *                                              └─ unpublished and dropped from the store
 *
 * A node signs with the newest key whose activation time has passed, so all nodes switch at
 * the same instant (clock skew aside) without talking to each other. A new key is published
 * for `publishBefore` before it signs: long enough for every node to have loaded it
 * (refreshInterval) and for every JWKS cache to have expired (Cache-Control max-age, see
 * jwksMaxAgeSeconds). An old key stays published until every token it signed has expired.
 */

export const SIGNING_ALGORITHMS = ['EdDSA', 'ES256'] as const;
export type SigningAlgorithm = (typeof SIGNING_ALGORITHMS)[number];

export interface KeyPolicy {
  /** Algorithm of new keys. */
  algorithm: SigningAlgorithm;
  publishBeforeMs: number;
  refreshMs: number;
  /** No token signed by the ring lives longer than this. */
  maxLifetimeMs: number;
  clockSkewMs: number;
}

export function keyPolicy(config: Config): KeyPolicy {
  const t = config.tokens;
  return {
    algorithm: t.algorithm,
    publishBeforeMs: t.keys.publishBefore,
    refreshMs: t.keys.refreshInterval,
    maxLifetimeMs: t.maxLifetime,
    clockSkewMs: t.clockSkew,
  };
}

/** The issuer of every token: the top-level publicUrl, without a trailing slash. */
export const issuerOf = (config: Config): string => config.publicUrl.replace(/\/+$/, '');

/**
 * Cache-Control max-age of the JWKS: a copy cached by any client or CDN is never older than
 * the time a new key waits before it signs, minus the time nodes need to load it. At most 5 min.
 */
function jwksMaxAgeSeconds(policy: KeyPolicy): number {
  return Math.max(0, Math.min(300, Math.floor((policy.publishBeforeMs - policy.refreshMs) / 1000)));
}

export type KeyState = 'pending' | 'current' | 'retiring' | 'retired';

export interface KeyStatus {
  key: SigningKey;
  state: KeyState;
}

/** Newest activation first; ties by creation, then kid, so every node picks the same key. */
const newerFirst = (a: SigningKey, b: SigningKey) =>
  b.activatesAt - a.activatesAt || b.createdAt - a.createdAt || (a.kid < b.kid ? 1 : a.kid > b.kid ? -1 : 0);

/**
 * The state of every key at `now`. "current" signs: the newest key whose activation has
 * passed (or, if none has, the first to activate). "pending" is published and waits;
 * "retiring" is published for verification only; "retired" is past its retiresAt.
 */
export function keyStates(keys: readonly SigningKey[], now: number): KeyStatus[] {
  const live = keys.filter((k) => k.retiresAt === null || k.retiresAt > now);
  const active = live.filter((k) => k.activatesAt <= now).sort(newerFirst);
  const current = active[0] ?? [...live].sort((a, b) => -newerFirst(a, b))[0];
  return keys.map((key) => ({
    key,
    state:
      key === current
        ? 'current'
        : key.retiresAt !== null && key.retiresAt <= now
          ? 'retired'
          : key.activatesAt > now
            ? 'pending'
            : 'retiring',
  }));
}

const context = (kid: string) => `signing key ${kid}`;

/** Generates a key pair; the private half leaves this function encrypted only. */
async function generateSigningKey(
  secrets: Secrets,
  alg: SigningAlgorithm,
  createdAt: number,
  activatesAt: number,
): Promise<SigningKey> {
  const { publicKey, privateKey } = await generateKeyPair(alg, { extractable: true });
  const pub = await exportJWK(publicKey);
  const kid = await calculateJwkThumbprint(pub);
  const priv = await exportJWK(privateKey);
  return {
    kid,
    alg,
    publicJwk: JSON.stringify({ ...pub, kid, alg, use: 'sig' }),
    privateJwk: secrets.encrypt(JSON.stringify(priv), context(kid)),
    createdAt,
    activatesAt,
    retiresAt: null,
  };
}

export interface Rotation {
  added: SigningKey;
  /** When the keys it replaces stop being published. */
  retireOthersAt: number;
  dropped: number;
}

/**
 * `gatehouse keys rotate`: adds a key that signs after publishBefore and sets every earlier
 * key's retirement to that moment + maxLifetime + clockSkew. With `immediate` (a leaked key)
 * the new key signs at once and the others are unpublished at once: tokens they signed stop
 * verifying, and nodes sign with the new key from their next refresh.
 */
export async function rotateKeys(
  store: Store,
  secrets: Secrets,
  policy: KeyPolicy,
  options: { now?: number; immediate?: boolean; algorithm?: SigningAlgorithm } = {},
): Promise<Rotation> {
  const now = options.now ?? Date.now();
  const dropped = await store.keys.deleteRetired(now);
  // A store with no key yet has nobody to wait for: its first key signs at once.
  const empty = (await store.keys.list()).length === 0;
  const activatesAt = options.immediate || empty ? now : now + policy.publishBeforeMs;
  const added = await generateSigningKey(secrets, options.algorithm ?? policy.algorithm, now, activatesAt);
  const retireOthersAt = options.immediate ? now : activatesAt + policy.maxLifetimeMs + policy.clockSkewMs;
  await store.keys.add(added, retireOthersAt);
  return { added, retireOthersAt, dropped };
}

export interface SignOptions {
  /** The JWS `typ` header, e.g. "at+jwt" (RFC 9068). */
  typ: string;
  /** Lifetime in milliseconds (exp = iat + ttl); at most the policy's maxLifetime. */
  ttlMs: number;
  audience?: string | string[];
  subject?: string;
}

export interface VerifyOptions {
  /** Required `aud`. */
  audience: string | string[];
  /** Required `typ` header. */
  typ: string;
  /** Default: the ring's issuer. */
  issuer?: string;
  clockToleranceSeconds?: number;
}

export interface KeyRingOptions {
  issuer: string;
  logger?: Logger;
  now?: () => number;
}

interface LoadedKey {
  record: SigningKey;
  publicKey: CryptoKey;
  privateKey: Promise<CryptoKey> | null;
}

export class KeyUnavailableError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'KeyUnavailableError';
  }
}

/** One per node. See the module comment for the key life cycle. */
export class KeyRing {
  readonly issuer: string;
  readonly policy: KeyPolicy;
  private readonly store: Store;
  private readonly secrets: Secrets;
  private readonly logger: Logger | undefined;
  private readonly now: () => number;
  private keys = new Map<string, LoadedKey>();
  private signer: LoadedKey | undefined;
  private published: { body: string; etag: string } = { body: '{"keys":[]}', etag: '""' };
  /** When the states computed last stop being true (an activation or retirement comes due). */
  private nextChangeAt = Infinity;
  private timer: NodeJS.Timeout | undefined;
  private refreshing: Promise<void> | null = null;
  private lastRefreshAt = 0;
  private lastSignature = '';

  private constructor(store: Store, secrets: Secrets, policy: KeyPolicy, options: KeyRingOptions) {
    this.store = store;
    this.secrets = secrets;
    this.policy = policy;
    this.issuer = options.issuer;
    this.logger = options.logger;
    this.now = options.now ?? Date.now;
  }

  /**
   * Loads the key set (making the first key of an empty store) and reloads it every
   * refreshInterval. Throws when the signing key cannot be decrypted with this node's master key.
   */
  static async open(store: Store, secrets: Secrets, policy: KeyPolicy, options: KeyRingOptions): Promise<KeyRing> {
    const ring = new KeyRing(store, secrets, policy, options);
    await ring.refresh();
    if (ring.keys.size === 0) {
      const now = ring.now();
      const first = await generateSigningKey(secrets, policy.algorithm, now, now);
      // Nodes starting together on an empty store: one wins, the rest read its key.
      if (!(await store.keys.addFirst(first))) {
        await ring.refresh();
        if (ring.keys.size === 0) await store.keys.add(first);
      }
      await ring.refresh();
    }
    if (!ring.signer) throw new KeyUnavailableError('no signing key in the store');
    await ring.signer.privateKey;
    ring.timer = setInterval(() => void ring.refresh().catch(() => {}), policy.refreshMs);
    ring.timer.unref();
    return ring;
  }

  close(): void {
    clearInterval(this.timer);
  }

  /** Reloads the key set from the store. Concurrent callers share one reload. */
  refresh(): Promise<void> {
    this.refreshing ??= this.load().finally(() => (this.refreshing = null));
    return this.refreshing;
  }

  private async load(): Promise<void> {
    const now = this.now();
    this.lastRefreshAt = now;
    let records: SigningKey[];
    try {
      records = await this.store.keys.list();
      if (records.some((k) => k.retiresAt !== null && k.retiresAt <= now)) {
        await this.store.keys.deleteRetired(now);
        records = records.filter((k) => k.retiresAt === null || k.retiresAt > now);
      }
    } catch (err) {
      // Keep signing and verifying with what this node has; the next refresh tries again.
      this.logger?.warn(
        { event: 'keys_refresh_failed', err: { name: (err as Error).name, message: (err as Error).message } },
        'could not reload signing keys; using the loaded set',
      );
      throw err;
    }
    const next = new Map<string, LoadedKey>();
    for (const record of records) {
      const have = this.keys.get(record.kid);
      if (have && have.record.publicJwk === record.publicJwk) {
        next.set(record.kid, { ...have, record });
        continue;
      }
      try {
        const jwk = JSON.parse(record.publicJwk) as JWK;
        next.set(record.kid, { record, publicKey: (await importJWK(jwk, record.alg)) as CryptoKey, privateKey: null });
      } catch (err) {
        this.logger?.error(
          { event: 'key_unreadable', kid: record.kid, err: { message: (err as Error).message } },
          'a signing key in the store cannot be read; skipped',
        );
      }
    }
    this.keys = next;
    this.recompute(now);
  }

  /** Works out the signer, the JWKS and when that changes next, from the loaded keys. */
  private recompute(now: number): void {
    const statuses = keyStates(
      [...this.keys.values()].map((k) => k.record),
      now,
    );
    let signer: LoadedKey | undefined;
    const published: JWK[] = [];
    let nextChangeAt = Infinity;
    for (const { key, state } of statuses) {
      const loaded = this.keys.get(key.kid)!;
      if (state === 'current') signer = loaded;
      if (state !== 'retired') published.push(JSON.parse(key.publicJwk) as JWK);
      if (key.activatesAt > now) nextChangeAt = Math.min(nextChangeAt, key.activatesAt);
      if (key.retiresAt !== null && key.retiresAt > now) nextChangeAt = Math.min(nextChangeAt, key.retiresAt);
    }
    this.nextChangeAt = nextChangeAt;
    if (signer && !signer.privateKey) signer.privateKey = this.importPrivate(signer.record);
    this.signer = signer;
    const body = JSON.stringify({ keys: published });
    if (body !== this.published.body)
      this.published = { body, etag: `"${hash('sha256', body, 'base64url').slice(0, 22)}"` };
    const signature = statuses.map((s) => `${s.key.kid}:${s.state}`).join(',');
    if (signature !== this.lastSignature) {
      this.lastSignature = signature;
      this.logger?.info(
        {
          event: 'keys_loaded',
          signing: signer?.record.kid,
          keys: statuses
            .filter((s) => s.state !== 'retired')
            .map((s) => ({ kid: s.key.kid, alg: s.key.alg, state: s.state })),
        },
        'signing key set',
      );
    }
  }

  private importPrivate(record: SigningKey): Promise<CryptoKey> {
    const promise = (async () => {
      const text = this.secrets.decrypt(record.privateJwk, context(record.kid));
      if (text === undefined) {
        throw new KeyUnavailableError(
          `signing key ${record.kid} cannot be decrypted with this node's master key: every node needs the same secrets.key (or the old one in secrets.previousKeys)`,
        );
      }
      return (await importJWK(JSON.parse(text) as JWK, record.alg, { extractable: false })) as CryptoKey;
    })();
    promise.catch((err: Error) => this.logger?.error({ event: 'key_unavailable', kid: record.kid }, err.message));
    return promise;
  }

  private current(): LoadedKey {
    const now = this.now();
    if (now >= this.nextChangeAt) this.recompute(now);
    if (!this.signer) throw new KeyUnavailableError('no signing key is loaded');
    return this.signer;
  }

  /** When the key that signs now was made (epoch ms; undefined while none is loaded). */
  get currentCreatedAt(): number | undefined {
    return this.signer?.record.createdAt;
  }

  /** The kid new tokens are signed with now. */
  get currentKid(): string {
    return this.current().record.kid;
  }

  /**
   * Signs a JWT: `iss` (the ring's issuer), `iat` and `exp` are set here, `kid` and `typ` go
   * in the header. Asynchronous (WebCrypto): never blocks the event loop.
   */
  async sign(claims: JWTPayload, options: SignOptions): Promise<string> {
    if (!(options.ttlMs > 0) || options.ttlMs > this.policy.maxLifetimeMs)
      throw new RangeError(
        `token lifetime ${options.ttlMs} ms is outside (0, tokens.maxLifetime = ${this.policy.maxLifetimeMs} ms]`,
      );
    const key = this.current();
    const now = this.now();
    const iat = Math.floor(now / 1000);
    // exp from the exact time, so a token signed late in a second still lives its ttl (to the second).
    const jwt = new SignJWT(claims)
      .setProtectedHeader({ alg: key.record.alg, kid: key.record.kid, typ: options.typ })
      .setIssuer(this.issuer)
      .setIssuedAt(iat)
      .setExpirationTime(Math.max(iat + 1, Math.floor((now + options.ttlMs) / 1000)));
    if (options.audience !== undefined) jwt.setAudience(options.audience);
    if (options.subject !== undefined) jwt.setSubject(options.subject);
    return jwt.sign(await key.privateKey!);
  }

  /**
   * Verifies a JWT this ring (or another node sharing its store) signed: signature by a
   * published key, alg pinned to the key's, `typ`, `iss`, `aud`, `exp`. An unknown kid makes
   * the node reload the key set once (at most once a second) before it gives up.
   */
  async verify(
    token: string,
    options: VerifyOptions,
  ): Promise<{ payload: JWTPayload; protectedHeader: JWTHeaderParameters }> {
    const getKey = async (header: JWTHeaderParameters): Promise<CryptoKey> => {
      const kid = header.kid;
      if (typeof kid !== 'string') throw new errors.JWKSNoMatchingKey('the token names no kid');
      let loaded = this.usable(kid);
      if (!loaded && this.now() - this.lastRefreshAt >= 1000) {
        await this.refresh().catch(() => {});
        loaded = this.usable(kid);
      }
      if (!loaded) throw new errors.JWKSNoMatchingKey('no published key has this kid');
      if (header.alg !== loaded.record.alg) throw new errors.JOSEAlgNotAllowed('alg does not match the key');
      return loaded.publicKey;
    };
    const { payload, protectedHeader } = await jwtVerify(token, getKey, {
      issuer: options.issuer ?? this.issuer,
      audience: options.audience,
      typ: options.typ,
      algorithms: [...SIGNING_ALGORITHMS],
      clockTolerance: options.clockToleranceSeconds ?? Math.floor(this.policy.clockSkewMs / 1000),
      requiredClaims: ['iat', 'exp'],
      currentDate: new Date(this.now()),
    });
    return { payload, protectedHeader };
  }

  /** A published key (not retired at this moment). */
  private usable(kid: string): LoadedKey | undefined {
    const k = this.keys.get(kid);
    return k && (k.record.retiresAt === null || k.record.retiresAt > this.now()) ? k : undefined;
  }

  /** The JWKS document (public keys only) and its ETag; the same bytes until the set changes. */
  jwks(): { body: string; etag: string } {
    const now = this.now();
    if (now >= this.nextChangeAt) this.recompute(now);
    return this.published;
  }

  /** Cache-Control max-age for the JWKS, consistent with publishBefore (see jwksMaxAgeSeconds). */
  get jwksMaxAge(): number {
    return jwksMaxAgeSeconds(this.policy);
  }
}

/** The kid of a token, without verifying it (for logs and tests). */
export function kidOf(token: string): string | undefined {
  try {
    return decodeProtectedHeader(token).kid;
  } catch {
    return undefined;
  }
}
