// verify/: gatehouse/verify, published for apps: checks the signed assertion (jose only). It stands alone:
// it imports nothing else of Gatehouse's.
/**
 * `gatehouse/verify`: check the X-Gatehouse-Assertion that Gatehouse adds to every request of
 * a signed-in user, in one call or as middleware (node:http, Express/connect, Fastify).
 *
 *   import { verifyAssertion } from 'gatehouse/verify';
 *   const user = await verifyAssertion(req, { issuer: 'https://app.example.com', audience: 'crm' });
 *
 * What is checked: the signature against Gatehouse's JWKS (fetched from
 * `${issuer}/.well-known/jwks.json` unless jwksUrl says otherwise, cached, refetched when an
 * unknown kid appears), alg pinned to EdDSA/ES256, typ, iss, aud (your app's name: an assertion
 * for another app fails), exp and iat with a few seconds of clock tolerance.
 *
 * This module depends on `jose` and Node's built-ins only: it loads nothing of the proxy.
 */
import { createRemoteJWKSet, errors, jwtVerify, type JWTPayload, type JWTVerifyGetKey } from 'jose';

export const ASSERTION_HEADER = 'x-gatehouse-assertion';
export const ASSERTION_TYP = 'gatehouse-assertion+jwt';
export const ASSERTION_ALGORITHMS = ['EdDSA', 'ES256'] as const;

export interface VerifyOptions {
  /** Gatehouse's publicUrl (the `iss`), e.g. "https://app.example.com". */
  issuer: string;
  /** Your app's name in gatehouse.yaml (the `aud`). */
  audience: string;
  /** Where to fetch the keys; default `${issuer}/.well-known/jwks.json`. Use an internal address if the app cannot reach the public one. */
  jwksUrl?: string | URL;
  /** Keys to use instead of fetching them (e.g. jose's createLocalJWKSet). */
  keys?: JWTVerifyGetKey;
  /** Header that carries the assertion, if the app's `headers.assertion` renamed it. */
  header?: string;
  /** Allowed clock difference, in seconds (default 5). */
  clockToleranceSeconds?: number;
  /** Narrow the accepted algorithms (default EdDSA and ES256). */
  algorithms?: (typeof ASSERTION_ALGORITHMS)[number][];
  /** Middleware only: let requests without an assertion through with no user (a bad one is still refused). */
  optional?: boolean;
}

/** Who the request is from, as the assertion says. */
export interface GatehouseUser {
  /** `sub`: Gatehouse's stable user id. */
  id: string;
  /** `sid`: the session, as an opaque hash (the same for every request of one login). */
  sessionId: string | undefined;
  /** `amr`: how the user signed in, e.g. ["pwd"]. */
  amr: string[];
  /**
   * Present when the app opted in (headers.email / name / groups). `email` is a verified
   * address unless the app set headers.unverifiedEmail; `emailVerified` is there whenever the
   * app opted into email, false (without `email`) for a user who has not verified theirs yet.
   */
  email?: string;
  emailVerified?: boolean;
  name?: string;
  groups?: string[];
  expiresAt: Date;
  /** Every claim, as signed. */
  claims: JWTPayload;
}

export type AssertionErrorCode =
  | 'missing'
  | 'malformed'
  | 'invalid_signature'
  | 'unknown_key'
  | 'alg_not_allowed'
  | 'expired'
  | 'wrong_audience'
  | 'wrong_issuer'
  | 'wrong_type'
  | 'invalid_claims'
  | 'jwks_unavailable';

export class AssertionError extends Error {
  readonly code: AssertionErrorCode;
  /** 401, or 503 when the keys could not be fetched. */
  readonly status: number;
  constructor(code: AssertionErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'AssertionError';
    this.code = code;
    this.status = code === 'jwks_unavailable' ? 503 : 401;
  }
}

/** Anything with headers: node:http / Express / Fastify requests, or a Fetch API Request. */
export type RequestLike =
  | { headers: Record<string, string | string[] | undefined> }
  | { headers: { get(name: string): string | null } };

export type Verifier = (tokenOrRequest: string | RequestLike) => Promise<GatehouseUser>;

const remoteSets = new Map<string, JWTVerifyGetKey>();

/** One JWKS client per URL for the whole process: keys are fetched once and shared. */
function remoteKeys(url: string): JWTVerifyGetKey {
  let set = remoteSets.get(url);
  if (!set) {
    // Gatehouse's JWKS max-age is at most 5 minutes; an unknown kid refetches (at most every 30 s).
    set = createRemoteJWKSet(new URL(url), {
      cacheMaxAge: 5 * 60_000,
      cooldownDuration: 30_000,
      timeoutDuration: 5_000,
    });
    remoteSets.set(url, set);
  }
  return set;
}

