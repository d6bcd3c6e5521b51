import assert from 'node:assert/strict';
import { test } from 'node:test';
import { JoinTokens, newJoinToken, parseJoinToken } from '../../../controlplane/ca/join-token.js';

const DIGEST = 'a'.repeat(64);

test('a join token reads MESHTKN-1-<root digest>-<secret> and parses back', () => {
  const token = newJoinToken(DIGEST);
  assert.match(token, /^MESHTKN-1-a{64}-[a-z0-9]{25}$/);
  assert.equal(parseJoinToken(token).rootDigestHex, DIGEST);
});

test('a malformed token is refused with what is accepted, without echoing it', () => {
  assert.throws(
    () => parseJoinToken('MESHTKN-1-secretvalue'),
    (err: Error) => {
      assert.match(err.message, /expected MESHTKN-1-<64 hex digits>-<25 characters a-z0-9>/);
      assert.doesNotMatch(err.message, /secretvalue/);
      return true;
    },
  );
});

test('worker and manager tokens grant their role; rotating one leaves the other working', () => {
  const tokens = new JoinTokens(DIGEST);
  const { worker, manager } = tokens.current();
  assert.equal(tokens.validate(worker, 0), 'worker');
  assert.equal(tokens.validate(manager, 0), 'manager');
  const next = tokens.rotate('worker');
  assert.throws(() => tokens.validate(worker, 0), /secret is wrong or was rotated out/);
  assert.equal(tokens.validate(next, 0), 'worker');
  assert.equal(tokens.validate(manager, 0), 'manager');
});

test('a token pinning another root is refused as such, and tokens stop at their expiry', () => {
  const tokens = new JoinTokens(DIGEST, {
    worker: newJoinToken(DIGEST),
    manager: newJoinToken(DIGEST),
    expiresAtMs: 1000,
  });
  assert.throws(() => tokens.validate(newJoinToken('b'.repeat(64)), 0), /pins a different root CA/);
  assert.equal(tokens.validate(tokens.current().worker, 999), 'worker');
  assert.throws(() => tokens.validate(tokens.current().worker, 1000), /expired/);
});
