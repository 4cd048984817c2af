import type { LinkProblem } from './email-tokens.ts';
import {
  field,
  fields,
  hasErrors,
  hidden,
  nameField,
  newPasswordField,
  summary,
  type Errors,
  type FieldSpec,
} from '../pages/forms.ts';
import { html, type SafeHtml } from '../pages/html.ts';
import { layout } from '../pages/layout.ts';

/**
 * The pages of email verification and password reset, and the account page's "Email address"
 * and "Password" sections. Plain forms, no script. Pages with a form use "same-origin"
 * referrers (a form's POST must carry its real Origin); none of them has a token in its URL:
 * a link's token is moved into a cookie and out of the address bar first (see mailed-links.ts).
 */

interface Base {
  appTitle: string;
  csrf: string;
}

/** For password managers: which account the new password belongs to. Not submitted (no name). */
const username = (email: string) => html`<input type="email" autocomplete="username" value="${email}" hidden readonly>`;

/** The form that asks for a mailed link by address: forgot-password, sign-in links. */
export function linkRequestPage(
  o: Base & {
    heading: string;
    intro: string;
    button: string;
    action: string;
    loginUrl: string;
    rd?: string;
    email?: string;
    errors?: Errors;
  },
): string {
  const errors = o.errors ?? {};
  const specs: FieldSpec[] = [
    { name: 'email', label: 'Email', type: 'email', autocomplete: 'username', value: o.email ?? '' },
  ];
  return layout({
    appTitle: o.appTitle,
    heading: o.heading,
    error: hasErrors(errors),
    referrerPolicy: 'same-origin',
    body: html`${summary(errors, specs)}
<p>${o.intro}</p>
<form method="post" action="${o.action}" novalidate>
${hidden('csrf', o.csrf)}${hidden('rd', o.rd)}
${fields(specs, errors)}
<button type="submit">${o.button}</button>
</form>
<p class="alt"><a href="${o.loginUrl}">Back to sign in</a></p>`,
  });
}

/** "Check your inbox", the same for every address. `what` the link is for; `works`: for how long, and where. */
export function linkSentPage(o: {
  appTitle: string;
  loginUrl: string;
  againUrl: string;
  what: string;
  works: string;
}): string {
  return layout({
    appTitle: o.appTitle,
    heading: 'Check your inbox',
    body: html`<p class="notice" role="status">If there is an account for the address you entered, a message with a link ${o.what} is on its way.</p>
<p>The link works once, for ${o.works}. Nothing arrived after a few minutes? Look in your spam folder, check the address, or <a href="${o.againUrl}">ask for another link</a>.</p>
<p class="alt"><a class="button secondary" href="${o.loginUrl}">Back to sign in</a></p>`,
  });
}

/** The mailed link's page: says whose account it signs in to, and does it only on the button (a POST). */
export function openSignInLinkPage(o: Base & { action: string; rd?: string; email: string }): string {
  return layout({
    appTitle: o.appTitle,
    heading: `Sign in to ${o.appTitle}`,
    referrerPolicy: 'same-origin',
    body: html`<p>This link signs you in as <strong class="who">${o.email}</strong>.</p>
<form method="post" action="${o.action}">
${hidden('csrf', o.csrf)}${hidden('rd', o.rd)}
<button type="submit">Sign in</button>
</form>
<p class="aside">Not your address, or you did not ask for this link? Close this page: nothing happens without the button.</p>`,
  });
}

export function resetPasswordPage(
  o: Base & { action: string; email: string; errors?: Errors; minPasswordLength: number },
): string {
  const errors = o.errors ?? {};
  const specs: FieldSpec[] = [newPasswordField(o.minPasswordLength, 'New password')];
  return layout({
    appTitle: o.appTitle,
    heading: 'Choose a new password',
    error: hasErrors(errors),
    referrerPolicy: 'same-origin',
    body: html`${summary(errors, specs)}
<p>For <strong class="who">${o.email}</strong>. Every session of this account is signed out; you then sign in with the new password.</p>
<form method="post" action="${o.action}" novalidate>
${hidden('csrf', o.csrf)}${username(o.email)}
${fields(specs, errors)}
<button type="submit">Set the new password</button>
</form>`,
  });
}

