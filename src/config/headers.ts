import { z } from 'zod';
import { HOP_BY_HOP_HEADERS, METHOD_OVERRIDE_HEADERS } from '../http/header-names.ts';

/**
 * The `headers` key of an app (what it learns of its user, and under which names) and
 * `tokens.bearerHeader`: header names, their presets, and the checks that keep every configured
 * name apart from the request's own headers and from each other (security.md #175, #176, #178).
 *
 * Two presets name the headers: `gatehouse` (X-User-Id, X-User-Email, ...; only the id and the
 * assertion unless the app opts in) and `oauth2-proxy` (what oauth2-proxy sends: X-Forwarded-User,
 * X-Forwarded-Email, X-Forwarded-Preferred-Username, X-Forwarded-Groups, and a relayed token as
 * X-Forwarded-Access-Token; all of them on), so an app written for oauth2-proxy works by
 * configuration. Any single key still overrides the preset.
 */

export const HEADER_PRESETS = ['gatehouse', 'oauth2-proxy'] as const;
export type HeaderPreset = (typeof HEADER_PRESETS)[number];

/** The header names of each preset, and whether email, name and groups are sent when not configured. */
export const PRESET_HEADERS: Record<
  HeaderPreset,
  { id: string; email: string; name: string; groups: string; accessToken: string; optIn: boolean }
> = {
  gatehouse: {
    id: 'X-User-Id',
    email: 'X-User-Email',
    name: 'X-User-Name',
    groups: 'X-User-Groups',
    accessToken: 'Authorization',
    optIn: false,
  },
  'oauth2-proxy': {
    id: 'X-Forwarded-User',
    email: 'X-Forwarded-Email',
    name: 'X-Forwarded-Preferred-Username',
    groups: 'X-Forwarded-Groups',
    accessToken: 'X-Forwarded-Access-Token',
    optIn: true,
  },
};

export const ASSERTION_HEADER = 'X-Gatehouse-Assertion';

/**
 * Names no configured header may take (lower-case): the request would change meaning (Host,
 * Cookie, Content-Length, ...), a hop-by-hop header would be dropped or mislead a proxy, a
 * forwarding header Gatehouse writes itself would be overwritten, or a forward-auth answer
 * (/.auth/check, whose response headers carry the identity) would become a redirect, a cookie
 * or a cache instruction. Authorization is refused here too; only `accessToken` and
 * `assertionBearer` may name it (checked with tokenRelay in mind).
 */
const RESERVED = new Set([
  // the request itself
  'host',
  'cookie',
  'authorization',
  'content-length',
  'content-type',
  'content-encoding',
  'content-range',
  'content-location',
  'expect',
  'origin',
  'range',
  'referer',
  'user-agent',
  'x-request-id',
  ...METHOD_OVERRIDE_HEADERS,
  ...HOP_BY_HOP_HEADERS,
  // what Gatehouse writes or reads for forwarding and forward-auth
  'forwarded',
  'x-forwarded-for',
  'x-forwarded-proto',
  'x-forwarded-host',
  'x-forwarded-port',
  'x-forwarded-prefix',
  'x-forwarded-uri',
  'x-forwarded-method',
  'x-forwarded-ssl',
  'x-real-ip',
  'x-original-uri',
  'x-original-url',
  'x-original-method',
  'x-gatehouse-cookie',
  'x-gatehouse-login',
  // response headers a forward-auth answer must not carry as identity
  'set-cookie',
  'location',
  'cache-control',
  'www-authenticate',
  'vary',
  'date',
  'etag',
  'last-modified',
  'server',
  'via',
  'age',
  'expires',
  'pragma',
  'retry-after',
  'allow',
]);
/** Prefixes no configured name may start with: browser-controlled (Sec-*), proxy-* and conditional requests (If-*), content negotiation. */
const RESERVED_PREFIXES = ['sec-', 'proxy-', 'if-', 'accept', 'access-control-', 'strict-transport-'];

export function isReservedHeader(lower: string): boolean {
  return RESERVED.has(lower) || RESERVED_PREFIXES.some((p) => lower.startsWith(p));
}

const YES_NO = /^(yes|no|on|off|true|false|y|n)$/i;

/**
 * A header name of your own: an RFC 9110 token restricted to letters, digits and "-" (no "_",
 * which nginx drops and Gatehouse reads as "-"), at most 64 characters, not reserved.
 * `authorization`: whether Authorization is allowed (then checked against tokenRelay).
 */
