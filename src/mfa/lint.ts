import type { Config } from '../config/schema.ts';
import type { Warning } from '../config/warning.ts';
import { passkeysPossible, rpIdOf } from './passkeys.ts';

/** `gatehouse check`'s warnings about second factors (docs/second-factors.md). */
export function lintMfa(config: Config): Warning[] {
  const w: Warning[] = [];
  if (config.accounts.mfa === 'off') return w;
  const rpId = rpIdOf(config);
  if (!passkeysPossible(config)) {
    // Quietly off where second factors are a choice (a local install on 127.0.0.1); said when required.
    if (config.accounts.mfa === 'required')
      w.push({
        key: 'accounts.mfa',
        message: `required, but passkeys need a domain name and publicUrl's host ${rpId} is an IP address: users can enrol only an authenticator app. Use a name, even localhost.`,
      });
    return w;
  }
  const within = (host: string) => host === rpId || host.endsWith(`.${rpId}`);
  const publicHost = new URL(config.publicUrl).hostname.toLowerCase();
  if (!within(publicHost)) {
    w.push({
      key: 'accounts.passkeys.rpId',
      message: `"${rpId}" is not publicUrl's host (${publicHost}) nor a domain it is in: browsers refuse every passkey.`,
      severity: 'error',
    });
    return w;
  }
  const hosts = new Set(
    (config.apps ?? []).flatMap((a) => (a.host ? [a.host.toLowerCase().replace(/:\d+$/, '')] : [])),
  );
  const outside = [...hosts].filter((h) => !within(h));
  if (outside.length)
    w.push({
      key: 'accounts.passkeys.rpId',
      message: `passkeys belong to "${rpId}"; apps on ${outside.join(', ')} are outside it, so passkeys cannot be used there (their users sign in with a password and an authenticator app). Set accounts.passkeys.rpId to a domain every app host is in.`,
    });
  if (config.accounts.mfa === 'required' && config.accounts.registration === 'open' && !config.email)
    w.push({
      key: 'accounts.mfa',
      message:
        'required with open registration and no email: a stranger who registers enrols their own second factor; the policy keeps nobody out that registration lets in.',
    });
  return w;
}
