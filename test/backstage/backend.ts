/**
 * A minimal Backstage backend, run as a child process by the Backstage tests: the auth backend
 * with the Gatehouse provider module and Backstage's stock oauth2-proxy provider, and the catalog
 * (for the users the resolvers look up).
 *
 *   BACKSTAGE_MODULES=<install>/node_modules node test/backstage/backend.ts --config app-config.yaml
 *
 * Backstage itself is installed outside the checkout (test/backstage/backstage.ts). A resolve
 * hook makes the checkout's files (this one, the module's sources) import their packages from
 * that install first, so there is one copy of each Backstage package, as in a real backend;
 * what the install does not have (`gatehouse/verify`) resolves from the checkout as usual.
 * GATEHOUSE_MODULE may name another build of the module (the packed one).
 */
import { existsSync } from 'node:fs';
import { registerHooks } from 'node:module';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const modules = process.env.BACKSTAGE_MODULES;
if (!modules) throw new Error('BACKSTAGE_MODULES must name the node_modules of a Backstage install');
const installParent = pathToFileURL(join(modules, '..', 'package.json')).href;
const checkout = new URL('../../', import.meta.url).href;
/** The package a bare specifier names (`@scope/name` or `name`), or undefined for any other specifier. */
const packageOf = (specifier: string) => /^(?:@[^/]+\/)?[^./:@][^/:]*/.exec(specifier)?.[0];

registerHooks({
  resolve(specifier, context, nextResolve) {
    const parent = context.parentURL;
    const name = packageOf(specifier);
    if (name && parent?.startsWith(checkout) && !parent.includes('/node_modules/') && existsSync(join(modules, name)))
      return nextResolve(specifier, { ...context, parentURL: installParent });
    return nextResolve(specifier, context);
  },
});

// Imported by name at run time: the checkout's type-check does not see the Backstage install.
const load = (name: string): Promise<unknown> => import(name);
const provider =
  process.env.GATEHOUSE_MODULE ?? new URL('../../packages/backstage-auth-provider/src/index.ts', import.meta.url).href;
const { createBackend } = (await load('@backstage/backend-defaults')) as {
  createBackend(): { add(feature: Promise<unknown>): void; start(): Promise<void> };
};
const backend = createBackend();
backend.add(load('@backstage/plugin-auth-backend'));
backend.add(load('@backstage/plugin-catalog-backend'));
// Backstage's stock oauth2-proxy provider, for the oauth2-proxy header preset's tests.
backend.add(load('@backstage/plugin-auth-backend-module-oauth2-proxy-provider'));
backend.add(load(provider));
await backend.start();