function tokenFrom(input: string | RequestLike, header: string): string | undefined {
  if (typeof input === 'string') return input;
  const headers = input.headers;
  if (typeof (headers as { get?: unknown }).get === 'function')
    return (headers as { get(n: string): string | null }).get(header) ?? undefined;
  const value = (headers as Record<string, string | string[] | undefined>)[header];
  if (Array.isArray(value)) throw new AssertionError('malformed', 'more than one assertion header');
  return value;
}

function mapError(err: unknown): AssertionError {
  if (err instanceof AssertionError) return err;
  if (!(err instanceof errors.JOSEError))
    return new AssertionError('jwks_unavailable', `the keys could not be fetched: ${(err as Error)?.message ?? err}`, {
      cause: err,
    });
  const message = err.message;
  switch (err.code) {
    case 'ERR_JWT_EXPIRED':
      return new AssertionError('expired', message, { cause: err });
    case 'ERR_JWT_CLAIM_VALIDATION_FAILED': {
      const claim = (err as errors.JWTClaimValidationFailed).claim;
      const code =
        claim === 'aud'
          ? 'wrong_audience'
          : claim === 'iss'
            ? 'wrong_issuer'
            : claim === 'typ'
              ? 'wrong_type'
              : 'invalid_claims';
      return new AssertionError(code, message, { cause: err });
    }
    case 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED':
      return new AssertionError('invalid_signature', message, { cause: err });
    case 'ERR_JWKS_NO_MATCHING_KEY':
    case 'ERR_JWKS_MULTIPLE_MATCHING_KEYS':
      return new AssertionError('unknown_key', message, { cause: err });
    case 'ERR_JOSE_ALG_NOT_ALLOWED':
      return new AssertionError('alg_not_allowed', message, { cause: err });
    case 'ERR_JWKS_TIMEOUT':
    case 'ERR_JWKS_INVALID':
      return new AssertionError('jwks_unavailable', message, { cause: err });
    case 'ERR_JOSE_GENERIC':
      // jose reports a JWKS answer other than 200 this way.
      return new AssertionError(/JSON Web Key Set/.test(message) ? 'jwks_unavailable' : 'malformed', message, {
        cause: err,
      });
    default:
      return new AssertionError('malformed', message, { cause: err });
  }
}

/** A verifier bound to one configuration; reuse it (the JWKS is cached per URL anyway). */
export function createVerifier(options: VerifyOptions): Verifier {
  if (!options.issuer || !options.audience)
    throw new TypeError("gatehouse/verify needs issuer (Gatehouse's publicUrl) and audience (the app's name)");
  const issuer = options.issuer.replace(/\/+$/, '');
  const header = (options.header ?? ASSERTION_HEADER).toLowerCase();
  const keys = options.keys ?? remoteKeys(String(options.jwksUrl ?? `${issuer}/.well-known/jwks.json`));
  const algorithms = [...(options.algorithms ?? ASSERTION_ALGORITHMS)];
  const clockTolerance = options.clockToleranceSeconds ?? 5;
  return async (input) => {
    const token = tokenFrom(input, header);
    if (!token)
      throw new AssertionError(
        'missing',
        `no ${header} header: the request did not come through Gatehouse, or nobody is signed in`,
      );
    try {
      const { payload } = await jwtVerify(token, keys, {
        issuer,
        audience: options.audience,
        algorithms,
        typ: ASSERTION_TYP,
        clockTolerance,
        requiredClaims: ['sub', 'iat', 'exp'],
      });
      return {
        id: payload.sub!,
        sessionId: typeof payload.sid === 'string' ? payload.sid : undefined,
        amr: Array.isArray(payload.amr) ? (payload.amr as string[]) : [],
        ...(typeof payload.email === 'string' ? { email: payload.email } : {}),
        ...(typeof payload.email === 'string' || typeof payload.email_verified === 'boolean'
          ? { emailVerified: payload.email_verified === true }
          : {}),
        ...(typeof payload.name === 'string' ? { name: payload.name } : {}),
        ...(Array.isArray(payload.groups) ? { groups: payload.groups as string[] } : {}),
        expiresAt: new Date(payload.exp! * 1000),
        claims: payload,
      };
    } catch (err) {
      throw mapError(err);
    }
  };
}

const verifiers = new Map<string, Verifier>();

// ---- events (docs/events.md) ---------------------------------------------------------------

