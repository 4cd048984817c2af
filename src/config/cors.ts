import { z } from 'zod';
import { durationField } from './duration.ts';

/**
 * An app's `cors:` (docs/cors.md): the other origins whose pages may call it from a browser.
 * Gatehouse answers their preflights itself and puts the CORS headers on every answer, its own
 * refusals included, so a browser client can read the 401 that starts its OAuth discovery.
 */

const CORS_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'] as const;

/** An origin as browsers send it: scheme, host, port if not the default; no path. */
const origin = z.string().superRefine((v, ctx) => {
  if (v === '*') return;
  const u = URL.parse(v);
  const plain =
    u &&
    (u.protocol === 'https:' || u.protocol === 'http:') &&
    !u.username &&
    !u.password &&
    /^(\[[0-9a-f:.]+\]|[a-z0-9.-]+)$/.test(u.hostname) &&
    u.pathname === '/' &&
    !u.search &&
    !u.hash &&
    !v.endsWith('/');
  if (!plain)
    ctx.addIssue({
      code: 'custom',
      message:
        'an origin is a scheme and a host with an optional port, such as https://app.example.com or http://localhost:6274 ("null" and wildcards are not origins Gatehouse trusts)',
    });
});

/** A request header a page may send (Access-Control-Allow-Headers). */
const requestHeader = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9-]*$/, 'a header name has only letters, digits and "-"')
  .max(64);

export const CorsSchema = z
  .strictObject({
    origins: z.array(origin).min(1).meta({
      description:
        'Origins whose pages may call this app (https://app.example.com), or ["*"] for any page, without cookies',
    }),
    credentials: z.boolean().default(false).meta({
      description:
        "Let those pages send the user's session cookie (fetch credentials: 'include'). Only pages on the same site as publicUrl can: the cookie is SameSite=Lax",
    }),
    methods: z
      .array(z.enum(CORS_METHODS))
      .min(1)
      .default([...CORS_METHODS])
      .meta({ description: 'Methods those pages may use' }),
    headers: z
      .array(requestHeader)
      .default(['Authorization', 'Content-Type'])
      .meta({ description: 'Request headers those pages may send besides the CORS-safelisted ones' }),
    exposeHeaders: z.array(requestHeader).default([]).meta({
      description:
        "Response headers of the app those pages may read besides the safelisted ones; WWW-Authenticate always (Gatehouse's 401 names the OAuth metadata there)",
    }),
    maxAge: durationField('10m', { max: 86_400_000, range: '"0s" and "1d"' }).meta({
      description: 'How long a browser may keep a preflight answer',
    }),
  })
  .superRefine((c, ctx) => {
    const any = c.origins.includes('*');
    if (any && c.origins.length > 1)
      ctx.addIssue({ code: 'custom', path: ['origins'], message: '"*" stands alone: it already allows every origin' });
    if (any && c.credentials)
      ctx.addIssue({
        code: 'custom',
        path: ['credentials'],
        message:
          'credentials: true needs a list of origins: with "*" any page on the web could act as the signed-in user',
      });
  })
  .optional()
  .meta({
    description:
      "Cross-origin browser clients of this app (CORS): Gatehouse answers their preflights and adds the CORS headers to every answer, the app's own Access-Control-* headers replaced. docs/cors.md",
  });

export type CorsConfig = NonNullable<z.output<typeof CorsSchema>>;