export function confirmEmailPage(o: Base & { action: string; email: string }): string {
  return layout({
    appTitle: o.appTitle,
    heading: 'Confirm your email address',
    referrerPolicy: 'same-origin',
    body: html`<p>Confirm that <strong class="who">${o.email}</strong> is your address.</p>
<form method="post" action="${o.action}">
${hidden('csrf', o.csrf)}
<button type="submit" autofocus>Confirm</button>
</form>`,
  });
}

/**
 * Where a signed-in user sees whether their address is verified and can ask for a new link;
 * also what an unverified user gets instead of a protected page (accounts.requireVerifiedEmail).
 */
export function verifyStatusPage(
  o: Base & {
    heading: string;
    email?: string;
    verified: boolean;
    notice?: string;
    message?: string;
    resendAction?: string;
    continueUrl: string;
    accountUrl?: string;
    signOutUrl?: string;
  },
): string {
  let body: SafeHtml;
  if (o.verified) {
    body = html`<p>${o.email ? html`<strong class="who">${o.email}</strong> is verified.` : 'Your email address is verified.'}</p>
<p class="alt"><a class="button" href="${o.continueUrl}">Continue</a></p>`;
  } else if (!o.email) {
    body = html`<p>${o.message ?? 'Open the link in the message we sent you, or sign in to ask for a new one.'}</p>
<p class="alt"><a class="button secondary" href="${o.continueUrl}">Sign in</a></p>`;
  } else {
    body = html`<p>${o.message ?? html`We sent a link to <strong class="who">${o.email}</strong>. Open it to confirm that the address is yours.`}</p>
${
  o.resendAction
    ? html`<form method="post" action="${o.resendAction}">
${hidden('csrf', o.csrf)}
<button type="submit" class="secondary">Send a new link</button>
</form>`
    : html`<p class="hint">Email is not set up here, so no link can be sent. Ask an administrator to verify your address.</p>`
}
${o.accountUrl ? html`<p class="alt"><a href="${o.accountUrl}">Your account</a>${o.signOutUrl ? html` · <a href="${o.signOutUrl}">Sign out</a>` : ''}</p>` : ''}`;
  }
  return layout({
    appTitle: o.appTitle,
    heading: o.heading,
    referrerPolicy: 'same-origin',
    body: html`${o.notice ? html`<p class="notice" role="status">${o.notice}</p>` : ''}${body}`,
  });
}

const changePasswordFields = (minPasswordLength: number): FieldSpec[] => [
  { name: 'currentPassword', label: 'Current password', type: 'password', autocomplete: 'current-password' },
  newPasswordField(minPasswordLength, 'New password'),
];

export function changePasswordForm(
  o: Base & { action: string; email: string; errors?: Errors; minPasswordLength: number; focus: boolean },
): SafeHtml {
  const errors = o.errors ?? {};
  const specs = changePasswordFields(o.minPasswordLength);
  return html`<form method="post" action="${o.action}" novalidate>
${hidden('csrf', o.csrf)}${username(o.email)}
${o.focus ? fields(specs, errors) : specs.map((s) => field(s, errors, false))}
<button type="submit">Change password</button>
</form>`;
}

/** Shown again with what was wrong, when the account page's form did not go through. */
export function changePasswordPage(
  o: Base & { action: string; email: string; errors: Errors; minPasswordLength: number; accountUrl: string },
): string {
  return layout({
    appTitle: o.appTitle,
    heading: 'Change your password',
    error: hasErrors(o.errors),
    referrerPolicy: 'same-origin',
    body: html`${summary(o.errors, changePasswordFields(o.minPasswordLength))}
${changePasswordForm({ ...o, focus: true })}
<p class="alt"><a href="${o.accountUrl}">Back to your account</a></p>`,
  });
}

/** The account page's "Email address" section. */
export function emailSection(o: { email: string; verified: boolean; csrf: string; resendAction?: string }): SafeHtml {
  if (o.verified) return html`<p><strong class="who">${o.email}</strong> · verified</p>`;
  return html`<p><strong class="who">${o.email}</strong> · not verified yet</p>
${
  o.resendAction
    ? html`<form method="post" action="${o.resendAction}" class="inline">
${hidden('csrf', o.csrf)}
<button type="submit" class="secondary">Send verification email</button>
</form>`
    : ''
}`;
}