/** The JWS `typ` of the Security Event Tokens Gatehouse POSTs to an app's `events.url` (RFC 8417). */
export const EVENT_TYP = 'secevent+jwt';

/** Each event Gatehouse sends, by the OpenID RISC event type URI that names it in the SET's `events`. */
export const EVENT_URIS = {
  account_deleted: 'https://schemas.openid.net/secevent/risc/event-type/account-purged',
  account_disabled: 'https://schemas.openid.net/secevent/risc/event-type/account-disabled',
  account_enabled: 'https://schemas.openid.net/secevent/risc/event-type/account-enabled',
  email_changed: 'https://schemas.openid.net/secevent/risc/event-type/identifier-changed',
} as const;

export type GatehouseEventType = keyof typeof EVENT_URIS;

/** An event about an account, as the SET says. */
export interface GatehouseEvent {
  /** `jti`: the same on every attempt to send it; drop a second copy by it. */
  id: string;
  type: GatehouseEventType;
  /** The account's user id (the X-User-Id the app knows it by). */
  userId: string;
  /** When it happened. */
  at: Date;
  /** email_changed: the new address (verified: the user opened the link sent to it). */
  email?: string;
  /** Every claim, as signed. */
  claims: JWTPayload;
}

const EVENT_BY_URI = new Map<string, GatehouseEventType>(
  Object.entries(EVENT_URIS).map(([type, uri]) => [uri, type as GatehouseEventType]),
);

/**
 * Verifies the body of a POST Gatehouse sent to the app's `events.url`: a Security Event Token
 * signed like the assertion (the JWKS, EdDSA/ES256, `iss`, `aud` = the app's name, `exp`), whose
 * `typ` is secevent+jwt (an assertion is not an event, nor the other way round). Answer 202 when
 * it verified (and was handled, or was a copy already handled: same `id`), 400 with
 * `{"err": "invalid_request"}` when it did not (RFC 8935): Gatehouse does not send that one again.
 */
export async function verifyEvent(
  token: string,
  options: Omit<VerifyOptions, 'header' | 'optional'>,
): Promise<GatehouseEvent> {
  if (!options.issuer || !options.audience)
    throw new TypeError("gatehouse/verify needs issuer (Gatehouse's publicUrl) and audience (the app's name)");
  if (typeof token !== 'string')
    throw new TypeError(
      'verifyEvent takes the request body as a string (Express: express.text({ type: "application/secevent+jwt" }))',
    );
  const issuer = options.issuer.replace(/\/+$/, '');
  const keys = options.keys ?? remoteKeys(String(options.jwksUrl ?? `${issuer}/.well-known/jwks.json`));
  try {
    const { payload } = await jwtVerify(token.trim(), keys, {
      issuer,
      audience: options.audience,
      algorithms: [...(options.algorithms ?? ASSERTION_ALGORITHMS)],
      typ: EVENT_TYP,
      clockTolerance: options.clockToleranceSeconds ?? 5,
      requiredClaims: ['sub', 'jti', 'iat', 'exp', 'events'],
    });
    const events = payload.events as Record<string, unknown> | null;
    const uri = events && typeof events === 'object' ? Object.keys(events).find((k) => EVENT_BY_URI.has(k)) : undefined;
    if (!uri) throw new AssertionError('invalid_claims', 'the token names no event Gatehouse sends');
    const event = events![uri] as { event_timestamp?: unknown; 'new-value'?: unknown } | undefined;
    const at = event?.event_timestamp;
    const type = EVENT_BY_URI.get(uri)!;
    const email = event?.['new-value'];
    if (type === 'email_changed' && typeof email !== 'string')
      throw new AssertionError('invalid_claims', 'an address change without the new address');
    return {
      id: payload.jti!,
      type,
      userId: payload.sub!,
      at: new Date((typeof at === 'number' ? at : payload.iat!) * 1000),
      ...(typeof email === 'string' ? { email } : {}),
      claims: payload,
    };
  } catch (err) {
    throw mapError(err);
  }
}

/**
 * Verifies an assertion (the token, or a request that carries it) in one call. Resolves to
 * the user; rejects with an AssertionError whose `code` says why.
 */
export function verifyAssertion(tokenOrRequest: string | RequestLike, options: VerifyOptions): Promise<GatehouseUser> {
  if (options.keys) return createVerifier(options)(tokenOrRequest);
  const id = JSON.stringify([
    options.issuer,
    options.audience,
    String(options.jwksUrl ?? ''),
    options.header,
    options.clockToleranceSeconds,
    options.algorithms,
  ]);
  let verify = verifiers.get(id);
  if (!verify) verifiers.set(id, (verify = createVerifier(options)));
  return verify(tokenOrRequest);
}

