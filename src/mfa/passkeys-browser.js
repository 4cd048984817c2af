// Gatehouse's passkey buttons (served as /.auth/assets/passkeys.js, after @simplewebauthn/browser's
// bundle as /.auth/assets/webauthn.js). Each element with data-passkey asks data-options for the
// WebAuthn options, runs the browser's ceremony and posts the answer to data-verify (JSON, so no
// form token is needed: the endpoints accept only same-origin requests). Where the answer names a
// redirect, the browser goes there; recovery codes in the answer are shown first.
(() => {
  const lib = globalThis.SimpleWebAuthnBrowser;
  if (!lib) return;

  const post = async (url, body) => {
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json' },
      credentials: 'same-origin',
      body: JSON.stringify(body),
    });
    const data = await res.json().catch(() => ({}));
    if (!res.ok) throw new Error(data.message || `Failed (${res.status})`);
    return data;
  };

  const showCodes = (codes, next) => {
    const main = document.querySelector('main');
    main.replaceChildren();
    const h1 = document.createElement('h1');
    h1.textContent = 'Your recovery codes';
    const p = document.createElement('p');
    p.textContent =
      'Keep these somewhere safe. Each one signs you in once if you lose your second factor. They are shown only now.';
    const ul = document.createElement('ul');
    ul.className = 'plain codes';
    for (const c of codes) {
      const li = document.createElement('li');
      const code = document.createElement('code');
      code.textContent = c;
      li.append(code);
      ul.append(li);
    }
    const a = document.createElement('a');
    a.className = 'button';
    a.href = next;
    a.textContent = 'Continue';
    main.append(h1, p, ul, a);
  };

  const finish = (data) => {
    if (data.recoveryCodes) showCodes(data.recoveryCodes, data.redirect || location.href);
    else location.assign(data.redirect || location.href);
  };

  const run = async (el, conditional) => {
    const mode = el.dataset.passkey;
    const error = el.querySelector('[data-passkey-error]');
    if (error) error.hidden = true;
    const body = { mode, rd: el.dataset.rd };
    if (mode === 'signup') {
      // A new account without a password: the address and name come from the registration form.
      body.email = document.querySelector('#email')?.value;
      body.name = document.querySelector('#name')?.value;
    }
    const options = await post(el.dataset.options, body);
    if (mode === 'register' || mode === 'signup' || mode === 'invite') {
      const response = await lib.startRegistration({ optionsJSON: options });
      const name = el.querySelector('#passkey-name');
      return finish(await post(el.dataset.verify, { response, name: name ? name.value : undefined, rd: body.rd }));
    }
    // A click on the button while the autofill request was being prepared wins: starting the
    // autofill request now would abort the button's.
    if (conditional && el.dataset.clicked) return;
    if (conditional) el.dataset.autofill = 'waiting';
    const response = await lib.startAuthentication({ optionsJSON: options, useBrowserAutofill: conditional });
    finish(await post(el.dataset.verify, { response, rd: body.rd }));
  };

  const fail = (el, err) => {
    const error = el.querySelector('[data-passkey-error]');
    if (!error || (err && err.name === 'AbortError')) return;
    error.textContent =
      err && err.name === 'NotAllowedError' ? 'The passkey request was cancelled.' : String(err.message || err);
    error.hidden = false;
  };

  for (const el of document.querySelectorAll('[data-passkey]')) {
    const button = el.querySelector('button');
    if (!lib.browserSupportsWebAuthn()) {
      el.hidden = true;
      continue;
    }
    button.addEventListener('click', () => {
      el.dataset.clicked = 'true';
      run(el, false).catch((err) => fail(el, err));
    });
    // The sign-in page: offer passkeys in the email field's autofill (conditional mediation).
    if (el.dataset.passkey === 'signin' && document.querySelector('input[autocomplete~="webauthn"]'))
      lib.browserSupportsWebAuthnAutofill().then((ok) => ok && run(el, true).catch((err) => fail(el, err)));
  }
})();
