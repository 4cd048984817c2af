import { html, type SafeHtml } from './html.ts';
import { layout } from './layout.ts';

export type Errors = Partial<Record<string, string>>;

interface FieldSpec {
  name: string;
  label: string;
  type: 'email' | 'password' | 'text';
  autocomplete: string;
  value?: string;
  hint?: string;
  required?: boolean;
}

/** A labelled input whose error sits right under it and is announced with it. */
function field(f: FieldSpec, errors: Errors, focus: boolean): SafeHtml {
  const error = errors[f.name];
  const describedBy = [f.hint ? `${f.name}-hint` : '', error ? `${f.name}-error` : ''].filter(Boolean).join(' ');
  return html`<div class="field">
<label for="${f.name}">${f.label}</label>
${f.hint ? html`<span class="hint" id="${f.name}-hint">${f.hint}</span>` : ''}
<input id="${f.name}" name="${f.name}" type="${f.type}" autocomplete="${f.autocomplete}"${f.required === false ? '' : html` required`}${f.value !== undefined ? html` value="${f.value}"` : ''}${describedBy ? html` aria-describedby="${describedBy}"` : ''}${error ? html` aria-invalid="true"` : ''}${focus ? html` autofocus` : ''}>
${error ? html`<p class="error" id="${f.name}-error">${error}</p>` : ''}
</div>`;
}

function fields(specs: FieldSpec[], errors: Errors): SafeHtml[] {
  const firstInvalid = specs.findIndex((f) => errors[f.name]);
  const focusAt = firstInvalid === -1 && errors.form ? specs.findIndex((f) => f.type === 'password') : Math.max(firstInvalid, 0);
  return specs.map((f, i) => field(f, errors, i === focusAt));
}

function summary(errors: Errors): SafeHtml | '' {
  const entries = Object.entries(errors).filter(([, v]) => v);
  if (!entries.length) return '';
  return html`<div class="summary" role="alert"><p><strong>${entries.length === 1 && errors.form ? errors.form : 'Please check the form.'}</strong></p>${
    entries.length > 1 || !errors.form
      ? html`<ul>${entries.filter(([k]) => k !== 'form').map(([k, v]) => html`<li><a href="#${k}">${v}</a></li>`)}</ul>`
      : ''
  }</div>`;
}

const hidden = (name: string, value: string | undefined) => (value ? html`<input type="hidden" name="${name}" value="${value}">` : '');

export interface PageBase {
  appTitle: string;
  csrf: string;
  rd?: string;
}

export function loginPage(o: PageBase & { action: string; registerUrl?: string; email?: string; errors?: Errors; notice?: string; extra?: SafeHtml }): string {
  const errors = o.errors ?? {};
  return layout({
    appTitle: o.appTitle,
    heading: 'Sign in',
    body: html`${o.notice ? html`<p class="notice" role="status">${o.notice}</p>` : ''}${summary(errors)}
<form method="post" action="${o.action}" novalidate>
${hidden('csrf', o.csrf)}${hidden('rd', o.rd)}
${fields(
  [
    { name: 'email', label: 'Email', type: 'email', autocomplete: 'username', value: o.email ?? '' },
    { name: 'password', label: 'Password', type: 'password', autocomplete: 'current-password' },
  ],
  errors,
)}
<button type="submit">Sign in</button>
</form>
${o.extra ?? ''}
${o.registerUrl ? html`<p class="alt">New here? <a href="${o.registerUrl}">Create an account</a></p>` : ''}`,
  });
}

export function registerPage(o: PageBase & { action: string; loginUrl: string; email?: string; name?: string; errors?: Errors; minPasswordLength: number }): string {
  const errors = o.errors ?? {};
  return layout({
    appTitle: o.appTitle,
    heading: 'Create an account',
    body: html`${summary(errors)}
<form method="post" action="${o.action}" novalidate>
${hidden('csrf', o.csrf)}${hidden('rd', o.rd)}
${fields(
  [
    { name: 'email', label: 'Email', type: 'email', autocomplete: 'email', value: o.email ?? '' },
    { name: 'name', label: 'Name', type: 'text', autocomplete: 'name', value: o.name ?? '', hint: 'Optional', required: false },
    {
      name: 'password',
      label: 'Password',
      type: 'password',
      autocomplete: 'new-password',
      hint: `At least ${o.minPasswordLength} characters. Spaces and any characters are welcome; a long phrase is best.`,
    },
  ],
  errors,
)}
<button type="submit">Create account</button>
</form>
<p class="alt">Already have an account? <a href="${o.loginUrl}">Sign in</a></p>`,
  });
}

export function logoutPage(o: PageBase & { action: string; email?: string }): string {
  return layout({
    appTitle: o.appTitle,
    heading: 'Sign out',
    body: html`${o.email ? html`<p>You are signed in as <strong>${o.email}</strong>.</p>` : html`<p>You are not signed in.</p>`}
<form method="post" action="${o.action}">
${hidden('csrf', o.csrf)}${hidden('rd', o.rd)}
<button type="submit" autofocus>Sign out</button>
</form>`,
  });
}

export function messagePage(o: { appTitle: string; heading: string; message: string; hint?: string; link?: { href: string; text: string } }): string {
  return layout({
    appTitle: o.appTitle,
    heading: o.heading,
    body: html`<p>${o.message}</p>${o.hint ? html`<p class="hint">${o.hint}</p>` : ''}${o.link ? html`<p class="alt"><a class="button secondary" href="${o.link.href}">${o.link.text}</a></p>` : ''}`,
  });
}
