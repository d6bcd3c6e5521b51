import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { bootstrapCluster } from '../../../controlplane/allocator/config.js';
import { newService } from '../../../controlplane/orchestrator/service-ops.js';
import { TransactionBuilder } from '../../../controlplane/store/transaction.js';
import {
  Node,
  NodeAvailability,
  NodeRole,
  NodeState,
  ServiceMode,
  ServiceSpec,
  TaskState,
} from '../../../src/api/gen/meshd/v1/objects.js';
import { MeshError } from '../../../src/common/errors.js';
import { ManagerCluster, waitFor } from './manager-fixture.js';

const NOW = () => Date.now();

/**
 * `heardAhead`: no agents run here, so a state stamped in the future stands
 * in for their heartbeats and keeps a re-election on a loaded machine from
 * marking the node UNKNOWN (the take-over leaves nodes heard from since).
 */
function readyNode(id: string, heardAhead = false): Node {
  return Node.fromPartial({
    meta: { id },
    ...(heardAhead ? { stateChangedAt: { unixMs: Date.now() + 3_600_000 } } : {}),
    hostname: `host-${id}`,
    role: NodeRole.NODE_ROLE_WORKER,
    state: NodeState.NODE_STATE_READY,
    availability: NodeAvailability.NODE_AVAILABILITY_ACTIVE,
    resources: { nanoCpus: 4e9, memoryBytes: 4e9 },
  });
}

function webSpec(replicas: number): ServiceSpec {
  return ServiceSpec.fromPartial({
    name: 'web',
    mode: ServiceMode.SERVICE_MODE_REPLICATED,
    replicas,
    task: { command: ['app'] },
  });
}

describe('ManagerNode: three managers over mTLS', () => {
  const cluster = new ManagerCluster();
  before(async () => {
    await cluster.start();
  });
  after(async () => {
    await cluster.close();
  });

  it('a service created on the leader gets its tasks allocated and scheduled, and a follower sees them', async () => {
    const leader = await cluster.leader();
    await leader.proposer.propose(
      bootstrapCluster({ nowMs: NOW(), clusterId: 'c1', ingressNetworkId: 'ingress1' }).build(),
    );
    await leader.proposer.propose(
      new TransactionBuilder(NOW())
        .create('node', readyNode('w1', true))
        .create('node', readyNode('w2', true))
        .create('service', newService('svc1', webSpec(3)))
        .build(),
    );
    const placed = (m: typeof leader) => {
      const tasks = m.store.find('task', 'service', 'svc1');
      const ok =
        tasks.length === 3 &&
        tasks.every((t) => t.nodeId !== '' && t.status?.state === TaskState.TASK_STATE_ASSIGNED);
      return ok ? tasks : undefined;
    };
    const tasks = await waitFor('3 assigned tasks on the leader', 10_000, () => placed(leader));
    assert.deepEqual(new Set(tasks.map((t) => t.nodeId)), new Set(['w1', 'w2']));
    for (const f of cluster.followers()) {
      await waitFor(`3 assigned tasks on follower ${f.id}`, 10_000, () => placed(f));
      assert.ok(f.controlLoopPasses() === 0, 'a follower runs no control loop');
    }
    assert.ok(leader.controlLoopPasses() > 0);
  });

  it('a transaction the store refuses rejects the proposal with the store error, on leader and follower', async () => {
    const leader = await cluster.leader();
    const duplicate = new TransactionBuilder(NOW()).create('service', newService('svc2', webSpec(1))).build();
    await assert.rejects(leader.proposer.propose(duplicate), (err) => err instanceof MeshError);
    const follower = cluster.followers()[0]!;
    await assert.rejects(follower.proposer.propose(duplicate), (err) => err instanceof MeshError);
    // The log moved on: a later write from the follower still commits.
    await follower.proposer.propose(new TransactionBuilder(NOW()).create('node', readyNode('w3')).build());
    assert.ok(follower.store.get('node', 'w3'));
  });

  it('a linearizable read on a follower sees a write acknowledged on the leader', async () => {
    const leader = await cluster.leader();
    await leader.proposer.propose(new TransactionBuilder(NOW()).create('node', readyNode('w4')).build());
    const follower = cluster.followers()[0]!;
    await follower.linearizableRead();
    assert.ok(follower.store.get('node', 'w4'));
  });

  it('after the leader stops, the new leader takes over the control loop and scales the service', async () => {
    const old = await cluster.leader();
    const events: boolean[] = [];
    old.onLeadershipChange((leading) => events.push(leading));
    await cluster.stopOne(old.id);
    assert.deepEqual(events, [false]);
    const next = await cluster.leader();
    assert.notEqual(next.id, old.id);
    // The take-over marks the nodes it has not heard from UNKNOWN (a grace, not a reschedule).
    await waitFor('w4 UNKNOWN after the take-over', 10_000, () =>
      next.store.get('node', 'w4')?.state === NodeState.NODE_STATE_UNKNOWN ? true : undefined,
    );
    assert.equal(next.store.find('task', 'service', 'svc1').length, 3, 'no task replaced during the grace');
    // The agents report in (what the dispatcher writes), and the service is scaled.
    const back = new TransactionBuilder(NOW());
    for (const id of ['w1', 'w2']) {
      const n = structuredClone(next.store.get('node', id)!);
      n.state = NodeState.NODE_STATE_READY;
      back.update('node', n);
    }
    const svc = structuredClone(next.store.get('service', 'svc1')!);
    svc.spec!.replicas = 5;
    await next.proposer.propose(back.update('service', svc).build());
    await waitFor('5 tasks placed by the new leader', 10_000, () => {
      const live = next.store
        .find('task', 'service', 'svc1')
        .filter((t) => t.desiredState <= TaskState.TASK_STATE_RUNNING && t.nodeId !== '');
      return live.length === 5 ? live : undefined;
    });
  });
});
