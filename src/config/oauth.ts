import { z } from 'zod';
import { durationField } from './duration.ts';
import { privateUseSchemeProblem, redirectUriProblem } from '../http/redirect-uri.ts';
import { providerUrl } from './providers.ts';

/**
 * The `tokens` key: Gatehouse's OAuth authorization server for CLIs and MCP clients
 * (src/oauth/). Part of ConfigSchema (schema.ts); kept here so the OAuth settings read as one.
 */

const duration = (def: string, min: number, what: string) => durationField(def, { min, what });

/** An OAuth scope token (RFC 6749 §3.3), kept to a conservative alphabet. */
const scopeName = z
  .string()
  .regex(/^[A-Za-z0-9:._\-/]{1,64}$/, 'a scope name is letters, digits and ":._-/", at most 64 characters');

export const BUILTIN_CLI_CLIENT = 'gatehouse-cli';
const GRANT_TYPES = ['authorization_code', 'refresh_token', 'device_code', 'client_credentials'] as const;

export const OAuthClientSchema = z
  .strictObject({
    id: z
      .string()
      .regex(/^[A-Za-z0-9._~-]{1,128}$/, 'a client id is letters, digits and "._~-", at most 128 characters')
      .refine((v) => v !== BUILTIN_CLI_CLIENT, {
        message: `"${BUILTIN_CLI_CLIENT}" is the built-in CLI client; choose another id`,
      })
      .meta({ description: 'The client_id the client sends' }),
    name: z.string().min(1).max(80).meta({ description: 'Shown to users on the consent and device pages' }),
    redirectUris: z.array(z.string()).default([]).meta({
      description:
        'Exact redirect URIs for the authorization code flow: https, http on a loopback host, or a private-use scheme that is a reverse domain name (com.example.app:/cb) or listed in tokens.privateUseSchemes',
    }),
    grantTypes: z.array(z.enum(GRANT_TYPES)).min(1).default(['authorization_code', 'refresh_token']).meta({
      description:
        'authorization_code (browser redirect with PKCE), device_code (RFC 8628, for CLIs), refresh_token (long-lived logins) and client_credentials (a service calling apps as itself, with its secret; needs apps)',
    }),
    secret: z
      .string()
      .min(32, 'a client secret needs at least 32 characters (openssl rand -base64 32)')
      .optional()
      .meta({
        description:
          'Makes the client confidential: it authenticates with this secret (client_secret_basic or client_secret_post). Use ${ENV}. Without it the client is public',
      }),
    scopes: z
      .array(scopeName)
      .optional()
      .meta({ description: 'Scopes this client may ask for; default: every scope in tokens.scopes' }),
    apps: z.array(z.string()).min(1).optional().meta({
      description:
        'With client_credentials: the apps (by name) the client may get tokens for; its requests reach them as the user "client:<id>"',
    }),
    federated: z
      .strictObject({
        issuer: providerUrl('federated.issuer').meta({
          description:
            "The issuer of the workload tokens (https://token.actions.githubusercontent.com for GitHub Actions, a cluster's service account issuer, ...); its /.well-known/openid-configuration names its keys",
        }),
        subject: z.string().min(1).max(256).meta({
          description:
            'The sub a token must have, exactly (GitHub Actions: repo:<owner>/<repo>:ref:refs/heads/main, ...)',
        }),
        audience: z.string().min(1).max(512).optional().meta({
          description: "The aud a token must have; default Gatehouse's issuer (publicUrl without its trailing slash)",
        }),
      })
      .optional()
      .meta({
        description:
          'With client_credentials: the client proves it is itself with a JWT its platform issued (a client assertion, RFC 7523), instead of a secret',
      }),
    groups: z.array(z.string().min(1).max(100)).default([]).meta({
      description: "With client_credentials: the client's groups, for routes' allow.groups and X-User-Groups",
    }),
  })
  .superRefine((c, ctx) => {
    const service = c.grantTypes.includes('client_credentials');
    if (service && !c.secret && !c.federated)
      ctx.addIssue({
        code: 'custom',
        path: ['secret'],
        message:
          'the client_credentials grant needs a secret or federated: a public client cannot prove it is the service',
      });
    if (c.federated && (!service || c.grantTypes.length > 1))
      ctx.addIssue({
        code: 'custom',
        path: ['federated'],
        message: 'federated is for a client whose only grant type is client_credentials',
      });
    if (service && !c.apps)
      ctx.addIssue({
        code: 'custom',
        path: ['apps'],
        message: 'the client_credentials grant needs apps: the names of the apps this client may call',
      });
    if (!service && (c.apps || c.groups.length))
      ctx.addIssue({
        code: 'custom',
        path: [c.apps ? 'apps' : 'groups'],
        message: 'apps and groups are for a client with the client_credentials grant (add it to grantTypes)',
      });
    if (c.grantTypes.includes('authorization_code') && c.redirectUris.length === 0) {
      ctx.addIssue({
        code: 'custom',
        path: ['redirectUris'],
        message: 'the authorization_code grant needs at least one redirect URI',
      });
    }
  });

