import { html, layout, type SafeHtml } from '../pages/index.ts';
import type { Identity } from '../store/index.ts';
import type { FlowError, ProviderClient } from './client.ts';

/** Server-rendered pieces for sign-in through providers, in the style of src/pages. */

const icon = (p: ProviderClient) => (p.config.icon ? html`<img src="${p.config.icon}" alt="">` : '');

/**
 * One link per provider on the login page. A link, not a form: a same-origin navigation
 * starts the sign-in at once (routes.ts), and browsers would apply the page's CSP
 * form-action to a form's redirect to the provider.
 */
export function loginButtons(providers: readonly ProviderClient[], prefix: string, rd: string): SafeHtml | undefined {
  if (!providers.length) return undefined;
  const q = rd === '/' ? '' : `?rd=${encodeURIComponent(rd)}`;
  return html`<div class="providers">${providers.map((p) => html`<a class="button secondary" href="${prefix}/login/${p.id}${q}">${icon(p)}<span>Continue with ${p.name}</span></a>`)}</div>`;
}

/** A sign-in started from another site (or without a way to tell): one button, CSRF-protected. */
export function confirmPage(o: {
  appTitle: string;
  provider: ProviderClient;
  action: string;
  csrf: string;
  rd: string;
}): string {
  return layout({
    appTitle: o.appTitle,
    heading: `Sign in with ${o.provider.name}`,
    referrerPolicy: 'same-origin',
    body: html`<p>Continue to ${o.provider.name} to sign in to ${o.appTitle}.</p>
<form method="post" action="${o.action}">
<input type="hidden" name="csrf" value="${o.csrf}">${o.rd !== '/' ? html`<input type="hidden" name="rd" value="${o.rd}">` : ''}
<button type="submit" autofocus>Continue with ${o.provider.name}</button>
</form>`,
  });
}

/** The "Sign-in methods" section of /.auth/account. */
export function identitiesSection(o: {
  identities: readonly Identity[];
  providers: readonly ProviderClient[];
  hasPassword: boolean;
  prefix: string;
  csrf: string;
}): SafeHtml {
  const nameOf = (id: string) => o.providers.find((p) => p.id === id)?.name ?? id;
  const canUnlink = o.hasPassword || o.identities.length > 1;
  const linked = new Set(o.identities.map((i) => i.provider));
  const linkable = o.providers.filter((p) => !linked.has(p.id));
  const csrf = html`<input type="hidden" name="csrf" value="${o.csrf}">`;
  return html`<ul class="list">
${o.hasPassword ? html`<li><span class="info">Password<small>Sign in with your email and password</small></span></li>` : ''}
${o.identities.map(
  (i) =>
    html`<li><span class="info">${nameOf(i.provider)}<small>${i.email ?? i.name ?? `account ${i.subject}`}</small></span>${
      canUnlink
        ? html`<form method="post" action="${o.prefix}/account/unlink">${csrf}<input type="hidden" name="identity" value="${i.id}"><button type="submit" class="secondary" aria-label="Unlink ${nameOf(i.provider)}">Unlink</button></form>`
        : html`<small>Your only way to sign in</small>`
    }</li>`,
)}
</ul>
${linkable.length ? html`<h2 id="link-heading">Link another way to sign in</h2><div class="providers">${linkable.map((p) => html`<form method="post" action="${o.prefix}/account/link">${csrf}<input type="hidden" name="provider" value="${p.id}"><button type="submit" class="secondary">${icon(p)}Link ${p.name}</button></form>`)}</div>` : ''}`;
}

