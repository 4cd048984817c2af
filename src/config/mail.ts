import { z } from 'zod';
import { normalizeEmail } from './email.ts';
import { durationField } from './duration.ts';

/**
 * The `email:` section of gatehouse.yaml: how Gatehouse sends mail (SMTP through nodemailer)
 * and how long the links in its messages live. Without it, the features that need mail
 * (email verification, password reset) are off. Part of the one config schema
 * (src/config/schema.ts imports it); kept here beside the code it drives.
 */

const between = (def: string, min: number, max: number, range: string) => durationField(def, { min, max, range });

/** "name@example.com" or "Display Name <name@example.com>"; no line breaks (header injection). */
export function parseMailbox(value: string): { name?: string; address: string } | undefined {
  if (/[\r\n\0]/.test(value)) return undefined;
  const m = /^\s*(?:"?([^"<>]*?)"?\s*<([^<>\s]+)>|([^<>\s]+))\s*$/.exec(value);
  if (!m) return undefined;
  const address = m[2] ?? m[3]!;
  if (!normalizeEmail(address)) return undefined;
  return { name: m[1]?.trim() || undefined, address };
}

const mailbox = z
  .string()
  .max(320)
  .refine((v) => parseMailbox(v) !== undefined, {
    message: 'an address such as no-reply@example.com or "Acme <no-reply@example.com>"',
  });

const secret = z.string().min(1).max(4096);

export const SmtpSchema = z
  .strictObject({
    host: z
      .string()
      .min(1)
      .max(253)
      .regex(/^[A-Za-z0-9.:[\]-]+$/, 'a host name or IP address such as smtp.example.com')
      .meta({ description: "The SMTP server (your mail provider's submission host, or a relay)" }),
    port: z
      .number()
      .int()
      .min(1)
      .max(65535)
      .optional()
      .meta({ description: 'Default: 465 with secure: true, else 587 (submission with STARTTLS)' }),
    secure: z.boolean().default(false).meta({
      description:
        'true: TLS from the first byte (implicit TLS, port 465). false: plain connection that is upgraded with STARTTLS when the server offers it',
    }),
    requireTLS: z.boolean().default(false).meta({
      description:
        'With secure: false, refuse to send unless the server upgrades the connection with STARTTLS (recommended for any server off loopback)',
    }),
    auth: z
      .strictObject({
        user: secret.meta({ description: 'SMTP user name, usually "${SMTP_USER}"' }),
        pass: secret.meta({ description: 'SMTP password, usually "${SMTP_PASSWORD}"' }),
      })
      .optional()
      .meta({
        description: 'SMTP authentication (AUTH PLAIN/LOGIN); sent only over TLS unless the server is on loopback',
      }),
    tls: z
      .strictObject({
        ca: z.string().min(1).optional().meta({
          description:
            "PEM file of the CA that signed the server's certificate (a private CA); default: the system's trusted CAs",
        }),
        servername: z
          .string()
          .min(1)
          .max(253)
          .optional()
          .meta({ description: "The name the server's certificate must be valid for; default: host" }),
      })
      .optional()
      .meta({
        description: "How the server's certificate is checked. It always is: there is no switch to turn the check off",
      }),
    name: z
      .string()
      .regex(/^[A-Za-z0-9.-]+$/, 'expected a host name such as mail.example.com')
      .max(253)
      .optional()
      .meta({ description: "The name Gatehouse introduces itself with (EHLO); default: publicUrl's host" }),
    timeouts: z
      .strictObject({
        connect: between('10s', 1000, 120_000, '"1s" and "2m"').meta({
          description: 'Longest wait for the TCP (and TLS) connection',
        }),
        greeting: between('10s', 1000, 120_000, '"1s" and "2m"').meta({
          description: "Longest wait for the server's greeting after connecting",
        }),
        socket: between('30s', 1000, 600_000, '"1s" and "10m"').meta({
          description: 'Longest silence from the server during a delivery',
        }),
      })
      .prefault({}),
  })
  .meta({ description: 'The SMTP server Gatehouse sends through (nodemailer)' });

export const EmailSchema = z
  .strictObject({
    from: mailbox.optional().meta({
      description:
        'Sender of every message, e.g. "Acme <no-reply@acme.example>". Default: no-reply@<publicUrl host>, which many servers refuse: set it',
    }),
    replyTo: mailbox.optional().meta({ description: 'Where replies go (a help desk), if not to the sender' }),
    smtp: SmtpSchema,
    delivery: z
      .strictObject({
        attempts: z.number().int().min(1).max(10).default(3).meta({
          description:
            'Tries per message; temporary failures (4xx, connection errors) are retried, permanent ones (5xx) are not',
        }),
        retryDelay: between('5s', 100, 3_600_000, '"100ms" and "1h"').meta({
          description: 'Wait before the first retry; doubled for each further one',
        }),
        queueSize: z.number().int().min(1).max(100_000).default(1000).meta({
          description:
            'Messages waiting to be sent, at most; beyond that new ones are dropped (and logged) rather than held in memory',
        }),
      })
      .prefault({})
      .meta({ description: 'Mail is sent in the background, never while a request waits' }),
    verifyLinkTtl: between('24h', 60_000, 30 * 86_400_000, '"1m" and "30d"').meta({
      description: 'How long a link in an email-verification message works',
    }),
    resetLinkTtl: between('30m', 60_000, 86_400_000, '"1m" and "24h"').meta({
      description:
        'How long a password-reset link works; a newer request, a used link or any password change ends it sooner',
    }),
    signInLinkTtl: between('15m', 60_000, 3_600_000, '"1m" and "1h"').meta({
      description:
        'How long a sign-in link (accounts.signInLinks) works; a newer request or a used link ends it sooner',
    }),
  })
  .meta({
    description:
      'Sending mail: email verification and password reset. Without it both are off, and the pages tell users to ask an administrator (gatehouse users set-password)',
  });

export type EmailConfig = z.output<typeof EmailSchema>;
