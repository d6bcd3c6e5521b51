import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { bootstrapCluster } from '../../../controlplane/allocator/config.js';
import { certificateObject } from '../../../controlplane/ca/store-ca-state.js';
import { ControlApi } from '../../../controlplane/controlapi/control-api.js';
import { runToFixpoint } from '../../../controlplane/orchestrator/control-loop.js';
import { MemoryStore } from '../../../controlplane/store/memory-store.js';
import { InMemoryProposer } from '../../../controlplane/store/proposer.js';
import { TransactionBuilder } from '../../../controlplane/store/transaction.js';
import {
  CreateServiceRequest,
  GetClusterRequest,
  GetNodeRequest,
  ListNodesRequest,
  ListTasksRequest,
  UpdateNodeRequest,
} from '../../../src/api/gen/meshd/v1/control.js';
import { Protocol } from '../../../src/api/gen/meshd/v1/dataplane.js';
import {
  EndpointSpec,
  Node,
  NodeAvailability,
  NodeRole,
  NodeState,
  ServiceMode,
  ServiceSpec,
  TaskState,
} from '../../../src/api/gen/meshd/v1/objects.js';
import { ManualClock } from '../../../src/common/clock.js';
import { MeshError, type ValidationError } from '../../../src/common/errors.js';

/** One replica, no Raft: the API's rules over a real store and the InMemoryProposer. */
function setup() {
  const store = new MemoryStore();
  const proposer = new InMemoryProposer(store);
  let reads = 0;
  let n = 0;
  const api = new ControlApi(
    {
      store,
      proposer,
      linearizableRead: async () => {
        reads++;
      },
    },
    { clock: new ManualClock(1000), newId: () => `id${String(++n).padStart(3, '0')}` },
  );
  proposer.proposeSync(bootstrapCluster({ nowMs: 1000, clusterId: 'c1', ingressNetworkId: 'ing' }).build());
  const tx = new TransactionBuilder(1000);
  for (const [id, host] of [
    ['nodeaaa1', 'alpha'],
    ['nodeaab2', 'beta'],
  ] as const)
    tx.create(
      'node',
      Node.fromPartial({
        meta: { id },
        hostname: host,
        role: NodeRole.NODE_ROLE_WORKER,
        state: NodeState.NODE_STATE_READY,
        availability: NodeAvailability.NODE_AVAILABILITY_ACTIVE,
        resources: { nanoCpus: 4e9, memoryBytes: 4e9 },
      }),
    );
  proposer.proposeSync(tx.build());
  return { store, proposer, api, reads: () => reads };
}

function spec(name: string, replicas: number, extra: Partial<ServiceSpec> = {}): ServiceSpec {
  return ServiceSpec.fromPartial({
    name,
    mode: ServiceMode.SERVICE_MODE_REPLICATED,
    replicas,
    task: { command: ['app'] },
    ...extra,
  });
}

const web = (publishedPort = 8080) =>
  spec('web', 2, {
    endpoint: EndpointSpec.fromPartial({
      ports: [{ targetPort: 80, publishedPort, protocol: Protocol.PROTOCOL_TCP }],
    }),
  });

function fails(code: string, field: string | undefined, text: RegExp) {
  return (err: unknown) => {
    assert.ok(err instanceof MeshError, `expected a MeshError, got ${String(err)}`);
    assert.equal(err.code, code);
    if (field !== undefined) assert.equal((err as ValidationError).field, field);
    assert.match(err.message, text);
    assert.ok(!err.message.includes('\n'), 'one line');
    return true;
  };
}

