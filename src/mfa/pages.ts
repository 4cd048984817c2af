import { hidden, summary, type Errors } from '../pages/forms.ts';
import { html, raw, type SafeHtml } from '../pages/html.ts';
import { layout } from '../pages/layout.ts';
import type { Passkey } from '../store/index.ts';

/**
 * The pages of second factors: the step after a password, enrolment (authenticator app, passkey),
 * recovery codes shown once, and the account page's section. Forms POST with their CSRF token;
 * the passkey buttons need Gatehouse's own two scripts (assets/), allowed by the page's CSP.
 */

export interface Scripts {
  webauthn: string;
  passkeys: string;
}

const scriptTags = (s: Scripts) =>
  html`<script src="${s.webauthn}" defer></script><script src="${s.passkeys}" defer></script>`;

const codeField = (label: string, errors: Errors, hint: string, focus = true) => html`<div class="field">
<label for="code">${label}</label>
<span class="hint" id="code-hint">${hint}</span>
<input id="code" name="code" type="text" inputmode="text" autocomplete="one-time-code" spellcheck="false" autocapitalize="none" required${focus ? html` autofocus` : ''} aria-describedby="code-hint${errors.code ? ' code-error' : ''}"${errors.code ? html` aria-invalid="true"` : ''}>
${errors.code ? html`<p class="error" id="code-error">${errors.code}</p>` : ''}
</div>`;

/** The passkey button: its script asks the options, runs the browser's ceremony, posts the answer. */
export const passkeyButton = (o: {
  mode: 'signin' | 'second_factor' | 'register' | 'signup' | 'reauth' | 'invite';
  options: string;
  verify: string;
  label: string;
  rd?: string;
  secondary?: boolean;
  scripts: Scripts;
  nameField?: boolean;
}) => html`<div class="passkey" data-passkey="${o.mode}" data-options="${o.options}" data-verify="${o.verify}"${o.rd ? html` data-rd="${o.rd}"` : ''}>
${o.nameField ? html`<div class="field"><label for="passkey-name">Name of the new passkey</label><span class="hint" id="passkey-name-hint">Say where it lives, e.g. "Laptop" or "Phone".</span><input id="passkey-name" type="text" maxlength="64" value="Passkey" aria-describedby="passkey-name-hint"></div>` : ''}
<button type="button"${o.secondary ? html` class="secondary"` : ''}>${o.label}</button>
<p class="error" data-passkey-error role="alert" hidden></p>
</div>${scriptTags(o.scripts)}`;

export function secondFactorPage(o: {
  appTitle: string;
  csrf: string;
  action: string;
  email: string;
  rd?: string;
  totp: boolean;
  passkeys: boolean;
  recoveryCodes: boolean;
  errors?: Errors;
  stepUp?: boolean;
  passkey?: SafeHtml;
}): string {
  const errors = o.errors ?? {};
  const codes = o.totp || o.recoveryCodes;
  const hint = o.totp
    ? o.recoveryCodes
      ? 'The 6-digit code from your authenticator app, or one of your recovery codes.'
      : 'The 6-digit code from your authenticator app.'
    : 'One of your recovery codes.';
  return layout({
    appTitle: o.appTitle,
    heading: o.stepUp ? 'Confirm it is you' : 'Second step',
    error: Boolean(errors.form || errors.code),
    referrerPolicy: 'same-origin',
    body: html`${summary(errors, [{ name: 'code', label: 'Code' }])}
<p>${o.stepUp ? 'This page asks for a second factor.' : 'Your password was right.'} Now confirm with a second factor for <strong class="who">${o.email}</strong>.</p>
${o.passkeys && o.passkey ? o.passkey : ''}
${
  codes
    ? html`${o.passkeys ? html`<p class="divider">or with a code</p>` : ''}<form method="post" action="${o.action}" novalidate>
${hidden('csrf', o.csrf)}${hidden('rd', o.rd)}
${codeField(o.totp ? 'Code' : 'Recovery code', errors, hint)}
<button type="submit">Continue</button>
</form>`
    : ''
}`,
  });
}

export interface TotpView {
  secret: string;
  uri: string;
  qrSvg: string;
}

