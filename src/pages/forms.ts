import { html, type SafeHtml } from './html.ts';
import { layout } from './layout.ts';

export type Errors = Partial<Record<string, string>>;

export interface FieldSpec {
  name: string;
  label: string;
  type: 'email' | 'password' | 'text';
  autocomplete: string;
  value?: string;
  hint?: string;
  required?: boolean;
}

/** Id of the form-level error message in the summary (wrong password, throttled, ...). */
const FORM_ERROR_ID = 'form-error';

/**
 * A labelled input whose error sits right under it and is announced with it. `alsoDescribedBy`
 * ties a form-level error to the field that gets the focus, so a screen reader reads it there.
 */
export function field(f: FieldSpec, errors: Errors, focus: boolean, alsoDescribedBy?: string): SafeHtml {
  const error = errors[f.name];
  const describedBy = [f.hint ? `${f.name}-hint` : '', error ? `${f.name}-error` : '', alsoDescribedBy ?? '']
    .filter(Boolean)
    .join(' ');
  // Email addresses are not words: no spell-check squiggles, no capital first letter on phones.
  const emailish = f.type === 'email' ? html` spellcheck="false" autocapitalize="none"` : '';
  return html`<div class="field">
<label for="${f.name}">${f.label}</label>
${f.hint ? html`<span class="hint" id="${f.name}-hint">${f.hint}</span>` : ''}
<input id="${f.name}" name="${f.name}" type="${f.type}" autocomplete="${f.autocomplete}"${emailish}${f.required === false ? '' : html` required`}${f.value !== undefined ? html` value="${f.value}"` : ''}${describedBy ? html` aria-describedby="${describedBy}"` : ''}${error ? html` aria-invalid="true"` : ''}${focus ? html` autofocus` : ''}>
${error ? html`<p class="error" id="${f.name}-error">${error}</p>` : ''}
</div>`;
}

/**
 * The fields of a form. Focus goes to the first field with an error; with only a form-level
 * error (a wrong password) to the password field, which then also "describes" that error.
 */
export function fields(specs: FieldSpec[], errors: Errors): SafeHtml[] {
  const firstInvalid = specs.findIndex((f) => errors[f.name]);
  const formOnly = firstInvalid === -1 && Boolean(errors.form);
  const focusAt = formOnly
    ? Math.max(
        specs.findIndex((f) => f.type === 'password'),
        0,
      )
    : Math.max(firstInvalid, 0);
  return specs.map((f, i) => field(f, errors, i === focusAt, formOnly && i === focusAt ? FORM_ERROR_ID : undefined));
}

export function hasErrors(errors: Errors): boolean {
  return Object.values(errors).some(Boolean);
}

/**
 * The error summary above the form, announced on arrival. Each field's error is an item that
 * names the field and links to it ("Email: Enter ...", as GOV.UK's error summary), in the
 * order of `specs`: the same specs the form's fields are rendered from.
 */
export function summary(errors: Errors, specs: readonly Pick<FieldSpec, 'name' | 'label'>[]): SafeHtml | '' {
  const fieldErrors = specs.flatMap((f) => (errors[f.name] ? [{ f, message: errors[f.name]! }] : []));
  if (!errors.form && !fieldErrors.length) return '';
  const headline =
    errors.form ??
    (fieldErrors.length === 1
      ? 'There is a problem with the form.'
      : `There are ${fieldErrors.length} problems with the form.`);
  return html`<div class="summary" role="alert"><p id="${FORM_ERROR_ID}"><strong>${headline}</strong></p>${
    fieldErrors.length
      ? html`<ul>${fieldErrors.map(({ f, message }) => html`<li><a href="#${f.name}">${f.label}: ${message}</a></li>`)}</ul>`
      : ''
  }</div>`;
}

export const hidden = (name: string, value: string | undefined) =>
  value ? html`<input type="hidden" name="${name}" value="${value}">` : '';

export interface PageBase {
  appTitle: string;
  csrf: string;
  rd?: string;
}

