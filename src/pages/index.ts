export { html, raw, escapeHtml, SafeHtml } from './html.ts';
export { layout } from './layout.ts';
export { loginPage, registerPage, logoutPage, messagePage, summary, type Errors } from './forms.ts';
export { CSP, CSS, cspWithFormAction } from './styles.ts';
export { accountPage, type AccountSectionView } from './account.ts';
