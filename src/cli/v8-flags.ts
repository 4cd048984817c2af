// The V8 flags of `gatehouse serve` (docs/operations.md, "Memory"). Imports nothing, so main.ts can
// re-execute before loading the rest of Gatehouse.

/**
 * V8 flags `serve` runs with (docs/operations.md, "Memory"; bench/README.md), each with the
 * pattern that says the operator already chose it (either way):
 * - `--max-semi-space-size=8`: V8 sizes its young generation for the machine (64 MiB
 *   semi-spaces on a large one), grows it to that under a burst of connections, and keeps it;
 *   8 MiB bounds that part of the RSS at a cost of a few more minor GCs.
 * - `--no-allocation-site-pretenuring`: V8 otherwise learns, from a moment when many requests
 *   were in flight, to allocate per-request objects straight into the old generation; they die
 *   young there all the same, and only full collections (every 2-3 s at saturation, 10-15 ms
 *   each) reclaim them: p99 at saturation 9.5 → 4.3 ms, throughput +3 %.
 */
export const SERVE_V8_FLAGS: readonly { flag: string; chosen: RegExp }[] = [
  { flag: '--max-semi-space-size=8', chosen: /^--(max[-_])?semi[-_]space[-_]size\b/ },
  { flag: '--no-allocation-site-pretenuring', chosen: /^--(no[-_])?allocation[-_]site[-_]pretenuring\b/ },
];

/** The flags of SERVE_V8_FLAGS that `given` (node's own flags and NODE_OPTIONS) leaves to Gatehouse. */
export function serveV8Flags(given: readonly string[]): string[] {
  return SERVE_V8_FLAGS.filter(({ chosen }) => !given.some((flag) => chosen.test(flag))).map(({ flag }) => flag);
}

/**
 * Replaces this process (same pid, so signals and supervisors are unaffected) by one started
 * with the flags of SERVE_V8_FLAGS the operator did not choose (in NODE_OPTIONS or on node's
 * command line), unless GATEHOUSE_V8_FLAGS=off. Only before anything is opened.
 */
export function reexecWithV8Flags(): void {
  if (process.env.GATEHOUSE_V8_FLAGS === 'off' || typeof process.execve !== 'function') return;
  const flags = serveV8Flags([...process.execArgv, ...(process.env.NODE_OPTIONS ?? '').split(/\s+/)]);
  if (flags.length === 0) return;
  process.execve(
    process.execPath,
    [process.execPath, ...flags, ...process.execArgv, ...process.argv.slice(1)],
    process.env,
  );
}