describe('ControlApi rules', () => {
  it('creates a service with network names resolved to IDs, and the loop places its tasks', async () => {
    const { api, store, proposer } = setup();
    await api.createNetwork({ name: 'app', subnet: '', options: {}, labels: {} });
    const { service } = await api.createService({ spec: { ...web(), networks: ['app'] } });
    assert.deepEqual(service?.spec?.networks, [store.find('network', 'name', 'app')[0]!.meta!.id]);
    runToFixpoint(store, (tx) => proposer.proposeSync(tx), { nowMs: 1000, newId: () => `t${Math.random()}` });
    const { tasks } = await api.listTasks(ListTasksRequest.fromPartial({ service: 'web' }));
    assert.equal(tasks.length, 2);
    assert.ok(tasks.every((t) => t.status?.state === TaskState.TASK_STATE_ASSIGNED));
  });

  it('a bad spec is refused with the field named and nothing written', async () => {
    const { api, store } = setup();
    const before = store.index;
    await assert.rejects(
      api.createService({ spec: spec('web', 20_000) }),
      fails('INVALID_ARGUMENT', 'replicas', /replicas must be an integer 0\.\.10000/),
    );
    await assert.rejects(
      api.createService(CreateServiceRequest.fromPartial({})),
      fails('INVALID_ARGUMENT', 'spec', /spec is required/),
    );
    await assert.rejects(
      api.createService({ spec: { ...web(), networks: ['nope'] } }),
      fails('NOT_FOUND', undefined, /no network "nope"; `meshctl network ls` lists them/),
    );
    assert.equal(store.index, before);
  });

  it('a published port another service holds is refused naming the holder', async () => {
    const { api } = setup();
    await api.createService({ spec: web(8080) });
    await assert.rejects(
      api.createService({ spec: { ...web(8080), name: 'api' } }),
      fails('INVALID_ARGUMENT', 'endpoint.ports[0].published_port', /already published by service "web"/),
    );
  });

  it('a duplicate service or network name is ALREADY_EXISTS', async () => {
    const { api } = setup();
    await api.createService({ spec: web() });
    await assert.rejects(
      api.createService({ spec: web(9090) }),
      fails('ALREADY_EXISTS', undefined, /"web" already exists/),
    );
    await assert.rejects(
      api.createNetwork({ name: 'ingress', subnet: '', options: {}, labels: {} }),
      fails('ALREADY_EXISTS', undefined, /network "ingress" already exists/),
    );
    await assert.rejects(
      api.createNetwork({ name: 'x', subnet: '10.0.0.1/24', options: {}, labels: {} }),
      fails('INVALID_ARGUMENT', 'subnet', /host bits set/),
    );
  });

  it('nodes are found by ID, hostname or unique ID prefix; unknown and ambiguous refs are errors', async () => {
    const { api } = setup();
    assert.equal(
      (await api.getNode(GetNodeRequest.fromPartial({ node: 'beta' }))).node?.meta?.id,
      'nodeaab2',
    );
    assert.equal(
      (await api.getNode(GetNodeRequest.fromPartial({ node: 'nodeaaa' }))).node?.hostname,
      'alpha',
    );
    await assert.rejects(
      api.getNode(GetNodeRequest.fromPartial({ node: 'ghost' })),
      fails('NOT_FOUND', undefined, /no node "ghost"/),
    );
    await assert.rejects(
      api.getNode(GetNodeRequest.fromPartial({ node: 'nodeaa' })),
      fails('INVALID_ARGUMENT', 'node', /matches 2 nodes/),
    );
  });

  it('update with a stale version is a VERSION_CONFLICT; version 0 means "the current one"', async () => {
    const { api } = setup();
    const { service } = await api.createService({ spec: web() });
    const v = service!.meta!.version!.index;
    await api.updateService({ service: 'web', version: v, spec: { ...web(), replicas: 3 } });
    await assert.rejects(
      api.updateService({ service: 'web', version: v, spec: { ...web(), replicas: 4 } }),
      fails('VERSION_CONFLICT', undefined, /read it again and retry/),
    );
    const scaled = await api.updateService({ service: 'web', version: 0, spec: { ...web(), replicas: 4 } });
    assert.equal(scaled.service?.spec?.replicas, 4);
  });

  it('changing only replicas scales without a rollout; changing the task starts one', async () => {
    const { api } = setup();
    await api.createService({ spec: web() });
    const scaled = (await api.updateService({ service: 'web', version: 0, spec: { ...web(), replicas: 5 } }))
      .service!;
    assert.equal(scaled.specVersion, 1);
    const changed = (
      await api.updateService({
        service: 'web',
        version: 0,
        spec: { ...web(), replicas: 5, task: { command: ['v2'] } } as ServiceSpec,
      })
    ).service!;
    assert.equal(changed.specVersion, 2);
    const back = (await api.rollbackService({ service: 'web', version: 0 })).service!;
    assert.deepEqual(back.spec?.task?.command, ['app']);
    await assert.rejects(
      api.updateService({ service: 'web', version: 0, spec: { ...web(), name: 'other' } }),
      fails('INVALID_ARGUMENT', 'spec.name', /cannot be renamed/),
    );
  });

  it('node update validates availability and labels; a node that is up is only removed with force, and its certificate is denylisted with it', async () => {
    const { api, store, proposer } = setup();
    proposer.proposeSync(
      new TransactionBuilder(1000)
        .create(
          'certificate',
          certificateObject({
            nodeId: 'nodeaab2',
            role: 'worker',
            notAfterMs: 90 * 86_400_000,
            rootDigestHex: 'ab',
            removed: false,
          }),
        )
        .build(),
    );
    const { node } = await api.updateNode({
      node: 'alpha',
      version: 0,
      availability: NodeAvailability.NODE_AVAILABILITY_DRAIN,
      labelsAdd: { zone: 'a' },
      labelsRemove: [],
    });
    assert.equal(node?.availability, NodeAvailability.NODE_AVAILABILITY_DRAIN);
    assert.deepEqual(node?.labels, { zone: 'a' });
    await assert.rejects(
      api.updateNode({
        node: 'alpha',
        version: 0,
        availability: 9 as NodeAvailability,
        labelsAdd: {},
        labelsRemove: [],
      }),
      fails('INVALID_ARGUMENT', 'availability', /active, pause or drain/),
    );
    await assert.rejects(
      api.deleteNode({ node: 'beta', force: false }),
      fails('FAILED_PRECONDITION', undefined, /--force/),
    );
    await api.deleteNode({ node: 'beta', force: true });
    await assert.rejects(
      api.getNode(GetNodeRequest.fromPartial({ node: 'beta' })),
      fails('NOT_FOUND', undefined, /no node "beta"/),
    );
    assert.equal(store.get('certificate', 'nodeaab2')?.removed, true, 'denylisted with the delete');
  });

  it('the last manager cannot be demoted', async () => {
    const { api } = setup();
    await api.updateNode(UpdateNodeRequest.fromPartial({ node: 'alpha', role: NodeRole.NODE_ROLE_MANAGER }));
    await assert.rejects(
      api.updateNode(UpdateNodeRequest.fromPartial({ node: 'alpha', role: NodeRole.NODE_ROLE_WORKER })),
      fails('FAILED_PRECONDITION', undefined, /last manager; promote another node first/),
    );
    await api.updateNode(UpdateNodeRequest.fromPartial({ node: 'beta', role: NodeRole.NODE_ROLE_MANAGER }));
    const { node } = await api.updateNode(
      UpdateNodeRequest.fromPartial({ node: 'alpha', role: NodeRole.NODE_ROLE_WORKER }),
    );
    assert.equal(node?.role, NodeRole.NODE_ROLE_WORKER);
  });

  it('a network in use or the ingress network cannot be removed', async () => {
    const { api } = setup();
    await api.createNetwork({ name: 'app', subnet: '10.20.0.0/24', options: {}, labels: {} });
    await api.createService({ spec: { ...web(), networks: ['app'] } });
    await assert.rejects(
      api.deleteNetwork({ network: 'app' }),
      fails('FAILED_PRECONDITION', undefined, /in use by service\(s\) web/),
    );
    await assert.rejects(
      api.deleteNetwork({ network: 'ingress' }),
      fails('FAILED_PRECONDITION', undefined, /ingress/),
    );
    await api.deleteService({ service: 'web' });
    await api.deleteNetwork({ network: 'app' });
  });

  it('reads take a ReadIndex barrier unless local_read is set', async () => {
    const { api, reads } = setup();
    const start = reads();
    await api.listNodes({ read: { localRead: true } });
    assert.equal(reads(), start);
    await api.listNodes(ListNodesRequest.fromPartial({}));
    assert.equal(reads(), start + 1);
  });

  it('cluster settings are validated and written with the version check', async () => {
    const { api } = setup();
    const { cluster } = await api.getCluster(GetClusterRequest.fromPartial({}));
    await assert.rejects(
      api.updateCluster({
        spec: { ...cluster!.spec!, publishedPortStart: 9000, publishedPortEnd: 8000 },
        version: 0,
      }),
      fails('INVALID_ARGUMENT', 'spec.published_port_start', /range within 1\.\.65535/),
    );
    const updated = await api.updateCluster({
      spec: { ...cluster!.spec!, unknownGraceMs: 5000 },
      version: 0,
    });
    assert.equal(updated.cluster?.spec?.unknownGraceMs, 5000);
  });
});
