import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseConstraints } from '../../../controlplane/scheduler/constraints.js';
import { planScheduling } from '../../../controlplane/scheduler/scheduler.js';
import { MemoryStore } from '../../../controlplane/store/memory-store.js';
import { TransactionBuilder } from '../../../controlplane/store/transaction.js';
import { PublishMode } from '../../../src/api/gen/meshd/v1/dataplane.js';
import {
  NodeAvailability,
  NodeRole,
  NodeState,
  type Task,
  TaskState,
  type TaskTemplate,
} from '../../../src/api/gen/meshd/v1/objects.js';
import { node, port, service } from '../allocator/fixtures.js';

function pendingTask(
  id: string,
  serviceId: string,
  slot: number,
  spec: Partial<TaskTemplate> = {},
  nodeId = '',
): Task {
  return {
    meta: { id, version: undefined, createdAt: undefined, updatedAt: undefined },
    serviceId,
    slot,
    nodeId,
    desiredState: TaskState.TASK_STATE_RUNNING,
    status: { state: TaskState.TASK_STATE_PENDING, message: '', err: '', timestamp: undefined },
    networks: [],
    specVersion: 1,
    spec: {
      command: [],
      env: [],
      reservations: undefined,
      restart: undefined,
      health: undefined,
      placement: undefined,
      forceUpdate: 0,
      ...spec,
    },
    hostPorts: [],
    startAfter: undefined,
    createdByUpdate: false,
    restartAttempts: 0,
    restartWindowStart: undefined,
  };
}

function setup(
  nodes: ReturnType<typeof node>[],
  tasks: Task[],
  extra?: (tx: TransactionBuilder) => void,
): MemoryStore {
  const store = new MemoryStore();
  const tx = new TransactionBuilder(0);
  for (const n of nodes) tx.create('node', n);
  for (const t of tasks) tx.create('task', t);
  extra?.(tx);
  store.apply(tx.build());
  const plan = planScheduling(store, 1000);
  if (plan !== undefined) store.apply(plan.build());
  return store;
}

function spread(store: MemoryStore): Record<string, number> {
  const out: Record<string, number> = {};
  for (const t of store.list('task'))
    if (t.status?.state === TaskState.TASK_STATE_ASSIGNED) out[t.nodeId] = (out[t.nodeId] ?? 0) + 1;
  return out;
}

function tasks(n: number, spec: Partial<TaskTemplate> = {}, serviceId = 's'): Task[] {
  return Array.from({ length: n }, (_, i) => pendingTask(`${serviceId}-${i + 1}`, serviceId, i + 1, spec));
}

function messages(store: MemoryStore): string[] {
  return store
    .list('task')
    .filter((t) => t.status?.state === TaskState.TASK_STATE_PENDING)
    .map((t) => t.status!.message);
}

describe('scheduler: spread', () => {
  it('spreads a service evenly: 6 tasks on 3 nodes go 2 per node', () => {
    assert.deepEqual(spread(setup([node('a'), node('b'), node('c')], tasks(6))), { a: 2, b: 2, c: 2 });
  });

  it('prefers the node with fewest tasks overall when service counts tie', () => {
    const busy = [pendingTask('o1', 'other', 1), pendingTask('o2', 'other', 2)].map((t) => ({
      ...t,
      nodeId: 'a',
      status: { ...t.status!, state: TaskState.TASK_STATE_RUNNING },
    }));
    const store = setup([node('a'), node('b')], [...busy, ...tasks(1)]);
    assert.equal(store.get('task', 's-1')!.nodeId, 'b');
  });

  it('spreads over placement preference values first: zone a (1 node) gets as many as zone b (3 nodes)', () => {
    const nodes = [
      node('a1', { labels: { zone: 'a' } }),
      node('b1', { labels: { zone: 'b' } }),
      node('b2', { labels: { zone: 'b' } }),
      node('b3', { labels: { zone: 'b' } }),
    ];
    const store = setup(
      nodes,
      tasks(4, {
        placement: { constraints: [], preferences: [{ spread: 'node.labels.zone' }], maxReplicasPerNode: 0 },
      }),
    );
    assert.equal(spread(store)['a1'], 2);
  });

  it('puts nodes where the service failed recently last', () => {
    const failed = {
      ...pendingTask('f1', 's', 9),
      nodeId: 'a',
      desiredState: TaskState.TASK_STATE_SHUTDOWN,
      status: { state: TaskState.TASK_STATE_FAILED, message: 'exit 1', err: '', timestamp: { unixMs: 900 } },
    };
    const store = setup([node('a'), node('b')], [failed, ...tasks(1)]);
    assert.equal(store.get('task', 's-1')!.nodeId, 'b');
  });
});

