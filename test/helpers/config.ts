import assert from 'node:assert/strict';
import { ConfigError, parseConfig } from '../../src/config/load.ts';

/** The smallest valid config text: one app on an https publicUrl. */
export const BASE_CONFIG = 'publicUrl: https://app.example.com\nupstream: http://127.0.0.1:3000\n';

/** The problems a config text is refused with (fails the test if it is accepted). */
export function problems(text: string, env: Record<string, string> = {}) {
  try {
    parseConfig(text, 'g.yaml', env);
  } catch (e) {
    assert.ok(e instanceof ConfigError, String(e));
    return e.problems;
  }
  assert.fail('expected a ConfigError');
}

/** The message a config text is refused with, every problem with its key (fails the test if it is accepted). */
export function refusal(text: string): string {
  try {
    parseConfig(text, 'gatehouse.yaml');
  } catch (e) {
    assert.ok(e instanceof ConfigError, String(e));
    return e.message;
  }
  assert.fail(`accepted:\n${text}`);
}
