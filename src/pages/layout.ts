import { html, raw, type SafeHtml } from './html.ts';
import { CSS } from './styles.ts';

export function layout(o: { appTitle: string; heading: string; body: SafeHtml; pageTitle?: string }): string {
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>${o.pageTitle ?? o.heading} · ${o.appTitle}</title>
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
