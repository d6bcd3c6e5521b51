import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Dispatcher } from '../../../controlplane/dispatcher/server.js';
import { MemoryStore } from '../../../controlplane/store/memory-store.js';
import { InMemoryProposer } from '../../../controlplane/store/proposer.js';
import { TransactionBuilder } from '../../../controlplane/store/transaction.js';
import { Cluster, NodeState } from '../../../src/api/gen/meshd/v1/objects.js';
import { ManualClock } from '../../../src/common/clock.js';
import { SeededRng } from '../../../src/common/rng.js';
import { node } from './fixtures.js';

async function setup(unknownGraceMs: number) {
  const store = new MemoryStore();
  const proposer = new InMemoryProposer(store);
  const tx = new TransactionBuilder(0)
    .create('node', node('n1', '192.168.50.1', NodeState.NODE_STATE_UNKNOWN))
    .create('node', node('n2', '192.168.50.2', NodeState.NODE_STATE_DOWN));
  if (unknownGraceMs > 0)
    tx.create(
      'cluster',
      Cluster.fromPartial({ meta: { id: 'c' }, name: 'default', spec: { unknownGraceMs } }),
    );
  proposer.proposeSync(tx.build());
  const clock = new ManualClock(1_000_000);
  const d = new Dispatcher({ store, proposer, clock, rng: new SeededRng(1) });
  d.start();
  const settle = () => new Promise((resolve) => setImmediate(resolve));
  return { store, clock, d, settle };
}

test('after a leader change a silent node is declared DOWN only when the UNKNOWN grace (10 s) has passed', async () => {
  const { store, clock, d, settle } = await setup(0);
  clock.advance(9_900);
  await settle();
  assert.equal(store.get('node', 'n1')?.state, NodeState.NODE_STATE_UNKNOWN);
  clock.advance(200);
  await settle();
  assert.equal(store.get('node', 'n1')?.state, NodeState.NODE_STATE_DOWN);
  d.stop();
});

test('the cluster’s unknown_grace_ms replaces the default grace', async () => {
  const { store, clock, d, settle } = await setup(3_000);
  clock.advance(3_100);
  await settle();
  assert.equal(store.get('node', 'n1')?.state, NodeState.NODE_STATE_DOWN);
  d.stop();
});
