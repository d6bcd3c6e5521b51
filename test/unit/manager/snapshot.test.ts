import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { StoreStateMachine } from '../../../controlplane/manager/store-state-machine.js';
import { MemoryStore } from '../../../controlplane/store/memory-store.js';
import { encodeTransaction, TransactionBuilder } from '../../../controlplane/store/transaction.js';
import { Node, NodeState } from '../../../src/api/gen/meshd/v1/objects.js';
import { MeshError } from '../../../src/common/errors.js';
import { ManagerCluster, waitFor } from './manager-fixture.js';

const node = (id: string) =>
  Node.fromPartial({ meta: { id }, hostname: `h-${id}`, state: NodeState.NODE_STATE_READY });
const createNode = (id: string) =>
  encodeTransaction(new TransactionBuilder(1000).create('node', node(id)).build());

describe('StoreStateMachine', () => {
  it('a snapshot restores to a byte-identical store', () => {
    const a = new StoreStateMachine(new MemoryStore());
    a.apply(1, createNode('n1'));
    a.apply(2, createNode('n2'));
    const b = new StoreStateMachine(new MemoryStore());
    b.restore(a.snapshot());
    assert.deepEqual(b.snapshot(), a.snapshot());
    assert.equal(b.store.index, 2);
    b.restore(new Uint8Array());
    assert.equal(b.store.list('node').length, 0, 'empty snapshot data is the empty store');
  });

  it('a refused transaction is an outcome for its proposer, not a failure of the log', () => {
    const sm = new StoreStateMachine(new MemoryStore());
    sm.apply(1, createNode('n1'));
    sm.apply(2, createNode('n1'));
    assert.equal(sm.takeOutcome(1), undefined);
    const refused = sm.takeOutcome(2);
    assert.ok(refused instanceof MeshError && refused.code === 'ALREADY_EXISTS');
    assert.equal(sm.takeOutcome(2), undefined, 'taken once');
    assert.equal(sm.store.list('node').length, 1);
  });
});

describe('ManagerNode snapshots over Raft', () => {
  const cluster = new ManagerCluster({
    snapshotEveryEntries: 5,
    keepEntriesAfterSnapshot: 0,
    controlLoop: false,
  });
  before(async () => {
    await cluster.start();
  });
  after(async () => {
    await cluster.close();
  });

  it('a follower that missed compacted entries catches up from the store snapshot, then restarts from disk', async () => {
    const leader = await cluster.leader();
    const lagging = cluster.followers()[0]!.id;
    await cluster.stopOne(lagging);
    for (let i = 0; i < 20; i++)
      await leader.proposer.propose(new TransactionBuilder(1000).create('node', node(`n${i}`)).build());
    const back = await cluster.startOne(lagging);
    await waitFor('the restarted follower to hold all 20 nodes', 10_000, () =>
      back.store.list('node').length === 20 ? true : undefined,
    );
    assert.deepEqual(back.replica().snapshot(), leader.replica().snapshot());
    await cluster.stopOne(lagging);
    const again = await cluster.startOne(lagging);
    assert.ok(again.store.list('node').length >= 15, 'restored from its own snapshot at start');
    await waitFor('the WAL tail applied after the restart', 10_000, () =>
      again.store.list('node').length === 20 ? true : undefined,
    );
  });
});
