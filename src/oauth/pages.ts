import { html, layout, summary, type SafeHtml } from '../pages/index.ts';
import type { Grant } from '../store/index.ts';
import { Scopes } from './scopes.ts';

/**
 * The OAuth server's pages: device code entry and approval, the consent page of the
 * authorization code flow, and the "devices and apps" section of the account page. Plain
 * forms without scripts, like every Gatehouse page; every value is escaped by `html`.
 */

const hidden = (name: string, value: string | undefined) =>
  value === undefined ? '' : html`<input type="hidden" name="${name}" value="${value}">`;

function formatTime(ms: number): string {
  return `${new Date(ms).toISOString().slice(0, 16).replace('T', ' ')} UTC`;
}

export function ago(ms: number, now: number): string {
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 60) return 'just now';
  const m = Math.round(s / 60);
  if (m < 60) return `${m} minute${m === 1 ? '' : 's'} ago`;
  const h = Math.round(m / 60);
  if (h < 48) return `${h} hour${h === 1 ? '' : 's'} ago`;
  return `${Math.round(h / 24)} days ago`;
}

function accessList(scope: string): SafeHtml {
  const items = Scopes.describe(scope);
  return items.length
    ? html`<ul class="plain">${items.map((s) => html`<li>${s.text} <code>${s.name}</code></li>`)}</ul>`
    : html`Act as you in this app`;
}

function clientLabel(c: { name: string; verified: boolean }): SafeHtml {
  return c.verified
    ? html`<strong>${c.name}</strong>`
    : html`<strong>${c.name}</strong> <span class="tag">unverified: this name is the client's own claim</span>`;
}

export interface DeviceEntry {
  appTitle: string;
  action: string;
  csrf: string;
  email: string;
  userCode?: string;
  error?: string;
}

export function deviceEntryPage(o: DeviceEntry): string {
  const described = ['user_code-hint', o.error ? 'user_code-error' : ''].filter(Boolean).join(' ');
  return layout({
    appTitle: o.appTitle,
    heading: 'Connect a device',
    error: Boolean(o.error),
    referrerPolicy: 'same-origin',
    body: html`<p>Signed in as <strong class="who">${o.email}</strong>.</p>
${summary({ user_code: o.error }, [{ name: 'user_code', label: 'Code' }])}
<form method="post" action="${o.action}" novalidate>
${hidden('csrf', o.csrf)}
<div class="field">
<label for="user_code">Code</label>
<span class="hint" id="user_code-hint">The code the program that asks to sign in shows you, like BCDF-GHJK.</span>
<input id="user_code" name="user_code" type="text" autocomplete="one-time-code" autocapitalize="characters" spellcheck="false" maxlength="32" required${o.userCode ? html` value="${o.userCode}"` : ''} aria-describedby="${described}"${o.error ? html` aria-invalid="true"` : ''} autofocus>
${o.error ? html`<p class="error" id="user_code-error">${o.error}</p>` : ''}
</div>
<button type="submit">Continue</button>
</form>`,
  });
}

export interface DeviceConfirm {
  appTitle: string;
  action: string;
  csrf: string;
  email: string;
  userCode: string;
  client: { name: string; verified: boolean };
  app: { title: string; resource: string };
  scope: string;
  requested: { at: number; ip: string | null; now: number };
}

export function deviceConfirmPage(o: DeviceConfirm): string {
  const decision = (
    value: 'approve' | 'deny',
    label: string,
    secondary: boolean,
  ) => html`<form method="post" action="${o.action}">
${hidden('csrf', o.csrf)}${hidden('user_code', o.userCode)}${hidden('decision', value)}
<button type="submit"${secondary ? html` class="secondary"` : ''}>${label}</button>
</form>`;
  return layout({
    appTitle: o.appTitle,
    heading: 'Allow this device to sign in?',
    referrerPolicy: 'same-origin',
    body: html`<p>${clientLabel(o.client)} asks to use <strong>${o.app.title}</strong> as <strong class="who">${o.email}</strong>.</p>
<dl class="details">
<dt>Code</dt><dd><code class="usercode">${o.userCode}</code></dd>
<dt>App</dt><dd>${o.app.title} <code>${o.app.resource}</code></dd>
<dt>Access</dt><dd>${accessList(o.scope)}</dd>
<dt>Requested</dt><dd>${ago(o.requested.at, o.requested.now)}${o.requested.ip ? html` from ${o.requested.ip}` : ''}</dd>
</dl>
<p class="warning">Allow only if you started this sign-in yourself and the program shows this same code. Someone who sent you a code would get into your account.</p>
<div class="actions">${decision('approve', 'Allow', false)}${decision('deny', 'Deny', true)}</div>`,
  });
}