/** Enrolling an authenticator app: the QR code (an inline SVG), the key as text, and a code to confirm. */
export function totpEnrolPage(o: {
  appTitle: string;
  csrf: string;
  action: string;
  totp: TotpView;
  errors?: Errors;
  rd?: string;
  required?: boolean;
  passkey?: SafeHtml;
  backUrl?: string;
}): string {
  const errors = o.errors ?? {};
  return layout({
    appTitle: o.appTitle,
    heading: o.required ? 'Set up a second factor' : 'Add an authenticator app',
    error: Boolean(errors.form || errors.code),
    referrerPolicy: 'same-origin',
    body: html`${summary(errors, [{ name: 'code', label: 'Code' }])}
${o.required ? html`<p>This site asks for a second factor at every sign-in. Add a passkey, or an authenticator app.</p>${o.passkey ?? ''}<p class="divider">or with an authenticator app</p>` : ''}
<p>Scan this code with your authenticator app (or enter the key by hand), then type the 6-digit code it shows.</p>
<figure class="qr" aria-label="QR code of the key">${raw(o.totp.qrSvg)}</figure>
<p>Key: <code class="secret">${o.totp.secret}</code></p>
<form method="post" action="${o.action}" novalidate>
${hidden('csrf', o.csrf)}${hidden('rd', o.rd)}
${codeField('Code', errors, 'The 6-digit code your app shows now.')}
<button type="submit">Confirm</button>
</form>
${o.backUrl ? html`<p class="alt"><a href="${o.backUrl}">Back to your account</a></p>` : ''}`,
  });
}

/** /.auth/reauth's part for a code from the authenticator app or a recovery code. */
export function reauthCodeForm(o: { csrf: string; action: string; rd: string; error?: string }): SafeHtml {
  return html`<form method="post" action="${o.action}" novalidate>
${hidden('csrf', o.csrf)}${hidden('rd', o.rd)}<input type="hidden" name="method" value="code">
${codeField('Code from your authenticator app, or a recovery code', o.error ? { code: o.error } : {}, 'Codes work once.', Boolean(o.error))}
<button type="submit" class="secondary">Confirm with the code</button>
</form>`;
}

/** The recovery codes, shown once. */
export function recoveryCodesPage(o: {
  appTitle: string;
  codes: string[];
  continueUrl: string;
  notice?: string;
}): string {
  return layout({
    appTitle: o.appTitle,
    heading: 'Your recovery codes',
    body: html`${o.notice ? html`<p class="notice" role="status">${o.notice}</p>` : ''}
<p>Keep these somewhere safe. Each one signs you in once if you lose your second factor. They are shown only now.</p>
<ul class="plain codes">${o.codes.map((c) => html`<li><code>${c}</code></li>`)}</ul>
<p class="alt"><a class="button" href="${o.continueUrl}">Continue</a></p>`,
  });
}

const when = (ms: number | null) => (ms === null ? 'never' : new Date(ms).toISOString().slice(0, 16).replace('T', ' '));

/** The account page's "Second factors" section. */
export function factorsSection(o: {
  csrf: string;
  passkeys: Passkey[];
  totp: boolean;
  recoveryCodes: number;
  totpUrl: string;
  totpRemove: string;
  passkeyRemove: string;
  recoveryCodesUrl: string;
  addPasskey: SafeHtml;
}): SafeHtml {
  const remove = (action: string, label: string, extra: SafeHtml | '' = '') =>
    html`<form method="post" action="${action}" class="inline">${hidden('csrf', o.csrf)}${extra}<button type="submit" class="secondary">${label}</button></form>`;
  return html`<h3>Passkeys</h3>
${
  o.passkeys.length
    ? html`<ul class="grants passkeys">${o.passkeys.map(
        (p) =>
          html`<li><strong>${p.name}</strong> · added ${when(p.createdAt)} · last used ${when(p.lastUsedAt)}${p.backedUp ? ' · synced' : ''}
${remove(o.passkeyRemove, `Remove ${p.name}`, html`<input type="hidden" name="id" value="${p.id}">`)}</li>`,
      )}</ul>`
    : html`<p>No passkey yet. A passkey signs you in with your device's screen lock, and cannot be phished.</p>`
}
${o.addPasskey}
<h3>Authenticator app</h3>
${o.totp ? html`<p>On.</p>${remove(o.totpRemove, 'Remove the authenticator app')}` : html`<p><a class="button secondary" href="${o.totpUrl}">Add an authenticator app</a></p>`}
<h3>Recovery codes</h3>
${
  o.recoveryCodes
    ? html`<p>${o.recoveryCodes} remaining.</p>`
    : html`<p>${o.passkeys.length || o.totp ? 'None left.' : 'You get them with your first second factor.'}</p>`
}
${o.passkeys.length || o.totp ? remove(o.recoveryCodesUrl, 'Make new recovery codes') : ''}`;
}
