import { describe, test, type SuiteContext } from 'node:test';

/**
 * What tests need from the machine besides Node (PostgreSQL, Redis, Chromium, nginx, Caddy),
 * and what happens when one is missing: the tests that need it do not run, and that is never
 * silent. They are reported as skipped tests with the reason, so node:test's summary counts them
 * ("skipped N", "# SKIP <reason>"), and a banner on stderr says what to start or install. Under
 * CI (CI=true) a missing one is a failure instead: CI must never go green by skipping.
 */

const inCI = (): boolean => ['true', '1'].includes((process.env.CI ?? '').toLowerCase());
const announced = new Set<string>();

/**
 * `false` when `problem` is undefined (`what` is there); otherwise the reason its tests are
 * skipped, for `{ skip }` of a test or of describeOrSkip(). Announced once per test file: a
 * banner, or under CI a failing test.
 */
export function requirement(what: string, problem: string | undefined, fix: string): string | false {
  if (problem === undefined) return false;
  const reason = `${problem} (${fix})`;
  if (!announced.has(what)) {
    announced.add(what);
    if (inCI()) {
      test(`${what} is available (required under CI)`, () => {
        throw new Error(`${reason}. Under CI=true this is a failure, not a skip (.ci/run prepares the machine).`);
      });
    } else {
      const bar = '!'.repeat(90);
      process.stderr.write(
        `\n${bar}\n!!! SKIPPING the tests that need ${what}: ${problem}.\n!!! To run them: ${fix}. Under CI=true this fails instead.\n${bar}\n\n`,
      );
    }
  }
  return inCI() ? `${reason}; failing: CI=true` : reason;
}

/**
 * describe() when `options.skip` is false; otherwise one test of the same name, skipped with the
 * reason. (node:test never runs the body of a skipped suite, so it cannot count the tests inside;
 * a suite skipped with describe's own `skip` shows in the summary as "skipped 0".)
 */
export function describeOrSkip(
  name: string,
  options: { skip: string | false; timeout?: number; concurrency?: boolean | number },
  fn: (s: SuiteContext) => void | Promise<void>,
): void {
  if (options.skip) test(name, { skip: options.skip });
  else describe(name, options, fn);
}
