import { type ChildProcess, spawn } from 'node:child_process';
import { CLI } from '../helpers/cli.ts';
import { eventually } from '../faults/services.ts';

// biome-ignore lint: a parsed log line, whatever its fields
export type Line = Record<string, any>;

/** A running `gatehouse serve` (listen.workers tests) and the lines it has logged, parsed. */
export class Node {
  readonly child: ChildProcess;
  readonly lines: Line[] = [];
  readonly output: string[] = [];
  readonly exited: Promise<number | null>;

  constructor(config: string, nodeFlags: string[] = []) {
    this.child = spawn(process.execPath, [...nodeFlags, CLI, 'serve', '--config', config], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let rest = '';
    this.child.stdout!.on('data', (d: Buffer) => {
      rest += d;
      const parts = rest.split('\n');
      rest = parts.pop()!;
      for (const p of parts) {
        this.output.push(p);
        try {
          this.lines.push(JSON.parse(p) as Line);
        } catch {
          // not a log line
        }
      }
    });
    this.child.stderr!.on('data', (d: Buffer) => this.output.push(String(d)));
    this.exited = new Promise((resolve) => this.child.once('exit', (code) => resolve(code)));
  }

  since(mark: number): Line[] {
    return this.lines.slice(mark);
  }

  /** The workers that logged a request line for `path` after `mark`. */
  servedBy(mark: number, path: string): Set<number> {
    return new Set(
      this.since(mark)
        .filter((l) => l.req?.path === path && l.status)
        .map((l) => l.worker as number),
    );
  }

  /** Worker id → pid of the workers that logged `start`. */
  started(): Map<number, number> {
    return new Map(this.lines.filter((l) => l.event === 'start' && l.worker !== 0).map((l) => [l.worker ?? 1, l.pid]));
  }

  /** Worker id → pid of the workers serving now (started, not exited). */
  live(): Map<number, number> {
    const live = new Map<number, number>();
    for (const l of this.lines) {
      if (l.event === 'start' && l.worker > 0) live.set(l.worker, l.pid);
      if ((l.event === 'worker_exit' || l.event === 'worker_stopped') && l.worker !== undefined) live.delete(l.worker);
    }
    return live;
  }

  /** The port of metrics.listen, from the `metrics_listening` line. */
  metricsPort(): number | undefined {
    const l = this.lines.find((x) => x.event === 'metrics_listening');
    return l ? Number(new URL(l.listen).port) : undefined;
  }

  until<T>(what: string, check: () => T | undefined | false, timeoutMs = 20_000): Promise<T> {
    return eventually(
      what,
      () => {
        if (this.child.exitCode !== null) throw new Error(`gatehouse exited: ${this.output.join('\n')}`);
        return check();
      },
      timeoutMs,
    );
  }
}
