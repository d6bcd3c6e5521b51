import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { bootstrapCluster } from '../../../controlplane/allocator/config.js';
import { runToFixpointAsync } from '../../../controlplane/orchestrator/control-loop.js';
import { newService } from '../../../controlplane/orchestrator/service-ops.js';
import { MemoryStore } from '../../../controlplane/store/memory-store.js';
import { InMemoryProposer } from '../../../controlplane/store/proposer.js';
import { TransactionBuilder } from '../../../controlplane/store/transaction.js';
import { Node, NodeAvailability, NodeState } from '../../../src/api/gen/meshd/v1/objects.js';
import { newIdFrom } from '../../../src/common/ids.js';
import { SeededRng } from '../../../src/common/rng.js';
import { replicated } from './helpers.js';

describe('control loop through a Proposer', () => {
  it('allocates, creates and places a service with every change committed through propose()', async () => {
    const store = new MemoryStore();
    const proposer = new InMemoryProposer(store);
    const rng = new SeededRng(1);
    const ctx = { nowMs: 1000, newId: () => newIdFrom(rng) };
    await proposer.propose(
      bootstrapCluster({ nowMs: 1000, clusterId: ctx.newId(), ingressNetworkId: ctx.newId() }).build(),
    );
    const node = Node.fromPartial({
      meta: { id: 'n1' },
      hostname: 'a',
      state: NodeState.NODE_STATE_READY,
      availability: NodeAvailability.NODE_AVAILABILITY_ACTIVE,
      resources: { nanoCpus: 1e9, memoryBytes: 1e9 },
    });
    await proposer.propose(
      new TransactionBuilder(1000)
        .create('node', node)
        .create('service', newService('s1', replicated('web', 2)))
        .build(),
    );
    const result = await runToFixpointAsync(store, proposer, ctx);
    assert.ok(result.settled);
    const tasks = store.find('task', 'service', 's1');
    assert.equal(tasks.length, 2);
    assert.ok(tasks.every((t) => t.nodeId === 'n1' && t.networks.length === 0));
    assert.equal(store.get('node', 'n1')!.lbAttachments.length, 1);
  });
});