function headerNameSchema(authorization: boolean) {
  return (
    z
      .string()
      .regex(/^[A-Za-z0-9-]+$/, 'a header name has only letters, digits and "-"')
      .max(64)
      .refine((v) => /^[A-Za-z0-9]/.test(v) && /[A-Za-z0-9]$/.test(v), {
        message: 'a header name starts and ends with a letter or digit',
      })
      .refine((v) => (authorization && v.toLowerCase() === 'authorization') || !isReservedHeader(v.toLowerCase()), {
        message: 'this header is part of the request itself; choose a name of your own, such as X-Auth-Email',
      })
      // email: yes means true to whoever wrote it (YAML 1.1), never a header named "yes".
      .refine((v) => !YES_NO.test(v), {
        message: 'expected true or false (not yes, no, on or off here), or a header name such as X-Auth-Email',
      })
  );
}

export const headerName = headerNameSchema(false);
const headerNameOrAuthorization = headerNameSchema(true);

const forwardHeader = z.union([z.boolean(), headerName], {
  error: 'expected true, false or a header name such as X-Auth-Email',
});

export const HeadersSchema = z
  .strictObject({
    preset: z.enum(HEADER_PRESETS).default('gatehouse').meta({
      description:
        "Which names the headers take by default: gatehouse (X-User-Id, X-User-Email, X-User-Name, X-User-Groups; email, name and groups only when set to true) or oauth2-proxy (oauth2-proxy's X-Forwarded-User = the user id, X-Forwarded-Email, X-Forwarded-Preferred-Username = the name, X-Forwarded-Groups, all sent, and a relayed token as X-Forwarded-Access-Token). Each key below overrides it",
    }),
    id: z
      .union([z.literal(true), headerName], {
        error: 'expected true or a header name such as X-Forwarded-User (the user id is always sent)',
      })
      .default(true)
      .meta({
        description:
          "The header with the user's stable id: true = the preset's (X-User-Id, or X-Forwarded-User for oauth2-proxy), or this name",
      }),
    email: forwardHeader.optional().meta({
      description:
        "Send the preset's email header (true: X-User-Email / X-Forwarded-Email) or the email under this header name, with the email and email_verified claims. Only verified addresses are sent, unless unverifiedEmail is true. Default: false, true for oauth2-proxy",
    }),
    unverifiedEmail: z.boolean().default(false).meta({
      description:
        'Also send addresses nobody has verified (default false: the header and the email claim are left out until the user verifies; email_verified is false). Never for an app that maps an address to an account',
    }),
    name: forwardHeader.optional().meta({
      description:
        "Send the preset's name header (true: X-User-Name / X-Forwarded-Preferred-Username) or under this header name. Default: false, true for oauth2-proxy",
    }),
    groups: forwardHeader.optional().meta({
      description:
        "Send the preset's groups header (true: X-User-Groups / X-Forwarded-Groups), comma-separated, or under this header name. Default: false, true for oauth2-proxy",
    }),
    assertion: forwardHeader.default(true).meta({
      description:
        'Send the signed identity assertion (a JWT, aud = the app name) as X-Gatehouse-Assertion (true), under this header name, or not at all (false). It carries email, name and groups only when those are sent too',
    }),
    assertionBearer: headerNameOrAuthorization.optional().meta({
      description:
        'Also send the assertion as "Bearer <jwt>" under this header name, as oauth2-proxy sends its ID token (X-OAUTH2-PROXY-ID-TOKEN, or Authorization when no tokenRelay uses it)',
    }),
    accessToken: headerNameOrAuthorization.optional().meta({
      description:
        'Where tokenRelay puts the provider access token: Authorization (as "Bearer <token>"; the gatehouse preset\'s) or this header, with the bare token (X-Forwarded-Access-Token; the oauth2-proxy preset\'s), leaving Authorization to the client',
    }),
  })
  .superRefine((h, ctx) => {
    const email = h.email ?? PRESET_HEADERS[h.preset].optIn;
    if (h.unverifiedEmail && email === false)
      ctx.addIssue({
        code: 'custom',
        path: ['unverifiedEmail'],
        message: 'unverifiedEmail only applies when email is sent: set email too, or remove unverifiedEmail',
      });
  })
  .transform((h) => {
    const on = PRESET_HEADERS[h.preset].optIn;
    return { ...h, email: h.email ?? on, name: h.name ?? on, groups: h.groups ?? on };
  })
  .prefault({});

export type HeadersConfig = z.output<typeof HeadersSchema>;

/** tokens.bearerHeader: a second header for Gatehouse's own access tokens (off by default). */
export const BearerHeaderSchema = headerName.optional().meta({
  description:
    "A header besides Authorization in which clients may send Gatehouse's access token (such as X-Gatehouse-Token: <token>), so that Authorization stays free for the app's own token; always removed before the app. Default: none",
});

/** An app's header names as sent (null: not sent); `accessToken` is where a relayed token goes. */
export interface HeaderNames {
  id: string;
  email: string | null;
  name: string | null;
  groups: string | null;
  assertion: string | null;
  assertionBearer: string | null;
  accessToken: string;
}

