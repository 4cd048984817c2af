/**
 * `npm run bench -- --profile`: Gatehouse runs under `node --cpu-prof`; when it stops, its
 * .cpuprofile is read back and only the samples taken while the bench measured it are kept
 * (start-up, registration and warm-ups left out). Prints where the time went: by function
 * (self time) and by place (a file of src/, a package, Node's own modules, V8's GC).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export interface ProfileWindow {
  pid: number;
  startUs: number;
  endUs: number;
}

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}

interface Profile {
  nodes: Node[];
  startTime: number;
  samples: number[];
  timeDeltas: number[];
}

/** Where a function lives, for the second table: src/x.ts, a package, node:x, or V8. */
function place(url: string, name: string): string {
  if (!url) return name.startsWith('(') ? name : '(native)';
  const nm = url.lastIndexOf('/node_modules/');
  if (nm !== -1) {
    const rest = url.slice(nm + 14).split('/');
    return rest[0]!.startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]!;
  }
  const src = url.indexOf('/src/');
  if (src !== -1) return url.slice(src + 1);
  if (url.startsWith('node:')) return url;
  return url.replace(/^file:\/\//, '');
}

export function summarizeProfiles(dir: string, windows: ProfileWindow[], top = 25): string {
  const pids = new Set(windows.map((w) => w.pid));
  let files: string[] = [];
  try {
    files = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile') && pids.has(Number(f.split('.')[3])));
  } catch {
    return `no CPU profile found in ${dir}`;
  }
  if (!files.length) return `no CPU profile of this run in ${dir} (did Gatehouse exit cleanly?)`;
  const byFunction = new Map<string, number>();
  const byPlace = new Map<string, number>();
  let total = 0;
  for (const file of files) {
    const pid = Number(file.split('.')[3]);
    const mine = windows.filter((w) => w.pid === pid);
    const p = JSON.parse(readFileSync(join(dir, file), 'utf8')) as Profile;
    const nodes = new Map(p.nodes.map((n) => [n.id, n]));
    let t = p.startTime;
    for (let i = 0; i < p.samples.length; i++) {
      t += p.timeDeltas[i] ?? 0;
      // A sample stands for the time until the next one.
      const dt = p.timeDeltas[i + 1] ?? 0;
      if (!mine.some((w) => t >= w.startUs && t < w.endUs)) continue;
      const n = nodes.get(p.samples[i]!)!;
      const { functionName, url, lineNumber } = n.callFrame;
      const name = functionName || '(anonymous)';
      const key = url ? `${name}  ${place(url, name)}:${lineNumber + 1}` : name;
      byFunction.set(key, (byFunction.get(key) ?? 0) + dt);
      const where = place(url, name);
      byPlace.set(where, (byPlace.get(where) ?? 0) + dt);
      total += dt;
    }
  }
  if (!total) return 'the CPU profile has no samples from the measured windows';
  const idle = byFunction.get('(idle)') ?? 0;
  const busy = total - idle;
  const rows = (m: Map<string, number>, n: number) =>
    [...m]
      .filter(([k]) => k !== '(idle)')
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(
        ([k, us]) => `  ${((100 * us) / busy).toFixed(1).padStart(5)}%  ${(us / 1000).toFixed(0).padStart(7)} ms  ${k}`,
      );
  return [
    `CPU profile of Gatehouse while measured (${files.join(', ')}): ${(busy / 1000).toFixed(0)} ms busy, ${((100 * idle) / total).toFixed(0)}% idle; percent of busy time, self`,
    'by function:',
    ...rows(byFunction, top),
    'by place:',
    ...rows(byPlace, 15),
  ].join('\n');
}