export function loginPage(
  o: PageBase & {
    action: string;
    registerUrl?: string;
    forgotUrl?: string;
    /** "Email me a sign-in link" (accounts.signInLinks). */
    signInLinkUrl?: string;
    email?: string;
    errors?: Errors;
    notice?: string;
    extra?: SafeHtml;
    providers?: SafeHtml;
    /** "Sign in with a passkey" and its script; the email field then offers passkeys (autofill). */
    passkey?: SafeHtml;
    /** The page asks for a sign-in through these providers' buttons alone (allow.providers): no form. */
    providersOnly?: boolean;
  },
): string {
  if (o.providersOnly)
    return layout({
      appTitle: o.appTitle,
      heading: 'Sign in',
      referrerPolicy: 'same-origin',
      body: html`${o.notice ? html`<p class="notice" role="status">${o.notice}</p>` : ''}${o.providers ?? ''}`,
    });
  const errors = o.errors ?? {};
  const specs: FieldSpec[] = [
    {
      name: 'email',
      label: 'Email',
      type: 'email',
      autocomplete: o.passkey ? 'username webauthn' : 'username',
      value: o.email ?? '',
    },
    { name: 'password', label: 'Password', type: 'password', autocomplete: 'current-password' },
  ];
  return layout({
    appTitle: o.appTitle,
    heading: 'Sign in',
    error: hasErrors(errors),
    referrerPolicy: 'same-origin',
    body: html`${o.notice ? html`<p class="notice" role="status">${o.notice}</p>` : ''}${summary(errors, specs)}
${o.providers ? html`${o.providers}<p class="divider">or with your email</p>` : ''}
<form method="post" action="${o.action}" novalidate>
${hidden('csrf', o.csrf)}${hidden('rd', o.rd)}
${fields(specs, errors)}
${o.forgotUrl ? html`<p class="aside"><a href="${o.forgotUrl}">Forgot your password?</a></p>` : ''}
<button type="submit">Sign in</button>
</form>
${o.passkey ? html`<p class="divider">or</p>${o.passkey}` : ''}
${o.signInLinkUrl ? html`<p class="alt"><a href="${o.signInLinkUrl}">Email me a sign-in link</a></p>` : ''}
${o.extra ?? ''}
${o.registerUrl ? html`<p class="alt">New here? <a href="${o.registerUrl}">Create an account</a></p>` : ''}`,
  });
}

/** The optional display-name field of the sign-up and invitation forms. */
export function nameField(value = ''): FieldSpec {
  return { name: 'name', label: 'Name', type: 'text', autocomplete: 'name', value, hint: 'Optional', required: false };
}

/** The field of a password being chosen (sign-up, invitation, reset, change), with the length rule as its hint. */
export function newPasswordField(minLength: number, label = 'Password'): FieldSpec {
  return {
    name: 'password',
    label,
    type: 'password',
    autocomplete: 'new-password',
    hint: `At least ${minLength} characters. Spaces and any characters are welcome; a long phrase is best.`,
  };
}

export function registerPage(
  o: PageBase & {
    action: string;
    loginUrl: string;
    email?: string;
    name?: string;
    errors?: Errors;
    minPasswordLength: number;
    /** "Create it with a passkey" (instead of a password) and its script. */
    passkey?: SafeHtml;
  },
): string {
  const errors = o.errors ?? {};
  const specs: FieldSpec[] = [
    // "username": the address is what this account signs in with, so password managers save it.
    { name: 'email', label: 'Email', type: 'email', autocomplete: 'username', value: o.email ?? '' },
    nameField(o.name),
    newPasswordField(o.minPasswordLength),
  ];
  return layout({
    appTitle: o.appTitle,
    heading: 'Create an account',
    error: hasErrors(errors),
    referrerPolicy: 'same-origin',
    body: html`${summary(errors, specs)}
<form method="post" action="${o.action}" novalidate>
${hidden('csrf', o.csrf)}${hidden('rd', o.rd)}
${fields(specs, errors)}
<button type="submit">Create account</button>
</form>
${o.passkey ? html`<p class="divider">or without a password</p>${o.passkey}` : ''}
<p class="alt">Already have an account? <a href="${o.loginUrl}">Sign in</a></p>`,
  });
}

export function logoutPage(o: PageBase & { action: string; email?: string; loginUrl?: string }): string {
  // Not signed in: signing in is what they most likely want; the form stays, and clears
  // whatever this browser still holds.
  return layout({
    appTitle: o.appTitle,
    heading: 'Sign out',
    referrerPolicy: 'same-origin',
    body: html`${o.email ? html`<p>You are signed in as <strong class="who">${o.email}</strong>.</p>` : html`<p>You are not signed in.</p>`}
${!o.email && o.loginUrl ? html`<p><a class="button" href="${o.loginUrl}">Sign in</a></p>` : ''}
<form method="post" action="${o.action}">
${hidden('csrf', o.csrf)}${hidden('rd', o.rd)}
<button type="submit"${o.email ? html` autofocus` : html` class="secondary"`}>Sign out</button>
</form>`,
  });
}

export function messagePage(o: {
  appTitle: string;
  heading: string;
  message: string;
  hint?: string;
  link?: { href: string; text: string };
}): string {
  return layout({
    appTitle: o.appTitle,
    heading: o.heading,
    body: html`<p>${o.message}</p>${o.hint ? html`<p class="hint">${o.hint}</p>` : ''}${o.link ? html`<p class="alt"><a class="button secondary" href="${o.link.href}">${o.link.text}</a></p>` : ''}`,
  });
}
