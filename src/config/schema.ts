// config/ (base): the config, its one zod schema (every part's, this file and mail.ts, providers.ts, cors.ts,
// oauth.ts), the YAML loader, durations, the JSON Schema, and the Warning type of `gatehouse check`.
import { isIP } from 'node:net';
import { z } from 'zod';
import { isSpoofable } from '../http/header-names.ts';
import { EmailSchema } from './mail.ts';
import { ProvidersSchema, TokenRelayApp, TokenRelayRoute } from './providers.ts';
import { sizeField } from './size.ts';
import { durationField } from './duration.ts';
import { checkOAuthTokens, OAUTH_TOKEN_FIELDS } from './oauth.ts';
import { BearerHeaderSchema, checkHeaderNames, headerName, HeadersSchema } from './headers.ts';
import { CorsSchema } from './cors.ts';

/**
 * The one definition of gatehouse.yaml. The JSON Schema under schema/ is generated from it
 * (`npm run schema`), so editors and the validator never disagree.
 */

const duration = (def: string) =>
  durationField(def).meta({ description: 'Duration: "30s", "15m", "12h", "90d" or a number of seconds' });

/** What an app can be told of (`events.types`; src/events/). */
export const APP_EVENT_TYPES = ['account_deleted', 'account_disabled', 'account_enabled', 'email_changed'] as const;
export type AppEventType = (typeof APP_EVENT_TYPES)[number];