/** What the error page says for each way a sign-in can fail, and the HTTP status. */
export function describeFailure(
  code: FlowError,
  p: { name: string; email?: string; domains?: readonly string[]; organizations?: readonly string[]; origin: string },
): { status: number; message: string; hint?: string } {
  const name = p.name;
  switch (code) {
    case 'denied':
      return { status: 403, message: `Signing in with ${name} was cancelled.` };
    case 'provider_error':
      return {
        status: 502,
        message: `${name} did not complete the sign-in.`,
        hint: 'It answered with an error; try again, or sign in another way.',
      };
    case 'state_missing':
    case 'state_unknown':
    case 'wrong_site':
      return {
        status: 400,
        message: 'This sign-in link is not valid or has been changed.',
        hint: 'Start again from the sign-in page.',
      };
    case 'state_used':
      return {
        status: 400,
        message: 'This sign-in link was already used.',
        hint: 'Each sign-in can complete once. Start again from the sign-in page.',
      };
    case 'state_expired':
      return {
        status: 400,
        message: 'The sign-in took too long and expired.',
        hint: 'Start again from the sign-in page.',
      };
    case 'state_cookie_missing':
      return {
        status: 400,
        message: 'Your browser came back without the cookie it was given when sign-in started.',
        hint: `This happens when sign-in starts at one address and returns to another (http and https, or another host name than ${p.origin}), or when the browser blocks cookies. Open ${p.origin} directly and try again.`,
      };
    case 'state_cookie_mismatch':
      return {
        status: 400,
        message: 'This sign-in was started in another browser.',
        hint: 'For your safety a sign-in completes only in the browser that started it. Start again here.',
      };
    case 'wrong_provider':
      return {
        status: 400,
        message: `This answer does not belong to a sign-in started with ${name}.`,
        hint: 'Start again from the sign-in page.',
      };
    case 'unknown_provider':
      return { status: 404, message: 'There is no such sign-in provider.' };
    case 'provider_unreachable':
      return {
        status: 503,
        message: `${name} cannot be reached right now.`,
        hint: 'Try again in a moment, or sign in another way.',
      };
    case 'issuer_mismatch':
      return {
        status: 400,
        message: `The answer did not come from ${name}.`,
        hint: 'Start again from the sign-in page.',
      };
    case 'token_exchange_failed':
      return {
        status: 502,
        message: `${name} did not accept the sign-in.`,
        hint: 'Start again from the sign-in page.',
      };
    case 'id_token_invalid':
      return {
        status: 502,
        message: `${name}'s answer could not be verified.`,
        hint: 'Start again from the sign-in page; if it keeps happening, tell the administrator.',
      };
    case 'userinfo_failed':
      return { status: 502, message: `${name} did not say who you are.`, hint: 'Try again in a moment.' };
    case 'no_email':
      return {
        status: 403,
        message: `${name} did not share an email address, which a new account needs.`,
        hint: `Allow ${name} to share your email, or sign in another way.`,
      };
    case 'email_unverified':
      return {
        status: 403,
        message: `${name} has not verified your email address${p.email ? ` ${p.email}` : ''}.`,
        hint: `Verify it at ${name}, or sign in another way.`,
      };
    case 'email_taken':
      return {
        status: 409,
        message: `An account for ${p.email ?? 'this email address'} already exists.`,
        hint: `Sign in the way you did before, then link ${name} on your account page.`,
      };
    case 'registration_closed':
      return {
        status: 403,
        message: `There is no account for this ${name} identity, and new accounts are not accepted.`,
        hint: 'Ask an administrator to add you.',
      };
    case 'domain_not_allowed':
      return {
        status: 403,
        message: `Accounts can only be created for addresses at ${(p.domains ?? []).join(' or ')}.`,
      };
    case 'organization_not_allowed':
      return {
        status: 403,
        message: `Only members of ${(p.organizations ?? []).join(' or ')} on ${name} can sign in here.`,
        hint: `Ask an owner of the organization to add you. If you are a member, it may have to approve this app first (${name}: the organization's Settings, Third-party access).`,
      };
    case 'account_disabled':
      return { status: 403, message: 'This account is disabled.', hint: 'Contact an administrator.' };
    case 'identity_taken':
      return {
        status: 409,
        message: `This ${name} account is already linked to another user.`,
        hint: 'Sign in with it to use that user, or link another account.',
      };
    case 'reauth_mismatch':
      return {
        status: 403,
        message: `You signed in at ${name} as someone else than the account you are confirming.`,
        hint: 'Sign in there with the account linked to yours, or sign out here and sign in as that one.',
      };
    case 'link_session_mismatch':
      return {
        status: 400,
        message: 'Linking must finish in the session that started it.',
        hint: 'Sign in and start again from your account page.',
      };
    case 'rate_limited':
      return {
        status: 429,
        message: 'Too many sign-in attempts from your network.',
        hint: 'Wait a few minutes and try again.',
      };
  }
}

/** The provider part of "Confirm it's you" (accounts/reauth.ts): sign in again at a linked provider. */
export function reauthProviderForms(o: {
  providers: readonly ProviderClient[];
  action: string;
  csrf: string;
  rd: string;
  error?: string;
}): SafeHtml {
  return html`${o.error ? html`<p class="error" role="alert">${o.error}</p>` : ''}<p>Sign in again at the provider linked to your account:</p>
<div class="providers">${o.providers.map((p) => html`<form method="post" action="${o.action}"><input type="hidden" name="csrf" value="${o.csrf}"><input type="hidden" name="rd" value="${o.rd}"><input type="hidden" name="provider" value="${p.id}"><button type="submit" class="secondary">${icon(p)}Continue with ${p.name}</button></form>`)}</div>`;
}
