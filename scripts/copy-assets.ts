import { copyFileSync, mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';

/** Files the compiled package reads at run time, copied next to the modules that read them. */
const out = resolve(process.argv[2] ?? 'dist');
const src = new URL('../src/', import.meta.url).pathname;
for (const asset of ['accounts/common-passwords.txt', 'mfa/passkeys-browser.js']) {
  mkdirSync(dirname(join(out, asset)), { recursive: true });
  copyFileSync(join(src, asset), join(out, asset));
}
