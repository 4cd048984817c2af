import { hash } from 'node:crypto';

/** One small stylesheet, inlined and allowed by its hash in the CSP: no external resources. */
export const CSS = `
:root{color-scheme:light dark;--bg:#f5f6f8;--card:#fff;--text:#1b1f24;--muted:#5b6470;--line:#d4d9e0;--field:#7c8591;--accent:#2557d6;--accent-hover:#1b45b0;--accent-text:#fff;--error:#b3261e;--error-bg:#fdecea;--ok-bg:#e8f3ec;--ok:#1e6b3a;--focus:#a34e00}
@media (prefers-color-scheme:dark){:root{--bg:#121417;--card:#1c1f24;--text:#e8eaed;--muted:#a2a9b3;--line:#353a42;--field:#7d8590;--accent:#7aa2ff;--accent-hover:#a3c0ff;--accent-text:#0c1630;--error:#ff8a80;--error-bg:#3a1d1b;--ok-bg:#173222;--ok:#8fd6a5;--focus:#f5b400}}
*{box-sizing:border-box}
body{margin:0;min-height:100vh;display:flex;align-items:flex-start;justify-content:center;background:var(--bg);color:var(--text);font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
main{width:100%;max-width:26rem;margin:max(1rem,8vh) 1rem 2rem;background:var(--card);border:1px solid var(--line);border-radius:12px;padding:clamp(1.25rem,6vw,2rem)}
.logo{display:block;max-height:3rem;max-width:12rem;margin:0 0 .75rem}
.app{margin:0 0 .25rem;color:var(--muted);font-size:.9rem;font-weight:600;letter-spacing:.02em;overflow-wrap:anywhere}
h1{margin:0 0 1.25rem;font-size:1.5rem;line-height:1.25}
p{margin:.5rem 0}
form{margin:0}
.field{margin:0 0 1rem}
label{display:block;font-weight:600;margin:0 0 .3rem}
.hint{display:block;color:var(--muted);font-size:.875rem;margin:-.15rem 0 .35rem}
input[type=email],input[type=password],input[type=text]{width:100%;padding:.65rem .75rem;font:inherit;color:inherit;background:transparent;border:1px solid var(--field);border-radius:8px}
input[aria-invalid=true]{border-color:var(--error);border-width:2px}
.error{color:var(--error);font-size:.9rem;font-weight:600;margin:.35rem 0 0}
.summary{background:var(--error-bg);color:var(--error);border:1px solid var(--error);border-radius:8px;padding:.75rem 1rem;margin:0 0 1.25rem}
.summary p{margin:0}
.summary ul{margin:.5rem 0 0;padding-left:1.25rem}
.summary a{color:inherit}
.notice{background:var(--ok-bg);color:var(--ok);border:1px solid var(--ok);border-radius:8px;padding:.75rem 1rem;margin:0 0 1.25rem}
.aside{margin:-.25rem 0 1rem;font-size:.9rem}
button,.button{display:inline-block;width:100%;padding:.7rem 1rem;font:inherit;font-weight:600;text-align:center;text-decoration:none;border:1px solid transparent;border-radius:8px;background:var(--accent);color:var(--accent-text);cursor:pointer}
button:hover,.button:hover{background:var(--accent-hover)}
button.secondary,.button.secondary{background:transparent;color:var(--text);border-color:var(--field)}
button.secondary:hover,.button.secondary:hover{background:var(--bg)}
button.danger{background:var(--error);color:#fff}
button.danger:hover{background:var(--error);filter:brightness(.9)}
.alt{margin:1.25rem 0 0;text-align:center;color:var(--muted)}
.links{margin:1.5rem 0 0;padding-top:1rem;border-top:1px solid var(--line);text-align:center;color:var(--muted);font-size:.85rem}
a{color:var(--accent)}
.who,code{overflow-wrap:anywhere}
:focus-visible{outline:3px solid var(--focus);outline-offset:2px}
.providers{display:grid;gap:.6rem;margin:0 0 1.25rem}
.providers .button{display:flex;align-items:center;justify-content:center;gap:.6rem}
.providers img{width:1.25rem;height:1.25rem;flex:none}
.divider{display:flex;align-items:center;gap:.75rem;margin:0 0 1.25rem;color:var(--muted);font-size:.9rem}
.divider::before,.divider::after{content:"";flex:1;border-top:1px solid var(--line)}
h2{font-size:1.1rem;margin:1.5rem 0 .5rem}
.list{list-style:none;margin:0;padding:0}
.list li{display:flex;align-items:center;justify-content:space-between;gap:.75rem;padding:.6rem 0;border-top:1px solid var(--line)}
.list li:last-child{border-bottom:1px solid var(--line)}
.list .info{min-width:0;overflow-wrap:anywhere}
.list .info small{display:block;color:var(--muted)}
.list form button,.inline button{width:auto;padding:.4rem .8rem}
code{font-size:.9em}
.fix{margin:.5rem 0;padding-left:1.25rem}
.fix li{margin:.4rem 0}
.details{margin:1rem 0;display:grid;grid-template-columns:max-content 1fr;gap:.35rem 1rem}
.details dt{font-weight:600;color:var(--muted)}
.details dd{margin:0;overflow-wrap:anywhere}
.usercode{font-size:1.25rem;letter-spacing:.12em;font-weight:600}
.warning{border-left:4px solid var(--focus);padding:.25rem 0 .25rem .75rem;margin:1rem 0}
.tag{display:inline-block;font-size:.8rem;color:var(--muted);border:1px solid var(--line);border-radius:4px;padding:0 .35rem}
.actions{display:grid;gap:.6rem;margin-top:1rem}
ul.plain,ul.grants,ul.sessions{margin:0;padding:0;list-style:none}
ul.grants li,ul.sessions li{border-top:1px solid var(--line);padding:.75rem 0}
table.activity{width:100%;border-collapse:collapse;font-size:.85rem}
table.activity th,table.activity td{text-align:left;vertical-align:top;padding:.35rem .3rem;border-top:1px solid var(--line);overflow-wrap:anywhere}
table.activity tr.failed td{color:var(--error)}
table.activity .ip{white-space:nowrap;color:var(--muted)}
@media (max-width:30rem){body{background:var(--card)}main{margin:0;border:0;border-radius:0}}
`;

export const CSS_HASH = `'sha256-${hash('sha256', CSS, 'base64')}'`;

export const CSP = `default-src 'none'; style-src ${CSS_HASH}; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'`;

/**
 * The CSP of a page whose forms lead on to other origins: browsers apply form-action to
 * where a form's POST is redirected, so a form that starts a sign-in at a provider names the
 * provider's authorization origin. `base`: the page's CSP to widen (default: the plain one).
 */
export function cspWithFormAction(origins: readonly string[], base = CSP): string {
  return origins.length ? base.replace(`form-action 'self'`, `form-action 'self' ${origins.join(' ')}`) : base;
}

/**
 * The CSP of a page that runs Gatehouse's own scripts (the passkey buttons: /.auth/assets/*.js)
 * and lets them call its own endpoints; no inline script, nothing from another origin.
 */
export function cspWithScripts(csp: string): string {
  return csp.replace(`default-src 'none';`, `default-src 'none'; script-src 'self'; connect-src 'self';`);
}
