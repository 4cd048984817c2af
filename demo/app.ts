import http from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * The demo app behind Gatehouse: it has no authentication code at all, and shows the
 * headers it receives, so you can watch X-User-Id appear once you sign in.
 */
const esc = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function page(req: http.IncomingMessage): string {
  const interesting = (h: string) => h.startsWith('x-user-') || h.startsWith('x-gatehouse-') || h.startsWith('x-forwarded-') || h === 'x-request-id';
  const rows = Object.entries(req.headers)
    .map(([k, v]) => `<tr${interesting(k) ? ' class="hi"' : ''}><th>${esc(k)}</th><td>${esc(String(v))}</td></tr>`)
    .join('');
  const user = req.headers['x-user-id'];
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>Demo app</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:52rem;margin:2rem auto;padding:0 1rem}table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.3rem .5rem;border-bottom:1px solid #ddd;vertical-align:top;font-size:.9rem}th{white-space:nowrap}td{overflow-wrap:anywhere}.hi{background:#fff6d5}.who{padding:1rem;border-radius:8px;background:${user ? '#e8f3ec' : '#f1f1f1'}}</style></head>
<body><h1>Demo app</h1>
<p class="who">${user ? `Gatehouse says you are <strong>${esc(String(req.headers['x-user-email'] ?? user))}</strong> (X-User-Id <code>${esc(String(user))}</code>).` : 'No X-User-Id: this page is public and you are not signed in.'}</p>
<p><a href="/">Home (protected)</a> · <a href="/public/">Public page</a> · <a href="/api/whoami">/api/whoami</a> (JSON) · <a href="/.auth/me">/.auth/me</a> · <a href="/.auth/logout">Sign out</a></p>
<h2>Headers this app received for ${esc(req.method ?? '')} ${esc(req.url ?? '')}</h2><table>${rows}</table></body></html>`;
}

export function createDemoApp(): http.Server {
  return http.createServer((req, res) => {
    if (req.url?.startsWith('/api/')) {
      const body = JSON.stringify({ userId: req.headers['x-user-id'] ?? null, email: req.headers['x-user-email'] ?? null, path: req.url });
      res.writeHead(200, { 'content-type': 'application/json' });
      return res.end(body);
    }
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(page(req));
  });
}

export function startDemoApp(port: number, host = '127.0.0.1'): Promise<{ server: http.Server; port: number }> {
  const server = createDemoApp();
  return new Promise((resolve) => server.listen(port, host, () => resolve({ server, port: (server.address() as AddressInfo).port })));
}
