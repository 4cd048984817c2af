import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createRemoteJWKSet, decodeJwt, jwtVerify } from 'jose';
import { verifyAssertion } from '../../src/verify/index.ts';
import { Client, registerJson } from '../helpers/client.ts';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream.ts';

/**
 * Several apps behind one Gatehouse: crm and its /api on the publicUrl host (one origin),
 * wiki on a host of its own. Hosts are chosen by the Host header, as a browser would send them.
 */

let gh: TestGatehouse;
let wikiApp: TestUpstream;
let apiApp: TestUpstream;
let crmHost: string;
let wikiHost: string;

before(async () => {
  wikiApp = await startUpstream();
  apiApp = await startUpstream();
  gh = await startGatehouse(({ port, upstream }) => ({
    apps: [
      { name: 'crm', title: 'CRM', host: `127.0.0.1:${port}`, upstream, headers: { email: true } },
      { name: 'crm-api', host: `127.0.0.1:${port}`, pathPrefix: '/api', upstream: apiApp.url },
      {
        name: 'wiki',
        title: 'Wiki',
        host: `wiki.localhost:${port}`,
        upstream: wikiApp.url,
        routes: [{ path: '/public/**', access: 'public' }],
      },
    ],
  }));
  crmHost = `127.0.0.1:${gh.port}`;
  wikiHost = `wiki.localhost:${gh.port}`;
});
after(async () => {
  await gh.close();
  await Promise.all([wikiApp.close(), apiApp.close()]);
});

const onHost = (host: string) => {
  const c = new Client(gh.url);
  c.defaultHeaders = { host };
  return c;
};

describe('several apps behind one Gatehouse', () => {
  test('each host reaches its own app, each with its own audience; iss is always the top-level publicUrl', async () => {
    const crm = onHost(crmHost);
    const me = await registerJson(crm);
    await gh.gatehouse.store.users.update(me.id, { emailVerified: true });
    await crm.get('/deals');
    const crmToken = String(gh.upstream.last().headers['x-gatehouse-assertion']);
    await crm.get('/api/v1/deals');
    assert.equal(apiApp.last().url, '/api/v1/deals');
    const apiToken = String(apiApp.last().headers['x-gatehouse-assertion']);

    const wiki = onHost(wikiHost);
    await registerJson(wiki);
    await wiki.get('/page');
    const wikiToken = String(wikiApp.last().headers['x-gatehouse-assertion']);

    const jwks = createRemoteJWKSet(new URL(`${gh.url}/.well-known/jwks.json`));
    const check = (t: string, audience: string) =>
      jwtVerify(t, jwks, { issuer: gh.url, audience, typ: 'gatehouse-assertion+jwt' });
    assert.equal((await check(crmToken, 'crm')).payload.sub, me.id);
    assert.equal((await check(crmToken, 'crm')).payload.email, me.email, 'crm opted in to email');
    assert.equal((await check(apiToken, 'crm-api')).payload.email, undefined, 'crm-api did not');
    assert.equal((await check(apiToken, 'crm-api')).payload.email_verified, undefined);
    assert.equal((await check(wikiToken, 'wiki')).payload.iss, gh.url, 'iss is the publicUrl, not the wiki host');
  });

  test("a session made on crm's host is worth nothing on wiki's host: anonymous there, and the cookie is cleared", async () => {
    const crm = onHost(crmHost);
    await registerJson(crm);
    const stolen = crm.cookieHeader()!;
    const before = wikiApp.requests.length;
    const me = await onHost(wikiHost).get('/.auth/me', { cookie: stolen });
    assert.equal(me.status, 401);
    const page = await onHost(wikiHost).get('/page', { cookie: stolen });
    assert.equal(page.status, 401);
    assert.ok(
      page.cookies.some((c) => /^gatehouse=;.*Max-Age=0/i.test(c)),
      'the useless cookie is cleared',
    );
    assert.equal(wikiApp.requests.length, before, 'the wiki app saw nothing');
    const pub = await onHost(wikiHost).get('/public/x', { cookie: stolen });
    assert.equal(pub.status, 200);
    assert.equal(wikiApp.last().headers['x-user-id'], undefined, 'not signed in on a public wiki page either');
    assert.equal(wikiApp.last().headers['x-gatehouse-assertion'], undefined);
  });

  test("crm's assertion replayed at wiki: stripped by Gatehouse, and refused by wiki's own check (security.md #39)", async () => {
    const crm = onHost(crmHost);
    await registerJson(crm);
    await crm.get('/x');
    const crmToken = String(gh.upstream.last().headers['x-gatehouse-assertion']);
    const wiki = onHost(wikiHost);
    await registerJson(wiki);
    await wiki.get('/replay', { 'x-gatehouse-assertion': crmToken });
    const received = String(wikiApp.last().headers['x-gatehouse-assertion']);
    assert.notEqual(received, crmToken, 'the client copy never reaches the app');
    assert.equal(decodeJwt(received).aud, 'wiki');
    // An app reachable past Gatehouse that verifies still refuses it: the audience is crm.
    await assert.rejects(verifyAssertion(crmToken, { issuer: gh.url, audience: 'wiki' }), { code: 'wrong_audience' });
    await assert.rejects(
      verifyAssertion(crmToken, { issuer: gh.url, audience: 'crm-api' }),
      { code: 'wrong_audience' },
      'apps sharing an origin still have their own audiences',
    );
  });

  test('apps sharing one origin under path prefixes share the browser login (one origin, one security boundary)', async () => {
    const crm = onHost(crmHost);
    const me = await registerJson(crm);
    assert.equal((await crm.get('/api/me')).status, 200);
    assert.equal(apiApp.last().headers['x-user-id'], me.id);
  });

  test('the JWKS is served at the root of every site, identically, and never forwarded', async () => {
    const a = await onHost(crmHost).get('/.well-known/jwks.json');
    const b = await onHost(wikiHost).get('/.well-known/jwks.json');
    assert.equal(a.status, 200);
    assert.equal(b.text, a.text);
    assert.equal(b.headers.etag, a.headers.etag);
  });

  test("each app's login page lives on its own origin with its own title", async () => {
    const page = await onHost(wikiHost).html('/page');
    assert.equal(page.status, 302);
    assert.equal(page.location, `http://${wikiHost}/.auth/login?rd=%2Fpage`);
    const login = await onHost(wikiHost).html('/.auth/login');
    assert.match(login.text, /<title>[^<]*Wiki/);
  });
});