describe('scheduler: filters', () => {
  it('places only on nodes that are ready and active, and says how many were rejected and why', () => {
    const nodes = [
      node('down', { state: NodeState.NODE_STATE_DOWN }),
      node('drain', { availability: NodeAvailability.NODE_AVAILABILITY_DRAIN }),
      node('pause', { availability: NodeAvailability.NODE_AVAILABILITY_PAUSE }),
    ];
    const store = setup(nodes, tasks(1));
    assert.deepEqual(messages(store), [
      'no suitable node (node not ready on 1 node; node drained or paused on 2 nodes)',
    ]);
  });

  it('honours == and != constraints on id, hostname, role and labels', () => {
    const nodes = [
      node('a', { labels: { zone: 'x' } }),
      node('b', { labels: { zone: 'y' } }),
      node('m', { role: NodeRole.NODE_ROLE_MANAGER, labels: { zone: 'x' } }),
    ];
    const placement = (c: string[]) => ({
      placement: { constraints: c, preferences: [], maxReplicasPerNode: 0 },
    });
    assert.deepEqual(
      spread(setup(nodes, tasks(2, placement(['node.labels.zone==x', 'node.role!=manager'])))),
      { a: 2 },
    );
    assert.deepEqual(spread(setup(nodes, tasks(2, placement(['node.hostname == b'])))), { b: 2 });
    assert.deepEqual(spread(setup(nodes, tasks(1, placement(['node.id==m'])))), { m: 1 });
    const none = setup(nodes, tasks(1, placement(['node.labels.zone==z'])));
    assert.deepEqual(messages(none), [
      'no suitable node (constraint "node.labels.zone==z" not met on 3 nodes)',
    ]);
  });

  it('refuses a node without the reserved resources', () => {
    const need = { reservations: { nanoCpus: 3e9, memoryBytes: 0 } };
    const store = setup([node('a'), node('b')], tasks(3, need));
    assert.deepEqual(spread(store), { a: 1, b: 1 });
    assert.deepEqual(messages(store), ['no suitable node (insufficient resources on 2 nodes)']);
  });

  it('places at most max-replicas-per-node tasks of a service on one node', () => {
    const store = setup(
      [node('a'), node('b')],
      tasks(5, { placement: { constraints: [], preferences: [], maxReplicasPerNode: 2 } }),
    );
    assert.deepEqual(spread(store), { a: 2, b: 2 });
    assert.deepEqual(messages(store), ['no suitable node (max replicas per node (2) reached on 2 nodes)']);
  });

  it('needs a host-mode published port free on the node', () => {
    const store = setup([node('a'), node('b')], tasks(3), (tx) =>
      tx.create(
        'service',
        service('s', {
          endpoint: { mode: 0, ports: [port(80, 8080, { publishMode: PublishMode.PUBLISH_MODE_HOST })] },
        }),
      ),
    );
    assert.deepEqual(spread(store), { a: 1, b: 1 });
    assert.deepEqual(messages(store), ['no suitable node (host port 8080/tcp in use on 2 nodes)']);
    assert.equal(store.get('task', 's-1')!.hostPorts[0]?.publishedPort, 8080);
  });

  it('checks a global task against its own node only', () => {
    const bound = pendingTask('g1', 'g', 0, {}, 'a');
    const store = setup(
      [node('a', { availability: NodeAvailability.NODE_AVAILABILITY_DRAIN }), node('b')],
      [bound],
    );
    assert.deepEqual(messages(store), ['no suitable node (node drained or paused on node a)']);
  });

  it('does not rewrite a PENDING task whose reason has not changed', () => {
    const store = setup([node('a', { state: NodeState.NODE_STATE_DOWN })], tasks(1));
    assert.equal(planScheduling(store, 2000), undefined);
  });

  it('says so when the cluster has no nodes', () => {
    assert.deepEqual(messages(setup([], tasks(1))), ['no suitable node (no nodes in the cluster)']);
  });
});

describe('scheduler: constraints syntax', () => {
  it('refuses a malformed constraint naming the field and the accepted form', () => {
    assert.throws(
      () => parseConstraints(['zone=a']),
      /task\.placement\.constraints\[0\] must look like "node\.labels\.KEY==VALUE"/,
    );
  });
});