/** What the page says for a link that does not work, and the HTTP status. */
export function describeLinkProblem(
  problem: LinkProblem,
  purpose: 'verify' | 'reset' | 'change' | 'invite' | 'signin',
): { status: number; message: string; hint: string } {
  const again =
    purpose === 'reset'
      ? 'Ask for a new link on the sign-in page ("Forgot your password?").'
      : purpose === 'signin'
        ? 'Ask for a new link on the sign-in page ("Email me a sign-in link").'
        : purpose === 'change'
          ? 'Sign in and ask for the change again on your account page.'
          : purpose === 'invite'
            ? 'Ask the administrator who invited you for a new invitation.'
            : 'Sign in and ask for a new link.';
  switch (problem) {
    case 'invalid':
      return {
        status: 400,
        message: 'This link is not valid.',
        hint: `It may be incomplete: open it from the message again, or copy the whole address. ${again}`,
      };
    case 'used':
      return { status: 410, message: 'This link was already used.', hint: `Each link works once. ${again}` };
    case 'superseded':
      return {
        status: 410,
        message: 'A newer link was sent since, and only the newest one works.',
        hint: `Use the link in the most recent message. ${again}`,
      };
    case 'expired':
      return { status: 410, message: 'This link has expired.', hint: again };
    case 'changed':
      return {
        status: 410,
        message:
          purpose === 'reset'
            ? 'The password of this account was changed since this link was sent, so the link no longer works.'
            : purpose === 'invite'
              ? 'This account has a password already: sign in with it.'
              : purpose === 'change'
                ? 'The address or the password of this account has changed since this link was sent, which cancelled the change.'
                : 'The address of this account has changed since this link was sent.',
        hint: again,
      };
  }
}

/** The password part of "Confirm it's you" (accounts/reauth.ts): a form of its own, method=password. */
export function passwordProofForm(o: {
  csrf: string;
  action: string;
  rd: string;
  email: string;
  error?: string;
}): SafeHtml {
  const errors: Errors = o.error ? { password: o.error } : {};
  const spec: FieldSpec = { name: 'password', label: 'Password', type: 'password', autocomplete: 'current-password' };
  return html`<form method="post" action="${o.action}" novalidate>
${hidden('csrf', o.csrf)}${hidden('rd', o.rd)}<input type="hidden" name="method" value="password">${username(o.email)}
${field(spec, errors, true)}
<button type="submit">Continue</button>
</form>`;
}

/** /reauth: before a sensitive action, the user proves who they are again. */
export function reauthPage(o: {
  appTitle: string;
  email: string;
  proofs: SafeHtml[];
  error?: string;
  cancelUrl: string;
}): string {
  return layout({
    appTitle: o.appTitle,
    heading: "Confirm it's you",
    error: Boolean(o.error),
    referrerPolicy: 'same-origin',
    body: html`${summary({ form: o.error }, [])}
<p>You are signed in as <strong class="who">${o.email}</strong>. What you asked for changes how your account is reached, so confirm that it is you first.</p>
${o.proofs.map((p, i) => html`${i ? html`<p class="divider">or</p>` : ''}${p}`)}
<p class="alt"><a href="${o.cancelUrl}">Cancel</a></p>`,
  });
}

/** /reauth for an account with no way to confirm here (no password, no provider): sign in again. */
export function noProofPage(o: { appTitle: string; signOutUrl: string; cancelUrl: string }): string {
  return layout({
    appTitle: o.appTitle,
    heading: "Confirm it's you",
    body: html`<p>This needs a recent sign-in, and your account has no password or linked provider to confirm it with here. Sign out, sign in again, then try once more.</p>
<p class="alt"><a class="button" href="${o.signOutUrl}">Sign out</a> <a href="${o.cancelUrl}">Cancel</a></p>`,
  });
}

/** The account page's "Change email address" form (accounts/email-change.ts). */
export function changeEmailForm(o: { csrf: string; action: string; errors?: Errors; value?: string }): SafeHtml {
  const errors = o.errors ?? {};
  const spec: FieldSpec = {
    name: 'newEmail',
    label: 'New email address',
    type: 'email',
    autocomplete: 'email',
    value: o.value ?? '',
    hint: 'We send a link there; your address stays as it is until you open it.',
  };
  return html`<form method="post" action="${o.action}" novalidate>
${hidden('csrf', o.csrf)}
${field(spec, errors, Boolean(errors.newEmail))}
<button type="submit" class="secondary">Change email address</button>
</form>`;
}