// ---- middleware ---------------------------------------------------------------------------

interface NodeRequest {
  headers: Record<string, string | string[] | undefined>;
  gatehouse?: GatehouseUser;
}
interface NodeResponse {
  statusCode: number;
  setHeader(name: string, value: string | number): unknown;
  end(body?: string): unknown;
}

const problem = (e: AssertionError) =>
  JSON.stringify({
    error: e.status === 503 ? 'unavailable' : 'invalid_assertion',
    code: e.code,
    message:
      e.status === 503
        ? 'The identity keys could not be fetched.'
        : 'This request carries no valid Gatehouse assertion.',
  });

function refuse(res: NodeResponse, e: AssertionError): void {
  const body = problem(e);
  res.statusCode = e.status;
  res.setHeader('content-type', 'application/json; charset=utf-8');
  res.setHeader('content-length', Buffer.byteLength(body));
  res.setHeader('cache-control', 'no-store');
  res.end(body);
}

/**
 * Express / connect middleware: sets `req.gatehouse` to the user and calls next(), or answers
 * 401 JSON itself (503 when the keys cannot be fetched). With `optional`, a request without an
 * assertion passes with no user.
 */
export function gatehouseMiddleware(
  options: VerifyOptions,
): (req: NodeRequest, res: NodeResponse, next: (err?: unknown) => void) => void {
  const verify = createVerifier(options);
  const header = (options.header ?? ASSERTION_HEADER).toLowerCase();
  return (req, res, next) => {
    if (options.optional && req.headers[header] === undefined) return next();
    verify(req).then(
      (user) => {
        req.gatehouse = user;
        next();
      },
      (err: unknown) => refuse(res, mapError(err)),
    );
  };
}

/**
 * node:http: wraps a request handler. `http.createServer(withGatehouse(opts, (req, res, user) => ...))`.
 * The handler runs only for verified requests (or, with `optional`, for requests without one).
 */
export function withGatehouse<Req extends NodeRequest, Res extends NodeResponse>(
  options: VerifyOptions,
  handler: (req: Req, res: Res, user: GatehouseUser | undefined) => void | Promise<void>,
): (req: Req, res: Res) => void {
  const middleware = gatehouseMiddleware(options);
  return (req, res) =>
    middleware(req, res, () => {
      Promise.resolve(handler(req, res, req.gatehouse)).catch(() => {
        if (!(res as unknown as { headersSent?: boolean }).headersSent) res.statusCode = 500;
        res.end();
      });
    });
}

interface FastifyRequestLike {
  headers: Record<string, string | string[] | undefined>;
  gatehouse?: GatehouseUser | null;
}
interface FastifyReplyLike {
  code(status: number): FastifyReplyLike;
  header(name: string, value: string): FastifyReplyLike;
  send(body: string): FastifyReplyLike;
}
interface FastifyLike {
  decorateRequest(name: string, value: null): unknown;
  addHook(name: 'onRequest', hook: (request: FastifyRequestLike, reply: FastifyReplyLike) => Promise<unknown>): unknown;
}

/** Fastify onRequest hook: `fastify.addHook('onRequest', gatehouseHook(opts))`; sets `request.gatehouse`. */
export function gatehouseHook(
  options: VerifyOptions,
): (request: FastifyRequestLike, reply: FastifyReplyLike) => Promise<unknown> {
  const verify = createVerifier(options);
  const header = (options.header ?? ASSERTION_HEADER).toLowerCase();
  return async (request, reply) => {
    if (options.optional && request.headers[header] === undefined) return;
    try {
      request.gatehouse = await verify(request);
    } catch (err) {
      const e = mapError(err);
      return reply
        .code(e.status)
        .header('content-type', 'application/json; charset=utf-8')
        .header('cache-control', 'no-store')
        .send(problem(e));
    }
  };
}

/**
 * Fastify plugin: `await fastify.register(gatehouseFastify, { issuer, audience })`. It applies
 * to the routes of the scope it is registered in and below (registered at the root: every route).
 */
export async function gatehouseFastify(fastify: FastifyLike, options: VerifyOptions): Promise<void> {
  fastify.decorateRequest('gatehouse', null);
  fastify.addHook('onRequest', gatehouseHook(options));
}
// Like fastify-plugin: the hook reaches the scope that registered the plugin, not only its own.
(gatehouseFastify as unknown as Record<symbol, boolean>)[Symbol.for('skip-override')] = true;