export interface Consent {
  appTitle: string;
  action: string;
  csrf: string;
  email: string;
  client: { id: string; name: string; verified: boolean; uri: string | undefined; metadataDocument: boolean };
  returnsTo: string;
  app: { title: string; resource: string };
  scope: string;
  /** The authorization request, carried to the POST unchanged. */
  params: Record<string, string | undefined>;
}

export function consentPage(o: Consent): string {
  const decision = (
    value: 'approve' | 'deny',
    label: string,
    secondary: boolean,
  ) => html`<form method="post" action="${o.action}">
${hidden('csrf', o.csrf)}${Object.entries(o.params).map(([k, v]) => hidden(k, v))}${hidden('decision', value)}
<button type="submit"${secondary ? html` class="secondary"` : ''}>${label}</button>
</form>`;
  return layout({
    appTitle: o.appTitle,
    heading: 'Allow access?',
    referrerPolicy: 'same-origin',
    body: html`<p>${clientLabel(o.client)} asks to use <strong>${o.app.title}</strong> as <strong class="who">${o.email}</strong>.</p>
<dl class="details">
<dt>Client</dt><dd>${o.client.name}${o.client.metadataDocument ? html`<br><code>${o.client.id}</code>` : o.client.uri ? html`<br><code>${o.client.uri}</code>` : ''}</dd>
<dt>Returns you to</dt><dd><code>${o.returnsTo}</code></dd>
<dt>App</dt><dd>${o.app.title} <code>${o.app.resource}</code></dd>
<dt>Access</dt><dd>${accessList(o.scope)}</dd>
</dl>
${o.client.verified ? '' : html`<p class="warning">Only allow clients you are setting up yourself right now. You can sign them out later in your account.</p>`}
<div class="actions">${decision('approve', 'Allow', false)}${decision('deny', 'Deny', true)}</div>`,
  });
}

export interface GrantRow {
  grant: Grant;
  appTitle: string;
}

/** A device login the user approved whose program has not collected it yet. */
export interface WaitingRow {
  /** The device authorization's key (the SHA-256 of its device code): what Cancel names. */
  id: string;
  clientName: string;
  appTitle: string;
  approvedAt: number;
  ip: string | null;
}

/**
 * The account page's list of CLI and MCP logins, each with a sign-out button (the body of its
 * section); device logins approved but not yet collected by their program come first, with Cancel.
 */
export function grantsSection(o: {
  rows: GrantRow[];
  waiting: WaitingRow[];
  action: string;
  csrf: string;
  now: number;
}): SafeHtml {
  return html`<p class="hint">Programs signed in to your account without a browser: command-line tools and MCP clients.</p>
${
  o.rows.length + o.waiting.length === 0
    ? html`<p>None.</p>`
    : html`<ul class="grants">${o.waiting.map(
        (w) => html`<li>
<p><strong>${w.clientName}</strong> · ${w.appTitle} · <span class="kind">device sign-in, waiting for the device</span></p>
<p class="hint">Approved ${ago(w.approvedAt, o.now)}${w.ip ? html` (asked from ${w.ip})` : ''}: the program signs in the next time it checks</p>
<form method="post" action="${o.action}">${hidden('csrf', o.csrf)}${hidden('device', w.id)}<button type="submit" class="secondary">Cancel ${w.clientName}</button></form>
</li>`,
      )}${o.rows.map(
        ({ grant: g, appTitle }) => html`<li>
<p><strong>${g.clientName}</strong> · ${appTitle} · <span class="kind">${g.kind === 'device' ? 'device sign-in' : 'app authorization'}</span></p>
<p class="hint">Signed in ${formatTime(g.createdAt)} · last used ${ago(g.lastUsedAt, o.now)}${g.ip ? html` from ${g.ip}` : ''}</p>
<form method="post" action="${o.action}">${hidden('csrf', o.csrf)}${hidden('grant', g.id)}<button type="submit" class="secondary">Sign out ${g.clientName}</button></form>
</li>`,
      )}</ul>`
}`;
}
