// The V8 flags of `gatehouse serve` (docs/operations.md, "Memory"). Imports nothing, so main.ts can
// re-execute before loading the rest of Gatehouse.

/**
 * V8 flags `serve` runs with (docs/operations.md, "Memory"): V8 sizes its young generation for
 * the machine (64 MiB semi-spaces on a large one) and grows it to that under a burst of
 * connections, and keeps it; 8 MiB bounds that part of the RSS at a cost of a few more minor GCs.
 */
export const SERVE_V8_FLAGS = ['--max-semi-space-size=8'];

/**
 * Replaces this process (same pid, so signals and supervisors are unaffected) by one started
 * with SERVE_V8_FLAGS, unless the operator chose a young-generation size (in NODE_OPTIONS or on
 * node's command line) or set GATEHOUSE_V8_FLAGS=off. Only before anything is opened.
 */
export function reexecWithV8Flags(): void {
  if (process.env.GATEHOUSE_V8_FLAGS === 'off' || typeof process.execve !== 'function') return;
  const given = [...process.execArgv, ...(process.env.NODE_OPTIONS ?? '').split(/\s+/)];
  if (given.some((flag) => /^--(max-)?semi[-_]space[-_]size\b/.test(flag))) return;
  process.execve(
    process.execPath,
    [process.execPath, ...SERVE_V8_FLAGS, ...process.execArgv, ...process.argv.slice(1)],
    process.env,
  );
}
