import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createRootCA } from '../../../controlplane/ca/authority.js';
import { CertificateAuthority, inMemoryStateFor } from '../../../controlplane/ca/certificate-authority.js';
import { createKeyAndCsr } from '../../../controlplane/ca/node-identity.js';
import { authorityObject, StoreCaState } from '../../../controlplane/ca/store-ca-state.js';
import type { ManagerNode } from '../../../controlplane/manager/manager-node.js';
import { TransactionBuilder } from '../../../controlplane/store/transaction.js';
import { systemClock } from '../../../src/common/clock.js';
import { ManagerCluster, waitFor } from './manager-fixture.js';

const CLUSTER = 'raft-ca';

/** The CA of one manager, its state in that manager's replica, writes through its Raft proposer. */
function caOf(m: ManagerNode): CertificateAuthority {
  return new CertificateAuthority({
    state: new StoreCaState({
      clusterId: CLUSTER,
      store: m.store,
      proposer: m.proposer,
      sync: () => m.linearizableRead(),
      clock: systemClock,
    }),
    clock: systemClock,
  });
}

describe('the CA over three Raft managers (in process, real WALs and mTLS)', () => {
  const cluster = new ManagerCluster({ controlLoop: false });
  before(async () => {
    await cluster.start();
    const leader = await cluster.leader();
    const root = await createRootCA({ clusterId: CLUSTER, nowMs: Date.now() });
    await leader.proposer.propose(
      new TransactionBuilder(Date.now())
        .create('ca', authorityObject(CLUSTER, inMemoryStateFor(root).authority()))
        .build(),
    );
  });
  after(async () => {
    await cluster.close();
  });

  test('a follower rotates a token through Raft; another follower refuses the old one at once; a removal is seen by all', async () => {
    const [f1, f2] = cluster.followers() as [ManagerNode, ManagerNode];
    const a = caOf(f1);
    const b = caOf(f2);
    await waitFor('the CA state on both followers', 5000, () =>
      a.isReady() && b.isReady() ? true : undefined,
    );
    const old = a.joinTokens().worker;
    await a.rotateJoinToken('worker');
    const { csrPem } = await createKeyAndCsr();
    // No wait: the join passes a ReadIndex barrier first.
    await assert.rejects(b.issueForJoinToken(old, csrPem, []), /secret is wrong or was rotated out/);
    const issued = await b.issueForJoinToken(b.joinTokens().worker, csrPem, []);
    await a.removeNode(issued.nodeId);
    await f2.linearizableRead();
    assert.equal(b.isDenied(issued.nodeId), true);
    assert.equal(caOf(await cluster.leader()).status(issued.nodeId).state, 'removed');
  });
});
