import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { Metrics, metricNames } from '../../src/metrics/index.ts';

test('the Grafana dashboard in examples/ is JSON and queries only metrics Gatehouse exports', () => {
  const dashboard = JSON.parse(readFileSync(new URL('../../examples/grafana-dashboard.json', import.meta.url), 'utf8'));
  const metrics = new Metrics({ version: '0.0.0-test' });
  const names = new Set(metricNames(metrics));
  const exprs: string[] = dashboard.panels.flatMap((p: { targets: { expr: string }[] }) =>
    p.targets.map((t) => t.expr),
  );
  assert.ok(exprs.length >= 15);
  const used = new Set<string>();
  for (const e of exprs)
    for (const m of e.matchAll(/\b((?:gatehouse|process|nodejs)_[a-z0-9_]+)\b/g))
      used.add(m[1]!.replace(/_(bucket|count|sum)$/, ''));
  for (const name of used) assert.ok(names.has(name), `${name} is not a metric Gatehouse exports`);
  for (const name of names)
    if (name.startsWith('gatehouse_')) assert.ok(used.has(name), `${name} has no panel on the dashboard`);
});
