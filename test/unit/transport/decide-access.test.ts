import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import {
  type AuthorizationOptions,
  decideAccess,
  type PeerInfo,
} from '../../../src/common/transport/authorization.js';

const opts: AuthorizationOptions = {
  clusterId: 'c1',
  policy: {},
  isDenied: (id) => id === 'gone',
  isValidJoinToken: (t) => t === 'good',
};
const manager: PeerInfo = {
  identity: { nodeId: 'm1', role: 'manager' as const, clusterId: 'c1' },
  notAfterMs: 1000,
};
const worker: PeerInfo = {
  identity: { nodeId: 'w1', role: 'worker' as const, clusterId: 'c1' },
  notAfterMs: 1000,
};

test('a method without an access rule is refused by default, whoever calls', () => {
  const d = decideAccess('/x/Y', undefined, manager, undefined, opts, 0);
  assert.deepEqual(d, {
    allowed: false,
    code: grpc.status.PERMISSION_DENIED,
    details: '/x/Y: method has no access rule; refused by default',
  });
});

test('each access level admits exactly its callers', () => {
  const anonymous: PeerInfo = { problem: 'no client certificate was presented' };
  const cases: [Parameters<typeof decideAccess>[1], PeerInfo, string | undefined, boolean][] = [
    ['public', anonymous, undefined, true],
    ['node', anonymous, undefined, false],
    ['node', worker, undefined, true],
    ['manager', worker, undefined, false],
    ['manager', manager, undefined, true],
    ['node-or-join-token', anonymous, 'good', true],
    ['node-or-join-token', anonymous, 'bad', false],
    ['node-or-join-token', worker, undefined, true],
    ['manager', anonymous, 'good', false],
  ];
  for (const [access, peer, token, allowed] of cases)
    assert.equal(
      decideAccess('/m', access, peer, token, opts, 0).allowed,
      allowed,
      `${access} ${JSON.stringify(peer)} ${token}`,
    );
});

test('a certificate that expires while its connection stays open is refused from then on', () => {
  assert.equal(decideAccess('/m', 'node', worker, undefined, opts, 1000).allowed, true);
  const d = decideAccess('/m', 'node', worker, undefined, opts, 1001);
  assert.equal(d.allowed, false);
  assert.match(d.allowed ? '' : d.details, /node w1: the client certificate has expired/);
});

test('another cluster and a removed node are refused with PERMISSION_DENIED', () => {
  const foreign: PeerInfo = { identity: { nodeId: 'x', role: 'manager' as const, clusterId: 'c2' } };
  const d1 = decideAccess('/m', 'node', foreign, undefined, opts, 0);
  assert.ok(
    !d1.allowed && d1.code === grpc.status.PERMISSION_DENIED && /cluster "c2", not "c1"/.test(d1.details),
  );
  const gone: PeerInfo = { identity: { nodeId: 'gone', role: 'manager' as const, clusterId: 'c1' } };
  const d2 = decideAccess('/m', 'node', gone, undefined, opts, 0);
  assert.ok(!d2.allowed && /node gone was removed from the cluster/.test(d2.details));
});
