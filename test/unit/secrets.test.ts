import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { loadSecrets, secretsFromKey } from '../../src/keys/secrets.ts';

const key = () => randomBytes(32).toString('base64');
const kv = () => {
  const m = new Map<string, string>();
  return {
    get: async (n: string) => m.get(n),
    set: async (n: string, v: string) => void m.set(n, v),
    putIfAbsent: async (n: string, v: string) => (m.has(n) ? m.get(n)! : (m.set(n, v), v)),
  };
};

describe('master key rotation (secrets.key, secrets.previousKeys)', () => {
  test('what the old key encrypted and authenticated still checks after the switch; new data uses the new key', async () => {
    const [a, b] = [key(), key()];
    const old = await loadSecrets({ key: a, previousKeys: [] }, kv());
    const ciphertext = old.encrypt('provider refresh token', 'ctx');
    const mac = old.mac('csrf', 'cookie-value');
    const rotated = await loadSecrets({ key: b, previousKeys: [a] }, kv());
    assert.equal(rotated.decrypt(ciphertext, 'ctx'), 'provider refresh token');
    assert.equal(rotated.decrypt(ciphertext, 'other ctx'), undefined, 'still bound to its context');
    assert.equal(rotated.verifyMac('csrf', 'cookie-value', mac), true);
    assert.equal(rotated.verifyMac('csrf', 'cookie-value', mac.slice(0, 22), 22), true, 'a truncated MAC too');
    assert.equal(rotated.verifyMac('csrf', 'other value', mac), false);
    assert.equal(rotated.verifyMac('device', 'cookie-value', mac), false, 'MAC keys stay per purpose');
    assert.notEqual(rotated.mac('csrf', 'cookie-value'), mac, 'new MACs use the new key');
    assert.equal(old.decrypt(rotated.encrypt('x', 'ctx'), 'ctx'), undefined, 'new ciphertext needs the new key');
    const dropped = await loadSecrets({ key: b, previousKeys: [] }, kv());
    assert.equal(dropped.decrypt(ciphertext, 'ctx'), undefined, 'once the old key is dropped, so is what it protected');
    assert.equal(dropped.verifyMac('csrf', 'cookie-value', mac), false);
  });

  test('keys shorter than 32 bytes are refused, naming the key', async () => {
    await assert.rejects(
      loadSecrets({ key: key(), previousKeys: ['c2hvcnQ='] }, kv()),
      /secrets\.previousKeys\[0\] must be at least 32 random bytes/,
    );
    assert.throws(() => secretsFromKey('abcd'), /at least 32 random bytes/);
  });
});
