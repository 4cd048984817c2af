import { hash } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * The demo app behind Gatehouse. It has no authentication code at all: it only reads the
 * headers Gatehouse adds, and shows them, so you can watch X-User-Id appear once you sign in.
 * A browser gets an HTML page; anything else (curl, fetch) and every /api/ path get JSON.
 */

const AUTH = '/.auth';

const esc = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const one = (v: string | string[] | undefined): string | undefined => (Array.isArray(v) ? v.join(', ') : v);

/** Headers Gatehouse sets to say who is signed in (X-User-*, X-Gatehouse-Assertion), and its forwarding headers. */
const isIdentity = (h: string) => h.startsWith('x-user-') || h.startsWith('x-gatehouse-');
const isForwarding = (h: string) => h.startsWith('x-forwarded-') || h === 'x-request-id' || h === 'forwarded';

const CSS = `
:root{color-scheme:light dark;--bg:#fff;--text:#1b1f24;--muted:#5b6470;--line:#d4d9e0;--accent:#2557d6;--id-bg:#fff3c4;--id-mark:#a36b00;--fw-bg:#eef2f7;--ok-bg:#e8f3ec;--ok-line:#1e6b3a;--anon-bg:#f1f3f5;--anon-line:#7c8591;--warn-bg:#fdecea;--warn:#b3261e;--focus:#a34e00}
@media (prefers-color-scheme:dark){:root{--bg:#121417;--text:#e8eaed;--muted:#a2a9b3;--line:#353a42;--accent:#7aa2ff;--id-bg:#3a3113;--id-mark:#f5c542;--fw-bg:#1e242d;--ok-bg:#173222;--ok-line:#8fd6a5;--anon-bg:#1c1f24;--anon-line:#7d8590;--warn-bg:#3a1d1b;--warn:#ff8a80;--focus:#f5b400}}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--text);font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
main{max-width:56rem;margin:0 auto;padding:1.5rem 1rem 3rem}
h1{font-size:1.75rem;margin:0}
h2{font-size:1.2rem;margin:2rem 0 .5rem}
.lede{color:var(--muted);margin:.25rem 0 1.25rem}
a{color:var(--accent)}
:focus-visible{outline:3px solid var(--focus);outline-offset:2px}
code,pre{font:.875rem/1.45 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
code{overflow-wrap:anywhere}
pre{white-space:pre-wrap;overflow-wrap:anywhere;margin:.5rem 0 0;padding:.75rem;border:1px solid var(--line);border-radius:6px}
.status{border-left:6px solid;border-radius:8px;padding:1rem 1.25rem}
.status h2{margin:0 0 .5rem}
.status.in{background:var(--ok-bg);border-color:var(--ok-line)}
.status.out{background:var(--anon-bg);border-color:var(--anon-line)}
.status.warn{background:var(--warn-bg);border-color:var(--warn)}
.status p{margin:.4rem 0}
dl.identity{display:grid;grid-template-columns:max-content 1fr;gap:.35rem 1rem;margin:.75rem 0}
dl.identity dt{font-weight:600}
dl.identity dd{margin:0}
dl.identity .note{display:block;color:var(--muted);font-size:.875rem}
.actions{display:flex;flex-wrap:wrap;gap:.5rem 1rem;margin:.75rem 0 0}
.button{display:inline-block;padding:.45rem .9rem;border-radius:6px;border:1px solid var(--accent);font-weight:600;text-decoration:none}
.button.primary{background:var(--accent);color:var(--bg)}
ul.try{padding-left:1.25rem}
ul.try li{margin:.35rem 0}
.muted{color:var(--muted)}
table{border-collapse:collapse;width:100%}
caption{text-align:left;color:var(--muted);padding:0 0 .5rem}
th,td{text-align:left;padding:.35rem .5rem;border-bottom:1px solid var(--line);vertical-align:top;font-size:.9rem}
th{white-space:nowrap;font-weight:600}
td{overflow-wrap:anywhere;font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.85rem}
tr.identity{background:var(--id-bg)}
tr.identity th{border-left:4px solid var(--id-mark)}
tr.forwarding{background:var(--fw-bg)}
.key{display:inline-block;padding:0 .4rem;border-radius:4px}
.key.identity{background:var(--id-bg);border-left:4px solid var(--id-mark)}
.key.forwarding{background:var(--fw-bg)}
@media (max-width:40rem){dl.identity{grid-template-columns:1fr}dl.identity dd{margin-bottom:.5rem}tr{display:block;border-bottom:1px solid var(--line);padding:.35rem 0}th,td{display:block;border:0;padding:.1rem .5rem}th{white-space:normal}}
`;
const CSP = `default-src 'none'; style-src 'sha256-${hash('sha256', CSS, 'base64')}'; img-src data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'`;

