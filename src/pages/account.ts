import { html, type SafeHtml } from './html.ts';
import { summary } from './forms.ts';
import { layout } from './layout.ts';

/** One part of the account page (sign-in methods, sessions, devices, ...), rendered by its owner. */
export interface AccountSectionView {
  /** Names the section; its heading's id is `section-<id>`, apart from the ids of form fields. */
  id: string;
  heading: string;
  body: SafeHtml;
  /** A result to announce at the top (e.g. after a link or unlink). */
  notice?: string;
  /** The section runs Gatehouse's own scripts (the passkey buttons): the page's CSP allows them. */
  scripts?: boolean;
}

/**
 * /.auth/account: who is signed in, then each section in order. Plain forms that POST
 * (CSRF-protected by their owners), no script. "same-origin" referrers so the POSTs carry
 * the real Origin.
 */
export function accountPage(o: {
  appTitle: string;
  email: string;
  name: string | null;
  notice?: string;
  error?: string;
  sections: AccountSectionView[];
  signOutUrl: string;
}): string {
  return layout({
    appTitle: o.appTitle,
    heading: 'Your account',
    error: Boolean(o.error),
    referrerPolicy: 'same-origin',
    body: html`${o.notice ? html`<p class="notice" role="status">${o.notice}</p>` : ''}${summary({ form: o.error }, [])}
<p>Signed in as <strong class="who">${o.email}</strong>${o.name ? html` (${o.name})` : ''}.</p>
${o.sections.map((s) => html`<section aria-labelledby="section-${s.id}"><h2 id="section-${s.id}">${s.heading}</h2>${s.body}</section>`)}
<p class="alt"><a href="${o.signOutUrl}">Sign out</a></p>`,
  });
}