const httpUrl = (what: string, example: string) =>
  z.string().superRefine((v, ctx) => {
    let u: URL;
    try {
      u = new URL(v);
    } catch {
      ctx.addIssue({
        code: 'custom',
        message: `expected an absolute URL with http:// or https://, such as ${example}`,
      });
      return;
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:')
      ctx.addIssue({ code: 'custom', message: `${what} must use http or https` });
    if (u.username || u.password) ctx.addIssue({ code: 'custom', message: `${what} must not contain credentials` });
    if (u.search || u.hash) ctx.addIssue({ code: 'custom', message: `${what} must not have a query or fragment` });
  });

/** A header value of requestHeaders or responseHeaders: one line of printable text (no CR or LF: no header of its own). */
const headerValue = (max: number) =>
  z
    .string()
    .min(1)
    .max(max)
    .regex(/^[\t\x20-\x7e]+$/, 'printable text on one line');

/**
 * What responseHeaders may not name: the response's framing and hop-by-hop headers, cookies,
 * redirects and challenges, and what other keys own (hsts, cors).
 */
const RESPONSE_HEADERS_NOT_SET = new Set([
  'content-length',
  'content-type',
  'content-encoding',
  'content-range',
  'transfer-encoding',
  'connection',
  'keep-alive',
  'upgrade',
  'trailer',
  'te',
  'proxy-authenticate',
  'set-cookie',
  'location',
  'www-authenticate',
  'strict-transport-security',
  'access-control-allow-origin',
  'access-control-allow-credentials',
  'access-control-allow-methods',
  'access-control-allow-headers',
  'access-control-expose-headers',
  'access-control-max-age',
  'vary',
]);

/**
 * An app's upstream: one URL, or several (replicas of the app: requests are balanced over them, and
 * one that cannot be reached is passed over) with the same scheme and path.
 */
const upstreamUrls = () =>
  z
    .union([
      httpUrl('upstream', 'http://127.0.0.1:3000'),
      z.array(httpUrl('upstream', 'http://127.0.0.1:3000')).min(1).max(16),
    ])
    .superRefine((v, ctx) => {
      if (typeof v === 'string') return;
      // An entry that is wrong in itself is named by its own check; they are compared once each is a URL.
      const urls = v.map((u) => URL.parse(u)).filter((u): u is URL => u !== null && /^https?:$/.test(u.protocol));
      if (urls.length !== v.length) return;
      const [first] = urls;
      const path = (u: URL) => u.pathname.replace(/\/+$/, '');
      const seen = new Set<string>();
      urls.forEach((u, i) => {
        if (u.protocol !== first!.protocol || path(u) !== path(first!))
          ctx.addIssue({
            code: 'custom',
            path: [i],
            message: `every upstream of an app has the scheme and path of the first (${first!.protocol}//...${path(first!)}): they are copies of one app`,
          });
        else if (seen.has(u.origin))
          ctx.addIssue({ code: 'custom', path: [i], message: `${u.origin} is listed twice` });
        seen.add(u.origin);
      });
    });

export const PROXY_PRESETS = ['loopback', 'private', 'linklocal'] as const;

const cidr = z.string().superRefine((v, ctx) => {
  if ((PROXY_PRESETS as readonly string[]).includes(v)) return;
  const [addr, bits, extra] = v.split('/');
  const family = isIP(addr ?? '');
  const max = family === 4 ? 32 : 128;
  const okBits = bits === undefined || (/^\d{1,3}$/.test(bits) && Number(bits) <= max);
  if (!family || !okBits || extra !== undefined) {
    ctx.addIssue({
      code: 'custom',
      message: `expected an IP address, a CIDR range (10.0.0.0/8) or one of ${PROXY_PRESETS.join(', ')}`,
    });
  }
});

export const AllowSchema = z
  .strictObject({
    emails: z.array(z.string().min(3)).optional().meta({ description: 'Exact email addresses (case-insensitive)' }),
    domains: z
      .array(z.string().regex(/^[A-Za-z0-9.-]+$/, 'a domain such as example.com'))
      .optional()
      .meta({ description: 'Email domains, exact match: example.com does not admit a.example.com' }),
    groups: z.array(z.string().min(1)).optional().meta({ description: 'Any one of these groups' }),
    mfa: z.boolean().optional().meta({
      description:
        'Step-up: demand a second factor in this session (browsers are sent to the second-factor step and back; APIs get 401 insufficient_user_authentication). With no lists, admits every signed-in user who has it',
    }),
    providers: z.array(z.string().min(1)).min(1).optional().meta({
      description:
        'Demand that this session was signed in through one of these providers (providers[].id), e.g. the company IdP for /admin: browsers are sent to sign in there and back; APIs get 401 insufficient_user_authentication. With no lists, admits every user signed in through one of them',
    }),
  })
  .meta({ description: 'Admit a signed-in user who matches any of the lists' });

export const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'] as const;

export const RouteSchema = z
  .strictObject({
    path: z
      .string()
      .regex(
        /^\/[A-Za-z0-9\-._~!$&'()+,=:@/*%]*$/,
        'a route path starts with "/" and uses URL path characters, "*" and "**"',
      )
      .meta({
        description:
          'Glob on the normalized path: "*" matches within one segment, "**" across segments; "/admin/**" also matches "/admin"',
      }),
    methods: z
      .array(z.enum(METHODS))
      .min(1)
      .optional()
      .meta({ description: 'Only these methods; HEAD is not implied by GET' }),
    from: z.array(cidr).min(1).optional().meta({
      description:
        'Only requests from these client addresses (IPs, CIDR ranges, loopback, private, linklocal) meet the rule; others go on to the next rules. The client address is the one trustedProxies lets Gatehouse see',
    }),
    access: z.enum(['public', 'authenticated', 'deny']).default('authenticated'),
    allow: AllowSchema.optional(),
    unauthenticated: z.enum(['redirect', '401']).optional().meta({
      description: 'What an anonymous request gets; default: browsers are redirected to login, other clients get 401',
    }),
    tokenRelay: TokenRelayRoute,
    rateLimit: z
      .strictObject({
        requests: z.number().int().min(1).max(1_000_000).meta({ description: 'Requests allowed in each window' }),
        per: durationField('1m', { min: 1000, max: 86_400_000 }).meta({
          description: 'The window, from the first request counted in it: "1s" to "1d"',
        }),
        headers: z.boolean().default(true).meta({
          description:
            'The answers to counted requests say the allowance and what is left of it: RateLimit-Policy and RateLimit (draft-ietf-httpapi-ratelimit-headers)',
        }),
      })
      .optional()
      .meta({
        description:
          "At most this many requests per window (sliding) to the rule's paths for each signed-in user (a browser session and the user's CLI and MCP logins together; a service client by itself), or for each client address when nobody is signed in: 429 with Retry-After after that. WebSocket upgrades count; forward-auth does not apply it",
      }),
    timeouts: z
      .strictObject({
        response: durationField('0s', { max: 86_400_000 })
          .optional()
          .meta({ description: "Until the app sends its response headers, for the rule's paths (504 after)" }),
        idle: durationField('0s', { max: 86_400_000 })
          .optional()
          .meta({ description: "Longest pause inside a request or response body, for the rule's paths" }),
      })
      .optional()
      .meta({
        description:
          "The app's timeouts for the rule's paths instead of its own timeouts: a report that takes minutes, a stream that pauses long",
      }),
  })
  .superRefine((r, ctx) => {
    if (r.access !== 'authenticated' && r.allow)
      ctx.addIssue({
        code: 'custom',
        path: ['allow'],
        message: `"allow" only applies to access: authenticated, not ${r.access}`,
      });
  });

export { HeadersSchema };

const appFields = {
  name: z
    .string()
    .regex(/^[a-z0-9][a-z0-9-]{0,62}$/, 'an app name is lower-case letters, digits and "-"')
    .meta({ description: 'Identifies the app: the assertion audience and the sessions it owns' }),
  title: z.string().min(1).max(80).optional().meta({ description: 'Shown on the login pages; default: the name' }),
  branding: z
    .strictObject({
      logo: z.string().min(1).optional().meta({
        description:
          'Image file (PNG, JPEG, WebP, GIF or SVG, at most 256 KiB) shown above the title on the sign-in pages; read at start',
      }),
      color: z
        .string()
        .regex(/^#[0-9A-Fa-f]{6}$/, 'a colour as #rrggbb, such as #0b6e4f')
        .optional()
        .meta({
          description:
            'Accent colour of buttons and links as #rrggbb; hover, button text and the dark-mode variant are derived from it',
        }),
      links: z
        .array(
          z.strictObject({
            text: z.string().min(1).max(40),
            url: z
              .string()
              .max(500)
              .refine((v) => /^\/(?!\/)/.test(v) || /^https:\/\/[^\s]+$/.test(v), {
                message: 'an https:// URL or a path on this site such as /privacy',
              }),
          }),
        )
        .max(5)
        .optional()
        .meta({
          description:
            'Links at the foot of every page (the privacy policy, the terms, support): text and an https:// URL or a path on the site',
        }),
    })
    .optional()
    .meta({
      description:
        "The look of Gatehouse's pages for this app's site (the app that names the site, as for title): a logo, an accent colour, links at the foot",
    }),
  routes: z.array(RouteSchema).default([]).meta({ description: 'Rules in order; the first that matches decides' }),
  defaultAccess: z
    .enum(['authenticated', 'deny'])
    .default('authenticated')
    .meta({ description: 'What applies where no route matches' }),
  headers: HeadersSchema,
  caseSensitivePaths: z.boolean().default(false).meta({
    description:
      'Match route paths case-sensitively. Default false: /ADMIN meets the /admin rules, in case the app routes without regard to case',
  }),
  preserveHost: z
    .boolean()
    .default(false)
    .meta({ description: "Send the client's Host to the app instead of the upstream's" }),
  timeouts: z
    .strictObject({
      connect: duration('5s'),
      response: duration('60s').meta({ description: 'Until the app sends its response headers (504 after)' }),
      idle: duration('5m').meta({ description: 'Longest pause inside a request or response body' }),
    })
    .prefault({}),
  upstreamTls: z
    .strictObject({
      ca: z.string().min(1).optional().meta({
        description:
          "PEM file of the CA certificate(s) the app's certificate must chain to, instead of the system's CAs (a private CA)",
      }),
      cert: z.string().min(1).optional().meta({
        description:
          'PEM file of the client certificate Gatehouse presents to the app (mutual TLS: the app can refuse anyone without it), the chain after the leaf',
      }),
      key: z.string().min(1).optional().meta({ description: "PEM file of the client certificate's private key" }),
      serverName: z
        .string()
        .regex(/^[A-Za-z0-9.-]+$/, 'a host name such as app.internal')
        .optional()
        .meta({
          description:
            "The name the app's certificate must be valid for (and the SNI sent), when it is not the upstream URL's host (an IP address, say)",
        }),
    })
    .optional()
    .meta({
      description:
        'TLS to an https upstream: a private CA, a client certificate, the name to verify. Files are re-read on SIGHUP. Applies to proxied requests, WebSockets, and event deliveries to the same origin (docs/behind-a-proxy.md)',
    }),
  maintenance: z
    .strictObject({
      message: z.string().min(1).max(500).optional().meta({
        description: 'What users are told, under "<title> is down for maintenance", e.g. when it will be back',
      }),
      retryAfter: durationField('0s', { max: 86_400_000 }).meta({
        description: 'Sent as Retry-After (how long clients should wait); 0s: none',
      }),
      allow: AllowSchema.pick({ emails: true, domains: true, groups: true })
        .optional()
        .meta({ description: 'Who still gets through to the app (to check it before it reopens), once signed in' }),
    })
    .optional()
    .meta({
      description:
        "Close the app for maintenance: every request to it gets 503 with a page saying so (Gatehouse's own pages keep working), except from the users allow names. Turned on and off by a reload (SIGHUP)",
    }),
  requestHeaders: z
    .array(
      z.strictObject({
        name: headerName.refine((v) => !isSpoofable(v.toLowerCase()), {
          message:
            'X-User-*, X-Gatehouse-*, X-Forwarded-* and the like carry what Gatehouse vouches for: choose another name',
        }),
        value: headerValue(8192),
      }),
    )
    .max(32)
    .default([])
    .meta({
      description:
        'Headers sent with every request to the app, replacing any the client sent under those names: an API key the app requires, or a shared secret (${ENV_VAR}) that tells it a request came through Gatehouse. Values are never logged',
    }),
  responseHeaders: z
    .array(
      z.strictObject({
        name: z
          .string()
          .regex(/^[A-Za-z0-9-]{1,64}$/, 'a header name such as X-Frame-Options (letters, digits and "-")')
          .refine((v) => !RESPONSE_HEADERS_NOT_SET.has(v.toLowerCase()), {
            message:
              "Gatehouse does not set this one on the app's responses: framing, cookies and redirects are the app's, Strict-Transport-Security is hsts, CORS is cors",
          }),
        value: headerValue(4096),
      }),
    )
    .max(32)
    .default([])
    .meta({
      description:
        "Headers added to the app's responses where the app does not send them itself: security headers such as Content-Security-Policy, X-Frame-Options or Permissions-Policy for an app that has none",
    }),
  affinity: z.enum(['none', 'user', 'address']).default('none').meta({
    description:
      "With replicas: which one a request goes to. none: balanced; user: each signed-in user's requests and WebSockets always the same replica (anyone else's by client address); address: by client address. The same on every node; a replica that is down or out moves only its own share",
  }),
  maxRequestBody: sizeField().optional().meta({
    description:
      'The largest request body the app is sent ("10MB", "512KiB", or bytes): a larger one is refused with 413 before it reaches the app (a declared length at once, a streamed body when it grows past it). Default: no limit',
  }),
  healthCheck: z
    .strictObject({
      path: z
        .string()
        .regex(/^\/[^\s#]*$/, 'a path on the app such as /healthz')
        .meta({
          description:
            "The path each replica is asked (GET, with the app's Host): a 2xx or 3xx is healthy, unless status or body say more",
        }),
      interval: durationField('10s', { min: 200, max: 3_600_000 }).meta({
        description: 'How often every replica is checked (the time from the end of one round to the next)',
      }),
      timeout: durationField('2s', { min: 100, max: 60_000 }).meta({
        description: 'A check without a whole answer within this failed',
      }),
      unhealthyAfter: z
        .number()
        .int()
        .min(1)
        .max(10)
        .default(2)
        .meta({ description: 'Failed checks in a row that take a replica out' }),
      healthyAfter: z
        .number()
        .int()
        .min(1)
        .max(10)
        .default(2)
        .meta({ description: 'Passed checks in a row that put it back' }),
      status: z
        .array(z.number().int().min(100).max(599))
        .min(1)
        .max(16)
        .optional()
        .meta({ description: 'The statuses that pass, such as [200]; default: any 2xx or 3xx' }),
      body: z.string().min(1).max(256).optional().meta({
        description:
          'Text the answer must contain (in its first 64 KiB), such as "ok" or \'"status":"UP"\'; default: any body',
      }),
    })
    .optional()
    .meta({
      description:
        "Active health checks of the app's replicas: one that fails them gets no requests until it passes again (its requests under way finish); when all fail, all get requests (docs/behind-a-proxy.md)",
    }),
  tokenRelay: TokenRelayApp,
  cors: CorsSchema,
  events: z
    .strictObject({
      url: httpUrl('events.url', 'http://127.0.0.1:3000/gatehouse/events').meta({
        description:
          'Where Gatehouse POSTs each event as a signed Security Event Token (RFC 8417, pushed as RFC 8935 says), verifiable with the JWKS',
      }),
      types: z
        .array(z.enum(APP_EVENT_TYPES))
        .min(1)
        .default([...APP_EVENT_TYPES])
        .meta({
          description:
            'Which events the app is told of; default all. email_changed (with the new address) only goes to an app that gets addresses (headers.email)',
        }),
    })
    .optional()
    .meta({
      description:
        'Tell the app when an account is deleted, disabled or enabled, or its address changed, so it can erase, lock or update what it keeps of the user (docs/events.md)',
    }),
};

/** The per-app keys: of each apps[] entry, or at the top level for one app. */
export const APP_KEYS = Object.keys(appFields) as (keyof typeof appFields)[];

export const AppSchema = z.strictObject({
  ...appFields,
  host: z
    .string()
    .regex(/^[A-Za-z0-9.-]+(:\d{1,5})?$/, 'a host name with an optional port, such as app.example.com')
    .optional()
    .meta({
      description: 'Serve this app on its own host (its own origin, cookies and sessions); default: the publicUrl host',
    }),
  pathPrefix: z
    .string()
    .regex(/^(\/[A-Za-z0-9\-._~]+)+$/, 'a path prefix such as /api (no trailing slash)')
    .optional()
    .meta({ description: 'Serve this app under a path prefix on its host' }),
  stripPrefix: z.boolean().default(false).meta({
    description:
      'Send the app its paths without pathPrefix (/api/x as /x), and the prefix as X-Forwarded-Prefix, for an app that expects to be at the root. Rules are still written as the browser sees the path',
  }),
  sso: z.boolean().default(false).meta({
    description:
      "Single sign-on for an app on a host of its own: a browser that must sign in is sent to publicUrl's host, and one signed in there comes back signed in here (its own session, ended with the one there) without signing in again",
  }),
  upstream: upstreamUrls().meta({
    description:
      'The app: a URL, or a list of URLs of its replicas (same scheme and path): requests are balanced over them, and one that refuses connections is passed over (docs/behind-a-proxy.md)',
  }),
});

const StoreSchema = z
  .discriminatedUnion('type', [
    z.strictObject({ type: z.literal('sqlite'), path: z.string().min(1).default('./data/gatehouse.db') }),
    z.strictObject({
      type: z.literal('postgres'),
      url: z.string().regex(/^postgres(ql)?:\/\//, 'a postgres:// URL'),
      poolSize: z.number().int().min(1).max(200).default(10),
    }),
  ])
  .prefault({ type: 'sqlite' });

const CacheSchema = z
  .discriminatedUnion('type', [
    z.strictObject({ type: z.literal('memory') }),
    z.strictObject({
      type: z.literal('redis'),
      url: z.string().regex(/^rediss?:\/\//, 'a redis:// or rediss:// URL'),
      keyPrefix: z.string().default('gatehouse:'),
      whenDown: z.enum(['local', 'closed']).default('local').meta({
        description:
          "What the rate limits do while Redis cannot be reached: local (count in this node's memory, so logins keep working, still throttled, at most N nodes times the allowance) or closed (sign-in, registration and the other limited forms answer 503)",
      }),
    }),
  ])
  .prefault({ type: 'memory' })
  .meta({ description: 'Rate limits and short-lived shared state: memory for one node, redis for several' });

const secretString = z.string().min(1);

export const ConfigSchema = z
  .strictObject({
    $schema: z.string().optional(),
    publicUrl: httpUrl('publicUrl', 'https://app.example.com')
      .refine(
        (v) => {
          const path = URL.parse(v)?.pathname ?? '/';
          return /^(\/[A-Za-z0-9\-._~]+)*\/?$/.test(path) && !/\/\.\.?(\/|$)/.test(path);
        },
        {
          message: 'the path of publicUrl is a plain path prefix such as /app/ (letters, digits, "-", ".", "_", "~")',
        },
      )
      .meta({
        description:
          'The URL users type; every redirect and cookie is built from it. A path (https://example.com/app/) mounts Gatehouse below it: own routes at /app/.auth, cookies with Path=/app, requests outside it 404',
      }),
    listen: z
      .strictObject({
        host: z.string().default('127.0.0.1'),
        port: z.number().int().min(0).max(65535).default(8080),
        tls: z
          .strictObject({
            cert: z.string().min(1).meta({ description: 'PEM certificate file, the chain after the leaf' }),
            key: z.string().min(1).meta({ description: 'PEM private key file' }),
          })
          .optional()
          .meta({
            description:
              'Serve https (HTTP/2 and HTTP/1.1) with this certificate; files are re-read on SIGHUP without dropping connections',
          }),
        timeouts: z
          .strictObject({
            headers: duration('15s').meta({ description: 'A client must send its request headers within this' }),
            request: duration('10m').meta({
              description: 'A client must send its whole request (body included) within this',
            }),
            idle: duration('2m').meta({ description: 'A connection with no traffic for this long is closed' }),
            keepAlive: duration('5s'),
            drain: duration('15s').meta({ description: 'On SIGTERM, in-flight requests get this long to finish' }),
            drainDelay: duration('0s').meta({
              description:
                'On SIGTERM, /.auth/ready answers 503 at once but the listener keeps serving for this long before it closes, so load balancers that probe readiness stop sending first (docs/operations.md)',
            }),
          })
          .prefault({}),
        workers: z
          .union([z.number().int().min(1).max(1024), z.literal('auto')], {
            error: 'a number of processes (1 or more) or auto',
          })
          .default(1)
          .meta({
            description:
              'Processes serving the port (node:cluster): a number, or auto for the cores Node may use. Default 1: one process, no cluster. See docs/workers.md',
          }),
      })
      .prefault({}),
    trustedProxies: z.array(cidr).default([]).meta({
      description:
        'Peers whose X-Forwarded-* headers are believed: IPs, CIDRs, or loopback / private / linklocal. Default: none',
    }),
    forwardedHeaders: z.enum(['x-forwarded', 'forwarded']).default('x-forwarded').meta({
      description:
        'Which headers trusted proxies write: x-forwarded (X-Forwarded-For/-Proto/-Host: nginx, Traefik, Caddy, cloud load balancers) or forwarded (RFC 7239 Forwarded). Only this family is read; the other is ignored, so a client cannot slip it past a proxy that does not overwrite it',
    }),
    authPrefix: z
      .string()
      .regex(/^(\/[A-Za-z0-9\-._~]+)+$/, 'a path such as /.auth (no trailing slash)')
      .default('/.auth')
      .meta({ description: "Where Gatehouse's own routes live; never forwarded to an app" }),
    store: StoreSchema,
    cache: CacheSchema,
    secrets: z
      .strictObject({
        key: secretString.optional().meta({
          description:
            'Master key, 32+ random bytes as base64 or hex (e.g. ${GATEHOUSE_KEY}); default: generated and kept in the store',
        }),
        previousKeys: z
          .array(secretString)
          .default([])
          .meta({ description: 'Older master keys still accepted for decryption while rotating' }),
      })
      .prefault({}),
    upstream: upstreamUrls()
      .optional()
      .meta({ description: 'The one app behind Gatehouse (or use apps:): a URL, or a list of URLs of its replicas' }),
    ...{ ...appFields, name: appFields.name.default('app') },
    apps: z.array(AppSchema).min(1).optional().meta({ description: 'Several apps, routed by host and/or path prefix' }),
    providers: ProvidersSchema,
    email: EmailSchema.optional(),
    accounts: z
      .strictObject({
        registration: z.enum(['open', 'closed', 'invite']).default('open').meta({
          description:
            'closed: only operators add users (gatehouse users add); invite: only people an operator invites (gatehouse users invite) register, with the mailed link',
        }),
        allowedDomains: z
          .array(z.string().regex(/^[A-Za-z0-9.-]+$/, 'expected a domain such as example.com'))
          .optional()
          .meta({ description: 'Only these email domains may register' }),
        minPasswordLength: z.number().int().min(8).max(64).default(8),
        reauthenticateAfter: durationField('10m').meta({
          description:
            'Sensitive actions (changing the email address, approving a device or MCP client, linking or unlinking a provider, deleting the account) ask the user to prove who they are again when they last did longer ago than this',
        }),
        newSignInNotice: z.boolean().default(true).meta({
          description:
            'Mail the user when their account is signed in to from a browser it was not signed in with before (when, where from, how; with email, to verified addresses)',
        }),
        selfDeletion: z.boolean().default(true).meta({
          description:
            'Users can delete their own account on the account page, after confirming it is them and typing their address; false: only an operator can (gatehouse users delete)',
        }),
        invitationTtl: durationField('7d', { min: 60_000, what: 'an invitation' }).meta({
          description: 'How long an invitation link (gatehouse users invite) works',
        }),
        signInLinks: z.boolean().default(false).meta({
          description:
            'Offer "Email me a sign-in link" on the sign-in page: a link mailed to the address signs in (then a second factor, for users who have one). Needs email',
        }),
        requireVerifiedEmail: z.boolean().default(false).meta({
          description:
            'Users whose address is not verified (password registrations until they follow the emailed link) cannot use protected routes; they get a page to resend the link. Needs email',
        }),
        rateLimits: z
          .strictObject({
            loginPerIp: z
              .number()
              .int()
              .min(1)
              .default(30)
              .meta({ description: 'Failed logins per client IP per 15 minutes' }),
            loginPerAccount: z.number().int().min(1).default(10).meta({
              description:
                'Failed logins per account per 15 minutes from browsers that never signed in to it; browsers that did keep their own allowance, so this cannot lock the owner out',
            }),
            registerPerIp: z
              .number()
              .int()
              .min(1)
              .default(20)
              .meta({ description: 'Registrations per client IP per hour' }),
            providerStartsPerIp: z.number().int().min(1).default(120).meta({
              description:
                'Sign-ins and links started with a provider per client IP per 15 minutes (each keeps a pending state record)',
            }),
            passwordResetPerIp: z
              .number()
              .int()
              .min(1)
              .default(20)
              .meta({ description: 'Password-reset requests per client IP per hour' }),
            passwordResetPerAccount: z.number().int().min(1).default(5).meta({
              description: 'Password-reset requests per email address per hour, whether or not it has an account',
            }),
            signInLinkPerIp: z
              .number()
              .int()
              .min(1)
              .default(20)
              .meta({ description: 'Sign-in links asked for per client IP per hour' }),
            signInLinkPerAccount: z.number().int().min(1).default(5).meta({
              description: 'Sign-in links asked for per email address per hour, whether or not it has an account',
            }),
            emailsPerAddress: z.number().int().min(1).default(10).meta({
              description: 'Messages (verification and reset) sent to one address per hour, at most; more are not sent',
            }),
          })
          .prefault({}),
        mfa: z.enum(['off', 'optional', 'required']).default('optional').meta({
          description:
            'Second factors (passkeys, authenticator apps): off, optional (users may add them on the account page), required (a user without one enrols at the next sign-in, before reaching any app). docs/second-factors.md',
        }),
        passkeys: z
          .strictObject({
            rpId: z
              .string()
              .regex(/^[a-z0-9.-]+$/, 'expected a host name such as example.com')
              .optional()
              .meta({
                description:
                  "WebAuthn relying party id; default publicUrl's host. A registrable suffix of it (example.com) lets apps on other hosts of that domain use the same passkeys",
              }),
          })
          .prefault({}),
      })
      .prefault({}),
    tokens: z
      .strictObject({
        algorithm: z.enum(['EdDSA', 'ES256']).default('EdDSA').meta({
          description:
            'JWS algorithm of new signing keys: EdDSA (Ed25519) or ES256 (P-256). Existing keys keep theirs until rotated out',
        }),
        assertionTtl: duration('60s').meta({ description: 'Lifetime (exp - iat) of X-Gatehouse-Assertion' }),
        maxLifetime: duration('1h').meta({
          description:
            "The longest any token signed with Gatehouse's keys may live. A replaced key stays published this long (plus clockSkew) after it stopped signing",
        }),
        clockSkew: duration('30s').meta({
          description: 'Allowed clock difference between nodes and apps, added to every key retirement',
        }),
        keys: z
          .strictObject({
            publishBefore: duration('10m').meta({
              description:
                'After `gatehouse keys rotate`, how long a new key is published in the JWKS before it signs, so every node and every JWKS cache has it first',
            }),
            refreshInterval: duration('1m').meta({
              description:
                'How often each node reloads the key set from the store (also at once when it meets an unknown kid)',
            }),
          })
          .prefault({}),
        // The OAuth server for CLIs and MCP clients: lifetimes, clients, registration (tokens.ts).
        ...OAUTH_TOKEN_FIELDS,
        bearerHeader: BearerHeaderSchema,
      })
      .superRefine(checkOAuthTokens)
      .prefault({})
      .meta({
        description:
          'Signing keys and signed tokens: the assertion, and the OAuth server for CLIs (device flow) and MCP clients',
      }),
    sessions: z
      .strictObject({
        cookieName: z
          .string()
          .regex(/^[A-Za-z0-9_-]+$/, 'expected a cookie name of letters, digits, "_" and "-"')
          .default('gatehouse')
          .meta({ description: 'Prefixed with __Host- when publicUrl is https' }),
        idleTimeout: duration('12h'),
        absoluteTimeout: duration('7d'),
        maxPerUser: z.number().int().min(1).max(1000).optional().meta({
          description:
            'At most this many browser sessions of one user on each site: a sign-in past it ends their oldest (concurrent session control). CLI and MCP logins are not counted',
        }),
        webSocketRecheck: durationField('30s', { min: 1000, max: 3_600_000 }).meta({
          description:
            'How often the session or login of each open WebSocket is checked again: one signed out, revoked, expired or disabled, or no longer admitted by its rule, is closed within this',
        }),
      })
      .prefault({}),
    log: z
      .strictObject({
        level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'),
        requests: z.enum(['all', 'errors', 'none']).default('all').meta({
          description:
            "The line per request (at level info): all; errors = only requests answered with a 4xx or 5xx; none. Other events (sign-ins, refusals, the app's failures) are logged either way",
        }),
      })
      .prefault({}),
    metrics: z
      .strictObject({
        listen: z
          .string()
          .regex(/^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, 'expected host:port, such as 127.0.0.1:9464')
          .refine((v) => Number(v.slice(v.lastIndexOf(':') + 1)) <= 65535, 'the port must be at most 65535')
          .meta({
            description:
              'Serve Prometheus metrics at http://<listen>/metrics, on a listener of their own (never the public one). Keep it on a loopback or internal address',
          }),
      })
      .optional()
      .meta({ description: 'Prometheus metrics (docs/observability.md); off when absent' }),
    audit: z
      .strictObject({
        retention: duration('90d').meta({ description: 'Audit events older than this are deleted' }),
      })
      .prefault({})
      .meta({ description: 'The audit trail of security events (docs/observability.md)' }),
    jobs: z
      .strictObject({
        interval: durationField('10m', { min: 1000, max: 86_400_000 }).meta({
          description:
            'How often the background jobs (purges of expired records) run, on one node of the cluster at a time (docs/operations.md)',
        }),
      })
      .prefault({}),
    forwardAuth: z
      .strictObject({
        cacheFor: durationField('0s', { max: 60_000 }).meta({
          description:
            'How long a proxy may cache an allowing /.auth/check answer (Cache-Control: private, max-age and X-Accel-Expires; examples/nginx-forward-auth-cached.conf). 0 = never (the default). At most 60s. A revoked session or a changed user can pass for up to this long at a proxy that caches',
        }),
      })
      .prefault({})
      .meta({ description: 'Forward-auth (/.auth/check): answers a proxy in front may cache' }),
    hsts: z
      .union([
        z.literal(false),
        z.strictObject({
          maxAge: durationField('365d', { max: 63_072_000_000, range: '"0s" and "730d"' }).meta({
            description: 'How long browsers use only https for the host (max-age; 0s tells them to forget it)',
          }),
          includeSubDomains: z
            .boolean()
            .default(false)
            .meta({ description: "The host's subdomains too: only when every one of them serves https" }),
          preload: z.boolean().default(false).meta({
            description:
              'Ask to be built into browsers (hstspreload.org): needs includeSubDomains and a maxAge of at least 365d; hard to undo',
          }),
        }),
      ])
      .prefault({})
      .meta({
        description:
          "Strict-Transport-Security on every response of an https publicUrl (pages, redirects, the apps' responses unless an app sends its own); not for localhost or an IP address. false: never",
      }),
  })
  .superRefine((c, ctx) => {
    if (c.hsts && c.hsts.preload && (!c.hsts.includeSubDomains || c.hsts.maxAge < 31_536_000_000))
      ctx.addIssue({
        code: 'custom',
        path: ['hsts', 'preload'],
        message:
          'preload only applies with includeSubDomains: true and a maxAge of at least 365d (what preload lists require)',
      });
    if (c.forwardAuth.cacheFor % 1000 !== 0)
      ctx.addIssue({
        code: 'custom',
        path: ['forwardAuth', 'cacheFor'],
        message: 'cacheFor is whole seconds (max-age counts seconds)',
      });
    if (c.forwardAuth.cacheFor > 0 && c.tokens.assertionTtl <= 2 * c.forwardAuth.cacheFor)
      ctx.addIssue({
        code: 'custom',
        path: ['forwardAuth', 'cacheFor'],
        message:
          'tokens.assertionTtl must be more than twice forwardAuth.cacheFor: an assertion taken from a cached answer must still be valid when the proxy sends it',
      });
    if (c.accounts.signInLinks && !c.email)
      ctx.addIssue({
        code: 'custom',
        path: ['accounts', 'signInLinks'],
        message: 'signInLinks needs email: the links are mailed (set email, or signInLinks: false)',
      });
    if (!c.upstream && !c.apps)
      ctx.addIssue({ code: 'custom', path: ['upstream'], message: 'set upstream (one app) or apps (several)' });
    if (c.upstream && c.apps)
      ctx.addIssue({ code: 'custom', path: ['apps'], message: 'set either upstream or apps, not both' });
    if (c.tokens.keys.refreshInterval < 100)
      ctx.addIssue({
        code: 'custom',
        path: ['tokens', 'keys', 'refreshInterval'],
        message: 'refreshInterval must be at least 100ms',
      });
    if (c.tokens.keys.refreshInterval >= c.tokens.keys.publishBefore) {
      ctx.addIssue({
        code: 'custom',
        path: ['tokens', 'keys', 'publishBefore'],
        message:
          'publishBefore must be longer than refreshInterval: every node must have loaded a new key before it signs',
      });
    }
    if (c.tokens.assertionTtl < 1000)
      ctx.addIssue({ code: 'custom', path: ['tokens', 'assertionTtl'], message: 'assertionTtl must be at least 1s' });
    if (c.tokens.assertionTtl > c.tokens.maxLifetime)
      ctx.addIssue({
        code: 'custom',
        path: ['tokens', 'assertionTtl'],
        message: 'assertionTtl is longer than tokens.maxLifetime',
      });
    if (c.sessions.idleTimeout > c.sessions.absoluteTimeout) {
      ctx.addIssue({
        code: 'custom',
        path: ['sessions', 'idleTimeout'],
        message: 'idleTimeout is longer than absoluteTimeout',
      });
    }
    const names = new Set<string>();
    const places = new Set<string>();
    c.apps?.forEach((app, i) => {
      if (names.has(app.name))
        ctx.addIssue({
          code: 'custom',
          path: ['apps', i, 'name'],
          message: `another app is already named "${app.name}"`,
        });
      names.add(app.name);
      const place = `${(app.host ?? '').toLowerCase()}${app.pathPrefix ?? ''}`;
      if (places.has(place))
        ctx.addIssue({
          code: 'custom',
          path: ['apps', i],
          message: 'another app already has this host and pathPrefix',
        });
      places.add(place);
    });
    const providerIds = new Set<string>();
    c.providers.forEach((p, i) => {
      if (providerIds.has(p.id))
        ctx.addIssue({
          code: 'custom',
          path: ['providers', i, 'id'],
          message: `another provider already has the id "${p.id}"`,
        });
      providerIds.add(p.id);
    });
    const relay = (id: string | false | undefined, path: (string | number)[]) => {
      if (id && !providerIds.has(id))
        ctx.addIssue({
          code: 'custom',
          path,
          message: `tokenRelay names "${id}", which is not one of providers[].id (${[...providerIds].join(', ') || 'none configured'})`,
        });
    };
    const named = (routes: RouteConfig[], at: (string | number)[]) =>
      routes.forEach((r, i) =>
        r.allow?.providers?.forEach((id, j) => {
          if (!providerIds.has(id))
            ctx.addIssue({
              code: 'custom',
              path: [...at, 'routes', i, 'allow', 'providers', j],
              message: `allow.providers names "${id}", which is not one of providers[].id (${[...providerIds].join(', ') || 'none configured'})`,
            });
        }),
      );
    named(c.routes, []);
    c.apps?.forEach((app, a) => named(app.routes, ['apps', a]));
    relay(c.tokenRelay, ['tokenRelay']);
    c.routes.forEach((r, i) => relay(r.tokenRelay, ['routes', i, 'tokenRelay']));
    c.apps?.forEach((app, a) => {
      relay(app.tokenRelay, ['apps', a, 'tokenRelay']);
      app.routes.forEach((r, i) => relay(r.tokenRelay, ['apps', a, 'routes', i, 'tokenRelay']));
    });
    const appNames = c.apps ? [...names] : [c.name];
    const appsNamed = (list: string[] | undefined, at: (string | number)[]) =>
      list?.forEach((name, j) => {
        if (!appNames.includes(name))
          ctx.addIssue({
            code: 'custom',
            path: [...at, j],
            message: `"${name}" is not the name of an app (${appNames.join(', ')})`,
          });
      });
    c.tokens.clients.forEach((client, i) => appsNamed(client.apps, ['tokens', 'clients', i, 'apps']));
    c.providers.forEach((p, i) => {
      if (p.type !== 'oidc' || !p.bearerTokens) return;
      appsNamed(p.bearerTokens.apps, ['providers', i, 'bearerTokens', 'apps']);
      // Checked after the rest: an audience that failed its own check is still the text as written.
      const audience: unknown = p.bearerTokens.audience;
      (Array.isArray(audience) ? audience : [audience]).forEach((aud, j) => {
        if (aud === p.clientId)
          ctx.addIssue({
            code: 'custom',
            path: ['providers', i, 'bearerTokens', 'audience', j],
            message: `"${aud}" is the clientId, the audience of the provider's ID tokens: they would pass as access tokens; name the API's own identifier at the provider (api://..., https://...)`,
          });
      });
    });
    const upstreamTls = (
      app: { upstream?: string | string[]; upstreamTls?: UpstreamTlsConfig },
      at: (string | number)[],
    ) => {
      const t = app.upstreamTls;
      if (!t) return;
      // The first URL decides the scheme of all (a list with another is refused above); [] is refused too.
      const first = app.upstream ? upstreamList(app.upstream)[0] : undefined;
      if (typeof first === 'string' && !first.startsWith('https:'))
        ctx.addIssue({
          code: 'custom',
          path: [...at, 'upstreamTls'],
          message: 'upstreamTls only applies to an https upstream',
        });
      if (!t.cert !== !t.key)
        ctx.addIssue({
          code: 'custom',
          path: [...at, 'upstreamTls', t.cert ? 'key' : 'cert'],
          message: 'upstreamTls.cert and upstreamTls.key go together: the client certificate and its key',
        });
      if (!t.ca && !t.cert && !t.serverName)
        ctx.addIssue({
          code: 'custom',
          path: [...at, 'upstreamTls'],
          message: 'upstreamTls only applies with ca, cert and key, or serverName',
        });
    };
    if (!c.apps) upstreamTls(c, []);
    c.apps?.forEach((app, a) => upstreamTls(app, ['apps', a]));
    // sso: a host other than publicUrl's, set alike on every app of that host (it is the host's).
    const home = URL.parse(c.publicUrl);
    const hostOf = (h: string | undefined) => (h ? (URL.parse(`${home!.protocol}//${h}`)?.host ?? h) : home!.host);
    const ssoOf = new Map<string, { sso: boolean; at: number }>();
    if (home)
      c.apps?.forEach((app, a) => {
        const host = hostOf(app.host);
        if (app.sso && host === home.host)
          ctx.addIssue({
            code: 'custom',
            path: ['apps', a, 'sso'],
            message: `sso only applies to apps on a host other than publicUrl's (${home.host}): users sign in there, and come back to this app's host signed in`,
          });
        const first = ssoOf.get(host);
        if (!first) ssoOf.set(host, { sso: app.sso, at: a });
        else if (first.sso !== app.sso)
          ctx.addIssue({
            code: 'custom',
            path: ['apps', a, 'sso'],
            message: `sso only applies to a whole host: apps[${first.at}] on ${host} ${first.sso ? 'has' : 'has not'} it, and this app on the same host must say the same`,
          });
      });
    c.apps?.forEach((app, a) => {
      if (app.stripPrefix && !app.pathPrefix)
        ctx.addIssue({
          code: 'custom',
          path: ['apps', a, 'stripPrefix'],
          message: 'stripPrefix only applies with a pathPrefix: it is what is taken off',
        });
    });
    // Every header name of an app apart from its others and from tokens.bearerHeader (config/headers.ts).
    if (!c.apps) checkHeaderNames(c, c.tokens.bearerHeader, [], ctx);
    c.apps?.forEach((app, a) => checkHeaderNames(app, c.tokens.bearerHeader, ['apps', a], ctx));
  });

export type ConfigInput = z.input<typeof ConfigSchema>;
export type Config = z.output<typeof ConfigSchema>;
export type AppConfig = z.output<typeof AppSchema>;
export type UpstreamTlsConfig = NonNullable<AppConfig['upstreamTls']>;
export type RouteConfig = z.output<typeof RouteSchema>;
export type AllowConfig = z.output<typeof AllowSchema>;
export type { ProviderConfig } from './providers.ts';

/** An app's upstream URLs as a list (the config takes one URL or several). */
export function upstreamList(upstream: string | string[]): string[] {
  return typeof upstream === 'string' ? [upstream] : upstream;
}