/** The OAuth server's fields of the `tokens` object (schema.ts holds the signing-key fields beside them). */
export const OAUTH_TOKEN_FIELDS = {
  accessTokenTtl: duration('10m', 60_000, 'accessTokenTtl').meta({
    description:
      'Lifetime of access tokens (JWTs); short, since a refresh is cheap; at most tokens.maxLifetime. Default 10m',
  }),
  refreshTokenTtl: duration('90d', 60_000, 'refreshTokenTtl').meta({
    description:
      'How long one login of a CLI or MCP client lasts, from sign-in; refresh tokens rotate within it but never extend it. Default 90d',
  }),
  refreshIdleTtl: duration('30d', 60_000, 'refreshIdleTtl').meta({
    description: 'A login unused for this long ends. Default 30d',
  }),
  reuseGrace: duration('5s', 0, 'reuseGrace').meta({
    description:
      'A refresh token presented again within this time after it was rotated gets the same new token (a retry of a lost answer); later, its reuse revokes the whole login. Default 5s',
  }),
  scopes: z.array(scopeName).default([]).meta({
    description: 'Scope names your apps understand, besides offline_access; requests for other scopes are refused',
  }),
  device: z
    .strictObject({
      codeTtl: duration('10m', 60_000, 'device.codeTtl').meta({
        description: 'How long a device code and its user code stay usable. Default 10m',
      }),
      interval: duration('5s', 1000, 'device.interval').meta({
        description: 'Polling interval asked of device clients; faster polls get slow_down. Default 5s',
      }),
    })
    .prefault({}),
  clients: z
    .array(OAuthClientSchema)
    .default([])
    .meta({
      description: `OAuth clients besides the built-in public "${BUILTIN_CLI_CLIENT}" (device flow and refresh)`,
    }),
  privateUseSchemes: z
    .array(
      z.string().superRefine((v, ctx) => {
        const problem = privateUseSchemeProblem(v);
        if (problem) ctx.addIssue({ code: 'custom', message: problem });
      }),
    )
    .default([])
    .meta({
      description:
        'Single-word private-use redirect URI schemes to accept anyway, such as cursor (Cursor registers cursor://...). Without them only reverse-domain schemes (com.example.app:) are, as RFC 8252 §7.1 asks: a single word may be claimed by any app on the device',
    }),
  dynamicRegistration: z.boolean().default(true).meta({
    description:
      "Let clients register themselves (RFC 7591), as MCP clients do; rate-limited, public or with a generated secret, every login still needs the user's consent. Default true",
  }),
  clientIdMetadataDocuments: z.boolean().default(true).meta({
    description:
      "Accept an https URL as client_id and read the client's metadata from it (MCP client ID metadata documents). Default true",
  }),
  rateLimits: z
    .strictObject({
      userCodePerIp: z
        .number()
        .int()
        .min(1)
        .default(20)
        .meta({ description: 'Wrong user codes per client IP per 15 minutes on the device page' }),
      userCodePerAccount: z
        .number()
        .int()
        .min(1)
        .default(10)
        .meta({ description: 'Wrong user codes per signed-in account per 15 minutes' }),
      deviceAuthorizationPerIp: z
        .number()
        .int()
        .min(1)
        .default(60)
        .meta({ description: 'Device authorizations started per client IP per 15 minutes' }),
      registerPerIp: z
        .number()
        .int()
        .min(1)
        .default(20)
        .meta({ description: 'Successful dynamic client registrations per client IP per hour' }),
      registerFailuresPerIp: z.number().int().min(1).default(100).meta({
        description:
          'Refused dynamic client registrations (bad metadata) per client IP per hour; they do not use up registerPerIp',
      }),
      clientDocumentsPerIp: z.number().int().min(1).default(30).meta({
        description:
          'Client ID metadata documents fetched (not served from memory) for authorization requests from one client IP per 15 minutes',
      }),
    })
    .prefault({}),
};

type OAuthTokenFields = { [K in keyof typeof OAUTH_TOKEN_FIELDS]: z.output<(typeof OAUTH_TOKEN_FIELDS)[K]> };

/** Cross-field checks of the OAuth fields, for the `tokens` object's superRefine. */
export function checkOAuthTokens(t: OAuthTokenFields, ctx: z.RefinementCtx): void {
  if (t.refreshIdleTtl > t.refreshTokenTtl)
    ctx.addIssue({
      code: 'custom',
      path: ['refreshIdleTtl'],
      message: 'refreshIdleTtl is longer than refreshTokenTtl',
    });
  if (t.accessTokenTtl > t.refreshTokenTtl)
    ctx.addIssue({
      code: 'custom',
      path: ['accessTokenTtl'],
      message: 'accessTokenTtl is longer than refreshTokenTtl',
    });
  const ids = new Set<string>();
  t.clients.forEach((c, i) => {
    if (ids.has(c.id))
      ctx.addIssue({
        code: 'custom',
        path: ['clients', i, 'id'],
        message: `another client already has the id "${c.id}"`,
      });
    ids.add(c.id);
    c.redirectUris.forEach((uri, j) => {
      const problem = redirectUriProblem(uri, t.privateUseSchemes);
      if (problem)
        ctx.addIssue({
          code: 'custom',
          path: ['clients', i, 'redirectUris', j],
          message: `redirect URI ${problem}, found ${JSON.stringify(uri)}`,
        });
    });
    for (const s of c.scopes ?? []) {
      if (s !== 'offline_access' && !t.scopes.includes(s))
        ctx.addIssue({ code: 'custom', path: ['clients', i, 'scopes'], message: `"${s}" is not in tokens.scopes` });
    }
  });
}

export type TokensConfig = OAuthTokenFields;
export type OAuthClientConfig = z.output<typeof OAuthClientSchema>;