/** The payload of Gatehouse's signed assertion, decoded for display. Not verified here. */
function decodeAssertion(jwt: string | undefined): string | undefined {
  if (!jwt) return undefined;
  const [header, payload] = jwt.split('.');
  try {
    const part = (p: string | undefined) => JSON.parse(Buffer.from(p ?? '', 'base64url').toString('utf8'));
    return `${JSON.stringify(part(header), null, 2)}\n${JSON.stringify(part(payload), null, 2)}`;
  } catch {
    return undefined;
  }
}

function identityOf(req: http.IncomingMessage) {
  return {
    userId: one(req.headers['x-user-id']) ?? null,
    email: one(req.headers['x-user-email']) ?? null,
    name: one(req.headers['x-user-name']) ?? null,
    groups: one(req.headers['x-user-groups']) ?? null,
  };
}

/** The address the browser used: Gatehouse tells the app in X-Forwarded-Proto/-Host. */
function publicOrigin(req: http.IncomingMessage, fallback: string): string {
  const proto = one(req.headers['x-forwarded-proto']);
  const host = one(req.headers['x-forwarded-host']);
  return proto && host ? `${proto}://${host}` : fallback;
}

function page(req: http.IncomingMessage, gatehouseUrl: string): string {
  const id = identityOf(req);
  const path = req.url ?? '/';
  const here = encodeURIComponent(path);
  const origin = publicOrigin(req, gatehouseUrl);
  // Requests through Gatehouse always carry X-Forwarded-Host; without it someone reached the
  // app past Gatehouse, where nothing is protected and any X-User-Id could be forged.
  const direct = !req.headers['x-forwarded-host'];
  const assertion = decodeAssertion(one(req.headers['x-gatehouse-assertion']));

  const dd = (header: string, value: string | null, note: string) =>
    `<dt>${esc(header)}</dt><dd>${value === null ? '<span class="muted">(not sent)</span>' : value === '' ? '<span class="muted">(empty)</span>' : `<code>${esc(value)}</code>`}<span class="note">${note}</span></dd>`;

  const status = direct
    ? `<section class="status warn" aria-labelledby="status-h"><h2 id="status-h">You reached the app directly, not through Gatehouse</h2>
<p>Nothing is protected on this address, and anyone could send an <code>X-User-Id</code> header here. Open <a href="${esc(gatehouseUrl)}/">${esc(gatehouseUrl)}</a> instead.
In production, keep the app reachable only from Gatehouse (or verify <code>X-Gatehouse-Assertion</code>).</p></section>`
    : id.userId
      ? `<section class="status in" aria-labelledby="status-h"><h2 id="status-h">You are signed in as ${esc(id.name ?? id.email ?? id.userId)}</h2>
<p>Gatehouse checked your session and told this app who you are, in request headers:</p>
<dl class="identity">
${dd('X-User-Id', id.userId, 'Stable and opaque: key your data on this, never on the email.')}
${dd('X-User-Email', id.email, 'Sent because the app opted in (headers.email in demo/gatehouse.yaml); unverified addresses only with headers.unverifiedEmail.')}
${dd('X-User-Name', id.name, 'Opt-in too; not sent when the account has no name.')}
${dd('X-User-Groups', id.groups, 'Opt-in; comma-separated group names, for your own authorization.')}
</dl>
${
  assertion
    ? `<details><summary><code>X-Gatehouse-Assertion</code>: a signed JWT saying the same, decoded below</summary><pre>${esc(assertion)}</pre>
<p class="muted">This demo only decodes it. An app that can be reached without Gatehouse verifies it against <a href="/.well-known/jwks.json">/.well-known/jwks.json</a>.</p></details>`
    : ''
}
<p class="actions"><a class="button primary" href="${AUTH}/logout">Sign out</a> <a class="button" href="${AUTH}/me">What Gatehouse knows: ${AUTH}/me</a></p></section>`
      : `<section class="status out" aria-labelledby="status-h"><h2 id="status-h">Nobody is signed in</h2>
<p>Gatehouse sent no <code>X-User-Id</code>. You can see this page only because <code>/public/**</code> is public in <code>demo/gatehouse.yaml</code>; every other page sends you to sign in first.</p>
<p class="actions"><a class="button primary" href="${AUTH}/login?rd=${esc(here)}">Sign in</a> <a class="button" href="${AUTH}/register?rd=${esc(here)}">Create an account</a></p></section>`;

  const headerRows = Object.entries(req.headers)
    .sort(
      ([a], [b]) => Number(isIdentity(b)) - Number(isIdentity(a)) || Number(isForwarding(b)) - Number(isForwarding(a)),
    )
    .map(([k, v]) => {
      const cls = isIdentity(k) ? ' class="identity"' : isForwarding(k) ? ' class="forwarding"' : '';
      return `<tr${cls}><th scope="row">${esc(k)}</th><td>${esc(one(v) ?? '')}</td></tr>`;
    })
    .join('\n');

  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${id.userId ? 'Signed in' : 'Not signed in'} · Demo app</title>
<link rel="icon" href="data:,">
<style>${CSS}</style>
</head>
<body>
<main>
<h1>Demo app</h1>
<p class="lede">An app with no login code at all. Gatehouse sits in front of it, signs people in, and adds who they are to every request.</p>
${status}
<h2>Try this</h2>
<ul class="try">
<li><a href="/">/</a>: a protected page. Signed out, Gatehouse sends you to its sign-in page first, then back.</li>
<li><a href="/public/">/public/</a>: a public page. It works signed out too.</li>
<li><a href="/api/whoami">/api/whoami</a>: JSON from the app. Signed out, Gatehouse answers <code>401</code> instead of redirecting (<code>unauthenticated: "401"</code>).</li>
<li><a href="${AUTH}/me">${AUTH}/me</a>: Gatehouse's own JSON about your session. Paths under <code>${AUTH}/</code> never reach the app.</li>
<li><a href="${AUTH}/logout">${AUTH}/logout</a>: sign out.</li>
<li>Try to fake a user: <code>curl -H 'X-User-Id: admin' ${esc(origin)}/public/</code> shows <code>"userId": null</code>: Gatehouse removes every copy of its headers a client sends.</li>
</ul>
<h2 id="headers-h">Every header this app received</h2>
<table aria-labelledby="headers-h">
<caption>For <code>${esc(req.method ?? '')} ${esc(path)}</code>. <span class="key identity">Identity</span> and <span class="key forwarding">forwarding</span> headers were added by Gatehouse.</caption>
${headerRows}
</table>
</main>
</body>
</html>
`;
}

export function createDemoApp(options: { gatehouseUrl?: string } = {}): http.Server {
  const gatehouseUrl = options.gatehouseUrl ?? 'http://127.0.0.1:8080';
  return http.createServer((req, res) => {
    const accept = req.headers.accept ?? '';
    if (req.url?.startsWith('/api/') || !accept.includes('text/html')) {
      const body = JSON.stringify({ ...identityOf(req), path: req.url }, null, 2);
      res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
      return res.end(`${body}\n`);
    }
    const body = page(req, gatehouseUrl);
    res.writeHead(200, {
      'content-type': 'text/html; charset=utf-8',
      'cache-control': 'no-store',
      'content-security-policy': CSP,
      'x-content-type-options': 'nosniff',
    });
    res.end(body);
  });
}

/** Listens on loopback; rejects (instead of crashing) when the port is taken. */
export function startDemoApp(
  port: number,
  host = '127.0.0.1',
  options: { gatehouseUrl?: string } = {},
): Promise<{ server: http.Server; port: number }> {
  const server = createDemoApp(options);
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve({ server, port: (server.address() as AddressInfo).port });
    });
  });
}
