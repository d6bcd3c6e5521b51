import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { createRootCA, HOUR_MS, type RootCA } from '../../../controlplane/ca/authority.js';
import { CertificateAuthority, inMemoryStateFor } from '../../../controlplane/ca/certificate-authority.js';
import { createKeyAndCsr } from '../../../controlplane/ca/node-identity.js';
import { authorityObject, StoreCaState } from '../../../controlplane/ca/store-ca-state.js';
import { MemoryStore } from '../../../controlplane/store/memory-store.js';
import { InMemoryProposer } from '../../../controlplane/store/proposer.js';
import { TransactionBuilder } from '../../../controlplane/store/transaction.js';
import { Node, NodeRole } from '../../../src/api/gen/meshd/v1/objects.js';
import { ManualClock } from '../../../src/common/clock.js';

const CLUSTER = 'store-ca';

/**
 * Two CertificateAuthority instances over one replicated store stand for two
 * managers: what one writes through the proposer the other reads from the
 * store. (Real Raft between manager processes: test/integration/ca/.)
 */
function twoManagers(root: RootCA, clock: ManualClock) {
  const store = new MemoryStore();
  const proposer = new InMemoryProposer(store);
  const seed = inMemoryStateFor(root).authority();
  proposer.proposeSync(
    new TransactionBuilder(clock.nowMs()).create('ca', authorityObject(CLUSTER, seed)).build(),
  );
  const make = () =>
    new CertificateAuthority({
      state: new StoreCaState({ clusterId: CLUSTER, store, proposer, sync: async () => undefined, clock }),
      clock,
    });
  return { store, proposer, a: make(), b: make() };
}

describe('CA state in the replicated store', () => {
  let root: RootCA;
  let clock: ManualClock;
  before(async () => {
    root = await createRootCA({ clusterId: CLUSTER, nowMs: Date.now() });
    clock = new ManualClock(Date.now());
  });

  test('a join token rotated through one manager is refused by the other at once, the new one accepted', async () => {
    const { a, b } = twoManagers(root, clock);
    const old = a.joinTokens().worker;
    assert.equal(b.validateJoinToken(old), 'worker');
    const next = await a.rotateJoinToken('worker');
    assert.throws(() => b.validateJoinToken(old), /secret is wrong or was rotated out/);
    assert.equal(b.validateJoinToken(next), 'worker');
    assert.equal(b.joinTokens().manager, a.joinTokens().manager);
  });

  test('a certificate issued by one manager is known to the other; a removal there denies it here', async () => {
    const { a, b } = twoManagers(root, clock);
    const { csrPem } = await createKeyAndCsr();
    const issued = await a.issueForJoinToken(a.joinTokens().worker, csrPem, []);
    assert.equal(b.status(issued.nodeId).state, 'current');
    assert.equal(a.isDenied(issued.nodeId), false);
    await b.removeNode(issued.nodeId);
    assert.equal(a.isDenied(issued.nodeId), true);
    assert.equal(a.status(issued.nodeId).state, 'removed');
    await assert.rejects(
      a.renew({ nodeId: issued.nodeId, role: 'worker', clusterId: CLUSTER }, csrPem, []),
      /was removed from the cluster/,
    );
  });

  test('a denylist entry ends when the removed certificate would have expired, and is pruned later', async () => {
    const c = new ManualClock(Date.now());
    const { a, store } = twoManagers(root, c);
    const ca = new CertificateAuthority({ state: a.state, clock: c, lifetimeMs: HOUR_MS });
    const { csrPem } = await createKeyAndCsr();
    const issued = await ca.issueForJoinToken(ca.joinTokens().worker, csrPem, []);
    await ca.removeNode(issued.nodeId);
    c.advance(2 * HOUR_MS);
    assert.equal(ca.isDenied(issued.nodeId), false);
    await ca.removeNode('another-node');
    assert.equal(store.get('certificate', issued.nodeId), undefined, 'expired entry pruned');
    assert.equal(ca.isDenied('another-node'), true);
  });

  test("the wanted role is the Node object's: a promotion there makes status say renew, and renewal issues a manager certificate", async () => {
    const { a, b, proposer } = twoManagers(root, clock);
    const { csrPem } = await createKeyAndCsr();
    const issued = await a.issueForJoinToken(a.joinTokens().worker, csrPem, []);
    proposer.proposeSync(
      new TransactionBuilder(clock.nowMs())
        .create('node', Node.fromPartial({ meta: { id: issued.nodeId }, role: NodeRole.NODE_ROLE_WORKER }))
        .build(),
    );
    assert.equal(b.status(issued.nodeId).state, 'current');
    await b.setRole(issued.nodeId, 'manager');
    const status = a.status(issued.nodeId);
    assert.equal(status.state, 'renew');
    const renewed = await a.renew({ nodeId: issued.nodeId, role: 'worker', clusterId: CLUSTER }, csrPem, []);
    assert.equal(renewed.role, 'manager');
    assert.equal(b.status(issued.nodeId).state, 'current');
  });

  test('the whole CA state survives a store snapshot and restore (a restarted manager)', async () => {
    const { a, store } = twoManagers(root, clock);
    const { csrPem } = await createKeyAndCsr();
    const issued = await a.issueForJoinToken(a.joinTokens().manager, csrPem, []);
    await a.removeNode('gone');
    const restored = new MemoryStore();
    restored.restore(store.snapshot());
    const ca = new CertificateAuthority({
      state: new StoreCaState({
        clusterId: CLUSTER,
        store: restored,
        proposer: new InMemoryProposer(restored),
        sync: async () => undefined,
        clock,
      }),
      clock,
    });
    assert.deepEqual(ca.joinTokens(), a.joinTokens());
    assert.equal(ca.rootCertificatePem(), root.certPem);
    assert.equal(ca.status(issued.nodeId).state, 'current');
    assert.equal(ca.isDenied('gone'), true);
    // It can sign: the root key came with the state.
    const again = await ca.issueForJoinToken(ca.joinTokens().worker, (await createKeyAndCsr()).csrPem, []);
    assert.equal(again.role, 'worker');
  });

  test('a manager whose replica has no CA state yet answers with a clear retry error', async () => {
    const store = new MemoryStore();
    const ca = new CertificateAuthority({
      state: new StoreCaState({
        clusterId: CLUSTER,
        store,
        proposer: new InMemoryProposer(store),
        sync: async () => undefined,
        clock,
      }),
      clock,
    });
    assert.equal(ca.isReady(), false);
    assert.throws(() => ca.joinTokens(), /has not received the cluster CA state yet/);
    assert.equal(ca.authorizationOptions().isValidJoinToken?.('MESHTKN-1-x'), false);
  });
});
