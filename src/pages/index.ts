// pages/ (base): server-rendered HTML: the escaping template, the layout, accessible forms, the stylesheet,
// the page kit every feature's pages use (kit.ts), and a site's branding (brand.ts).
export { html, raw, escapeHtml, SafeHtml } from './html.ts';
export { layout } from './layout.ts';
export { loginPage, registerPage, logoutPage, messagePage, summary, type Errors } from './forms.ts';
export { CSP, CSS, cspWithFormAction, cspWithScripts } from './styles.ts';
export { accountPage, type AccountSectionView } from './account.ts';
export { BrandError, contrast, CARD, lookPage, makeLook, PLAIN_LOOK, serveLogo } from './brand.ts';