const pick = (v: boolean | string, def: string): string | null => (v === true ? def : v === false ? null : v);

/** The names an app's `headers` come to, with its preset's defaults filled in. */
export function headerNames(h: HeadersConfig): HeaderNames {
  const p = PRESET_HEADERS[h.preset];
  return {
    id: h.id === true ? p.id : h.id,
    email: pick(h.email, p.email),
    name: pick(h.name, p.name),
    groups: pick(h.groups, p.groups),
    assertion: pick(h.assertion, ASSERTION_HEADER),
    assertionBearer: h.assertionBearer ?? null,
    accessToken: h.accessToken ?? p.accessToken,
  };
}

/** What checkHeaderNames needs of an app (one app at the top level, or apps[i]). */
interface AppHeaders {
  headers: HeadersConfig;
  tokenRelay?: string | undefined;
  routes: readonly { tokenRelay?: string | false | undefined }[];
  requestHeaders?: readonly { name?: unknown }[];
}

/** Whether the app relays a provider token anywhere (its own tokenRelay or a route's). */
export function relaysTokens(app: AppHeaders): boolean {
  return Boolean(app.tokenRelay) || app.routes.some((r) => typeof r.tokenRelay === 'string');
}

const LABEL: Record<keyof HeaderNames, string> = {
  id: 'id',
  email: 'email',
  name: 'name',
  groups: 'groups',
  assertion: 'assertion',
  assertionBearer: 'assertionBearer',
  accessToken: 'accessToken',
};

/**
 * Cross-key checks, at config load: two of an app's headers (or one of them and
 * tokens.bearerHeader) under one name, in any letter case, would reach the app as one
 * ambiguous header or overwrite each other; Authorization may carry the assertion only where no
 * tokenRelay puts a provider token there. `at` is the app's path in the config.
 */
export function checkHeaderNames(
  app: AppHeaders,
  bearerHeader: string | undefined,
  at: (string | number)[],
  ctx: z.RefinementCtx,
): void {
  // Runs after a failed key too (zod checks the rest): only well-formed headers are compared.
  const h = app.headers as Partial<HeadersConfig> | undefined;
  if (!h || typeof h !== 'object' || !(h.preset && h.preset in PRESET_HEADERS) || !Array.isArray(app.routes)) return;
  if (bearerHeader !== undefined && typeof bearerHeader !== 'string') return;
  const names = headerNames(app.headers);
  if (!Object.values(names).every((v) => v === null || typeof v === 'string')) return;
  const relays = relaysTokens(app);
  const seen = new Map<string, keyof HeaderNames>();
  for (const key of Object.keys(LABEL) as (keyof HeaderNames)[]) {
    const name = names[key];
    // The relayed token's header counts only where a token is relayed.
    if (name === null || (key === 'accessToken' && !relays)) continue;
    const lower = name.toLowerCase();
    const other = seen.get(lower);
    if (other === 'assertionBearer' && key === 'accessToken') {
      ctx.addIssue({
        code: 'custom',
        path: [...at, 'headers', 'assertionBearer'],
        message: `${name} already carries the provider token that tokenRelay sends: send the assertion under another name (such as X-OAUTH2-PROXY-ID-TOKEN), or set headers.accessToken to X-Forwarded-Access-Token`,
      });
      continue;
    }
    if (other) {
      ctx.addIssue({
        code: 'custom',
        path: [...at, 'headers', key],
        message: `${name} is already the ${LABEL[other]} header of this app (the preset's or yours): give each header its own name`,
      });
      continue;
    }
    seen.set(lower, key);
    if (bearerHeader && lower === bearerHeader.toLowerCase())
      ctx.addIssue({
        code: 'custom',
        path: [...at, 'headers', key],
        message: `${name} is tokens.bearerHeader, where clients send Gatehouse's tokens: it is removed before the app, so it cannot carry the ${LABEL[key]} too`,
      });
  }
  // requestHeaders take names of their own: none of the identity's, the bearer header's, or each other's.
  const listed = new Set<string>();
  (Array.isArray(app.requestHeaders) ? app.requestHeaders : []).forEach((h, i) => {
    if (typeof h?.name !== 'string') return;
    const lower = h.name.toLowerCase();
    const clash = seen.get(lower)
      ? `the ${LABEL[seen.get(lower)!]} header of this app`
      : bearerHeader && lower === bearerHeader.toLowerCase()
        ? "tokens.bearerHeader, where clients send Gatehouse's tokens"
        : listed.has(lower)
          ? 'listed twice in requestHeaders'
          : undefined;
    if (clash)
      ctx.addIssue({
        code: 'custom',
        path: [...at, 'requestHeaders', i, 'name'],
        message: `${h.name} is already ${clash}: give it a name of its own`,
      });
    listed.add(lower);
  });
}
