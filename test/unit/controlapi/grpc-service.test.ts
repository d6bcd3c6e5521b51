import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Metadata, Server, type ServerCredentials, type ServiceError, status } from '@grpc/grpc-js';
import { bootstrapCluster } from '../../../controlplane/allocator/config.js';
import { ControlApi } from '../../../controlplane/controlapi/control-api.js';
import {
  addControlService,
  ERROR_CODE_METADATA_KEY,
  ERROR_FIELD_METADATA_KEY,
} from '../../../controlplane/controlapi/grpc-service.js';
import { TransactionBuilder } from '../../../controlplane/store/transaction.js';
import * as control from '../../../src/api/gen/meshd/v1/control.js';
import { ControlServiceClient } from '../../../src/api/gen/meshd/v1/control.js';
import { Protocol } from '../../../src/api/gen/meshd/v1/dataplane.js';
import {
  Node,
  NodeAvailability,
  NodeRole,
  NodeState,
  ServiceMode,
  ServiceSpec,
  TaskState,
} from '../../../src/api/gen/meshd/v1/objects.js';
import { ManagerCluster } from '../manager/manager-fixture.js';
import { mintTlsFixture, type TlsFixture } from '../raft/transport/tls-fixture.js';

/** ControlService on each of three managers, called over real mTLS on loopback. */
describe('ControlService over gRPC on three managers', () => {
  const cluster = new ManagerCluster();
  const servers: Server[] = [];
  const clients = new Map<string, ControlServiceClient>();
  let tls: TlsFixture;

  before(async () => {
    tls = mintTlsFixture();
    await cluster.start();
    for (const [id, m] of cluster.managers) {
      const server = new Server();
      addControlService(server, new ControlApi(m));
      const port = await new Promise<number>((resolve, reject) =>
        server.bindAsync('127.0.0.1:0', tls.serverCredentials() as ServerCredentials, (err, p) =>
          err ? reject(err) : resolve(p),
        ),
      );
      servers.push(server);
      clients.set(id, new ControlServiceClient(`127.0.0.1:${port}`, tls.channelCredentials()));
    }
    const leader = await cluster.leader();
    await leader.proposer.propose(
      bootstrapCluster({ nowMs: Date.now(), clusterId: 'c1', ingressNetworkId: 'ing' }).build(),
    );
    const tx = new TransactionBuilder(Date.now());
    for (const id of ['w1', 'w2'])
      tx.create(
        'node',
        Node.fromPartial({
          meta: { id },
          hostname: `host-${id}`,
          role: NodeRole.NODE_ROLE_WORKER,
          state: NodeState.NODE_STATE_READY,
          // No agents run here: a state "heard" in the future keeps a leader
          // elected later (a loaded machine) from marking the nodes UNKNOWN.
          stateChangedAt: { unixMs: Date.now() + 3_600_000 },
          availability: NodeAvailability.NODE_AVAILABILITY_ACTIVE,
          resources: { nanoCpus: 4e9, memoryBytes: 4e9 },
        }),
      );
    await leader.proposer.propose(tx.build());
  });
  after(async () => {
    for (const c of clients.values()) c.close();
    for (const s of servers) s.forceShutdown();
    await cluster.close();
  });

  function call<Req, Res>(client: ControlServiceClient, method: string, req: Req): Promise<Res> {
    const fn = (client as unknown as Record<string, (...args: unknown[]) => void>)[method]!.bind(client);
    return new Promise((resolve, reject) =>
      fn(req, new Metadata(), (err: ServiceError | null, res: Res) => (err ? reject(err) : resolve(res))),
    );
  }

  it('a service created through a follower is committed, placed by the leader, and listed linearizably by another follower', async () => {
    const [f1, f2] = cluster.followers();
    const spec = ServiceSpec.fromPartial({
      name: 'web',
      mode: ServiceMode.SERVICE_MODE_REPLICATED,
      replicas: 3,
      task: { command: ['app'] },
      endpoint: { ports: [{ targetPort: 80, publishedPort: 8080, protocol: Protocol.PROTOCOL_TCP }] },
    });
    const created = await call<control.CreateServiceRequest, control.CreateServiceResponse>(
      clients.get(f1!.id)!,
      'createService',
      { spec },
    );
    assert.equal(created.service?.spec?.name, 'web');
    let listed: control.ListTasksResponse | undefined;
    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline) {
      listed = await call(
        clients.get(f2!.id)!,
        'listTasks',
        control.ListTasksRequest.fromPartial({ service: 'web' }),
      );
      if (
        listed!.tasks.length === 3 &&
        listed!.tasks.every((t) => t.status?.state === TaskState.TASK_STATE_ASSIGNED)
      )
        break;
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal(listed?.tasks.length, 3);
    assert.ok(listed!.tasks.every((t) => t.nodeId === 'w1' || t.nodeId === 'w2'));
  });

  it('errors arrive as gRPC status with a one-line message, the MeshError code and the field', async () => {
    const client = clients.get(cluster.followers()[0]!.id)!;
    const bad = ServiceSpec.fromPartial({
      name: 'Bad_Name',
      mode: ServiceMode.SERVICE_MODE_REPLICATED,
      task: { command: ['x'] },
    });
    await assert.rejects(call(client, 'createService', { spec: bad }), (err: ServiceError) => {
      assert.equal(err.code, status.INVALID_ARGUMENT);
      assert.match(err.details, /^service "Bad_Name": name must be 1-63 lowercase/);
      assert.ok(!err.details.includes('\n'));
      assert.deepEqual(err.metadata.get(ERROR_CODE_METADATA_KEY), ['INVALID_ARGUMENT']);
      assert.deepEqual(err.metadata.get(ERROR_FIELD_METADATA_KEY), ['name']);
      return true;
    });
    await assert.rejects(
      call(client, 'getNode', control.GetNodeRequest.fromPartial({ node: 'ghost' })),
      (err: ServiceError) => {
        assert.equal(err.code, status.NOT_FOUND);
        assert.equal(err.details, 'no node "ghost"; `meshctl node ls` lists them');
        return true;
      },
    );
  });

  it('after the leader stops without a hand-off, a follower answers reads and writes once a new leader is elected', async () => {
    const old = await cluster.leader();
    const survivor = cluster.followers()[0]!;
    await cluster.stopOne(old.id);
    clients.get(old.id)?.close();
    clients.delete(old.id);
    const client = clients.get(survivor.id)!;
    const listed = await call<control.ListServicesRequest, control.ListServicesResponse>(
      client,
      'listServices',
      control.ListServicesRequest.fromPartial({}),
    );
    assert.deepEqual(
      listed.services.map((s) => s.spec?.name),
      ['web'],
    );
    const net = await call<control.CreateNetworkRequest, control.CreateNetworkResponse>(
      client,
      'createNetwork',
      control.CreateNetworkRequest.fromPartial({ name: 'after-failover' }),
    );
    assert.equal(net.network?.name, 'after-failover');
  });

  it('a stale version is ABORTED and a local read answers from the manager it asks', async () => {
    const leader = await cluster.leader();
    const client = clients.get(leader.id)!;
    const { service } = await call<control.GetServiceRequest, control.GetServiceResponse>(
      client,
      'getService',
      control.GetServiceRequest.fromPartial({ service: 'web', read: { localRead: true } }),
    );
    const stale = service!.meta!.version!.index;
    await call(client, 'updateService', {
      service: 'web',
      version: stale,
      spec: { ...service!.spec!, replicas: 2 },
    });
    await assert.rejects(
      call(client, 'updateService', {
        service: 'web',
        version: stale,
        spec: { ...service!.spec!, replicas: 4 },
      }),
      (err: ServiceError) => err.code === status.ABORTED && /read it again and retry/.test(err.details),
    );
  });
});
