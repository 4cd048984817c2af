import { after } from 'node:test';

/**
 * Loaded into every test file's process (`--import` in package.json's test scripts): a file whose
 * tests are done but which something keeps alive (a server, socket or timer left open) would hold
 * `npm test` until CI gives up. It is stopped three minutes after its last test and fails, naming
 * itself (the file's own after hooks run in that time: closing servers and browsers takes
 * seconds). Not `--test-force-exit`: with --test-concurrency it loses verdicts still in the pipe
 * to the runner, silently (nodejs/node#64833); here the leaking file fails and every verdict
 * arrives.
 */
const GRACE_MS = 3 * 60_000;

if (process.env.NODE_TEST_CONTEXT?.startsWith('child')) {
  after(() => {
    setTimeout(() => {
      process.stderr.write(
        `${process.argv[1]}: still running three minutes after its last test: something was left open (a server, socket or timer); stopped\n`,
      );
      process.exit(1);
    }, GRACE_MS).unref();
  });
}
