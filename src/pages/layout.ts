import { html, raw, type SafeHtml } from './html.ts';
import { CSS } from './styles.ts';

/**
 * Pages with a form use "same-origin": under "no-referrer" a browser sends `Origin: null` with
 * the form's POST, which the cross-site check must refuse. Referrers still never leave the
 * origin. Pages whose URL may carry a secret (codes, reset tokens) keep "no-referrer".
 */
export type PageReferrerPolicy = 'no-referrer' | 'same-origin';

export function layout(o: {
  appTitle: string;
  heading: string;
  body: SafeHtml;
  pageTitle?: string;
  error?: boolean;
  referrerPolicy?: PageReferrerPolicy;
}): string {
  // "Error: " first in the title: the first thing a screen reader says after a failed submit.
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="${o.referrerPolicy ?? 'no-referrer'}">
<meta name="robots" content="noindex">
<title>${o.error ? 'Error: ' : ''}${o.pageTitle ?? o.heading} · ${o.appTitle}</title>
<link rel="icon" href="data:,">
<style>${raw(CSS)}</style>
</head>
<body>
<main>
<p class="app">${o.appTitle}</p>
<h1>${o.heading}</h1>
${o.body}
</main>
</body>
</html>
`.value;
}