/** Shown again with what was wrong, when the account page's form did not go through. */
export function changeEmailPage(
  o: Base & { action: string; email: string; errors: Errors; value?: string; accountUrl: string },
): string {
  return layout({
    appTitle: o.appTitle,
    heading: 'Change your email address',
    error: hasErrors(o.errors),
    referrerPolicy: 'same-origin',
    body: html`${summary(o.errors, [{ name: 'newEmail', label: 'New email address' }])}
<p>Your address is <strong class="who">${o.email}</strong>.</p>
${changeEmailForm({ csrf: o.csrf, action: o.action, errors: o.errors, value: o.value })}
<p class="alt"><a href="${o.accountUrl}">Back to your account</a></p>`,
  });
}

/** The mailed link's page: one button makes the new address the account's. */
export function confirmEmailChangePage(o: Base & { action: string; oldEmail: string; newEmail: string }): string {
  return layout({
    appTitle: o.appTitle,
    heading: 'Confirm your new email address',
    referrerPolicy: 'same-origin',
    body: html`<p>Make <strong class="who">${o.newEmail}</strong> the address of the account that is now <strong>${o.oldEmail}</strong>?</p>
<p class="hint">You then sign in with the new address; messages about the account go there.</p>
<form method="post" action="${o.action}">
${hidden('csrf', o.csrf)}
<button type="submit" autofocus>Confirm</button>
</form>`,
  });
}

/** The invitation link's page (accounts/invitations.ts): a password (and a name) for the invited address. */
export function acceptInvitationPage(
  o: Base & {
    action: string;
    email: string;
    name?: string;
    errors?: Errors;
    minPasswordLength: number;
    /** Other ways to accept (a passkey), below the password form. */
    options: SafeHtml[];
  },
): string {
  const errors = o.errors ?? {};
  const specs: FieldSpec[] = [nameField(o.name), newPasswordField(o.minPasswordLength)];
  return layout({
    appTitle: o.appTitle,
    heading: `Welcome to ${o.appTitle}`,
    error: hasErrors(errors),
    referrerPolicy: 'same-origin',
    body: html`${summary(errors, specs)}
<p>You are invited with the address <strong class="who">${o.email}</strong>. Choose a password to finish; you are then signed in.</p>
<form method="post" action="${o.action}" novalidate>
${hidden('csrf', o.csrf)}${username(o.email)}
${fields(specs, errors)}
<button type="submit">Create account</button>
</form>
${o.options.length ? html`<p class="divider">or</p>${o.options}` : ''}`,
  });
}

/** The account page's "Delete account" form (accounts/deletion.ts): the address typed again confirms it. */
export function deleteAccountForm(o: { csrf: string; action: string; email: string; errors?: Errors }): SafeHtml {
  const errors = o.errors ?? {};
  const spec: FieldSpec = {
    name: 'confirm',
    label: `Type your email address (${o.email}) to confirm`,
    type: 'email',
    autocomplete: 'off',
    value: '',
  };
  return html`<p class="hint">Deleting your account signs you out everywhere and removes your sign-in methods, linked providers, second factors and program logins. It cannot be undone.</p>
<form method="post" action="${o.action}" novalidate>
${hidden('csrf', o.csrf)}
${field(spec, errors, Boolean(errors.confirm))}
<button type="submit" class="danger">Delete my account</button>
</form>`;
}

/** Shown again with what was wrong, when the account page's "Delete account" form did not go through. */
export function deleteAccountPage(
  o: Base & { action: string; email: string; errors: Errors; accountUrl: string },
): string {
  return layout({
    appTitle: o.appTitle,
    heading: 'Delete your account',
    error: hasErrors(o.errors),
    referrerPolicy: 'same-origin',
    body: html`${summary(o.errors, [{ name: 'confirm', label: 'Confirmation' }])}
${deleteAccountForm({ csrf: o.csrf, action: o.action, email: o.email, errors: o.errors })}
<p class="alt"><a href="${o.accountUrl}">Back to your account</a></p>`,
  });
}
