import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { ConfigSchema } from '../../src/config/schema.ts';
import { CLI, runCli } from '../helpers/cli.ts';
import { requirement } from '../helpers/requirements.ts';

/**
 * examples/gatehouse.service (docs/operations.md "Running under systemd"): systemd itself reads it
 * (systemd-analyze verify, and its offline security review), and what it counts on is what
 * `gatehouse serve` does.
 */

const unit = readFileSync(new URL('../../examples/gatehouse.service', import.meta.url), 'utf8');
const dir = mkdtempSync(join(tmpdir(), 'gatehouse-systemd-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const analyze = spawnSync('systemd-analyze', ['--version']);
const missing = requirement(
  'systemd-analyze',
  analyze.status === 0 ? undefined : 'systemd-analyze is not installed',
  'apt-get install systemd',
);
/** A key of the [Service] section (the last setting of it). */
const setting = (key: string) => [...unit.matchAll(new RegExp(`^${key}=(.*)$`, 'gm'))].at(-1)?.[1];

test('systemd reads the unit without a complaint, and rates its sandbox OK', { skip: missing }, () => {
  // Verified as installed, with the command at a path that exists here.
  const file = join(dir, 'gatehouse.service');
  writeFileSync(file, unit.replaceAll('/usr/local/bin/gatehouse', `${process.execPath} ${CLI}`));
  const verify = spawnSync('systemd-analyze', ['verify', file], { encoding: 'utf8' });
  assert.equal(verify.status, 0, verify.stderr);
  assert.equal(verify.stderr.trim(), '', 'no warning');
  const security = spawnSync('systemd-analyze', ['security', '--offline=true', file], { encoding: 'utf8' });
  const level = /Overall exposure level for gatehouse\.service: ([\d.]+) (\w+)/.exec(security.stdout);
  assert.ok(level, security.stdout + security.stderr);
  assert.ok(Number(level[1]) <= 3, `exposure ${level[1]} ${level[2]}: a setting of the sandbox was lost`);
});

test('what the unit counts on is what serve does: reload by SIGHUP, a drain within its stop timeout, exit 2 for a bad file', async () => {
  assert.equal(setting('ExecReload'), '/bin/kill -HUP $MAINPID');
  assert.equal(setting('KillSignal'), 'SIGTERM');
  assert.equal(setting('KillMode'), 'mixed', 'the primary of listen.workers drains its workers itself');
  const defaults = ConfigSchema.parse({ publicUrl: 'https://app.example.com', upstream: 'http://127.0.0.1:3000' });
  const drainS = (defaults.listen.timeouts.drain + defaults.listen.timeouts.drainDelay) / 1000;
  assert.ok(Number(setting('TimeoutStopSec')) > drainS + 5, `TimeoutStopSec against a drain of ${drainS} s`);
  const bad = join(dir, 'bad.yaml');
  writeFileSync(bad, 'publicUrl: nope\n');
  const served = await runCli(['serve', '--config', bad]);
  assert.equal(String(served.code), setting('RestartPreventExitStatus'), served.stderr);
  assert.match(
    setting('ExecStart') ?? '',
    /^\/usr\/local\/bin\/gatehouse serve --config \/etc\/gatehouse\/gatehouse\.yaml$/,
  );
});
