import { readFileSync } from 'node:fs';
import type { Warning } from '../config/warning.ts';
import type { Config } from '../config/schema.ts';
import { isLoopbackHost } from '../http/loopback.ts';
import { appsOf } from '../sites/index.ts';

/** `gatehouse check` (and the start-up log) about mail and verified addresses; part of cli/lint.ts. */
export function lintEmail(config: Config): Warning[] {
  const w: Warning[] = [];
  const email = config.email;
  if (!email) {
    if (config.accounts.requireVerifiedEmail) {
      w.push({
        key: 'accounts.requireVerifiedEmail',
        message:
          'no email configured, so no verification link can be sent: users who register with a password can never use a protected route. Configure email, or turn this off.',
      });
    } else if (config.accounts.registration === 'invite') {
      w.push({
        key: 'accounts.registration',
        message:
          'invite without email configured: gatehouse users invite prints each invitation link, to be handed over another way (it signs in whoever opens it first). Configure email to mail them.',
      });
    } else if (config.accounts.registration === 'open') {
      w.push({
        key: 'email',
        message:
          'no email configured: addresses are never verified and there is no password reset by email (users who forget their password must ask an operator: gatehouse users set-password).',
      });
    }
  } else {
    const s = email.smtp;
    const local = isLoopbackHost(s.host);
    if (!email.from) {
      w.push({
        key: 'email.from',
        message: `no from address: mail is sent as no-reply@${new URL(config.publicUrl).hostname}, which most servers refuse or file as spam. Set an address of a domain the SMTP server may send for.`,
      });
    }
    if (!s.secure && !s.requireTLS && !local) {
      w.push({
        key: 'email.smtp.requireTLS',
        message: `${s.host} is reached without TLS unless it offers STARTTLS, and anyone on the path can strip that offer: reset links${s.auth ? ' and the SMTP password' : ''} would cross the network in clear. Set requireTLS: true (STARTTLS, port 587) or secure: true (port 465).`,
      });
    }
    if (s.secure && s.port === 587)
      w.push({
        key: 'email.smtp.port',
        message:
          'port 587 expects STARTTLS (secure: false, requireTLS: true); secure: true speaks TLS at once and would time out there.',
      });
    if (!s.secure && s.port === 465)
      w.push({ key: 'email.smtp.secure', message: 'port 465 expects TLS from the start: set secure: true.' });
    if (s.tls?.ca) {
      try {
        if (!readFileSync(s.tls.ca, 'utf8').includes('-----BEGIN CERTIFICATE-----'))
          w.push({ key: 'email.smtp.tls.ca', message: `${s.tls.ca} holds no PEM certificate.` });
      } catch (err) {
        w.push({
          key: 'email.smtp.tls.ca',
          message: `${s.tls.ca} cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}): Gatehouse will not start.`,
        });
      }
    }
  }
  // Allow-lists by address count verified addresses only (policy/rules.ts): an address typed
  // at sign-up proves nothing. Say who that leaves out (requireVerifiedEmail says it already).
  if (config.accounts.registration === 'open' && !config.accounts.requireVerifiedEmail) {
    appsOf(config).forEach((app, a) => {
      app.routes.forEach((r, i) => {
        if (r.allow?.emails?.length || r.allow?.domains?.length) {
          const key = `${config.apps ? `apps[${a}].` : ''}routes[${i}].allow`;
          const message = config.email
            ? 'admits by email address, which counts only once the address is verified: users who register with a password are refused here (403) until they follow the verification link.'
            : 'admits by email address, which counts only once the address is verified, and without email configured a password registration can never verify it: only operator-made users and verified provider sign-ins get in. Configure email, or admit by groups.';
          w.push({ key, message });
        }
      });
    });
  }
  return w;
}
