import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { createRootCA, type RootCA } from '../../../controlplane/ca/authority.js';
import { DISPATCHER_POLICY, Dispatcher } from '../../../controlplane/dispatcher/server.js';
import { MemoryStore } from '../../../controlplane/store/memory-store.js';
import { InMemoryProposer } from '../../../controlplane/store/proposer.js';
import { TransactionBuilder } from '../../../controlplane/store/transaction.js';
import {
  AssignmentsKind,
  type AssignmentsResponse,
  DispatcherServiceClient,
  DispatcherServiceService,
  type SessionResponse,
} from '../../../src/api/gen/meshd/v1/dispatcher.js';
import { NodeState, TaskState } from '../../../src/api/gen/meshd/v1/objects.js';
import { createAuthorizationInterceptor } from '../../../src/common/transport/authorization.js';
import {
  bindSecure,
  createChannelCredentials,
  ReloadableServerCredentials,
  SECURE_CHANNEL_OPTIONS,
  type TlsMaterial,
} from '../../../src/common/transport/credentials.js';
import { nodeMaterial } from '../transport/fixtures.js';
import { network, service, task } from './fixtures.js';

const CLUSTER = 'cluster-d';
type Material = TlsMaterial & { nodeId: string };

function waitFor(what: string, cond: () => boolean, timeoutMs = 8000): Promise<void> {
  const start = Date.now();
  return new Promise((resolve, reject) => {
    const tick = () => {
      if (cond()) resolve();
      else if (Date.now() - start > timeoutMs) reject(new Error(`timed out waiting for ${what}`));
      else setTimeout(tick, 10);
    };
    tick();
  });
}

function unary<Req, Res>(
  fn: (
    req: Req,
    md: grpc.Metadata,
    opts: grpc.CallOptions,
    cb: (e: grpc.ServiceError | null, r: Res) => void,
  ) => unknown,
  req: Req,
): Promise<Res> {
  return new Promise((resolve, reject) =>
    fn(req, new grpc.Metadata(), { deadline: Date.now() + 5000 }, (e, r) => (e ? reject(e) : resolve(r))),
  );
}

describe('dispatcher service over mTLS', () => {
  let root: RootCA;
  let manager: Material;
  let worker: Material;
  let other: Material;
  let server: grpc.Server;
  let port: number;
  let store: MemoryStore;
  let proposer: InMemoryProposer;
  let dispatcher: Dispatcher;
  const clients: grpc.Client[] = [];
  const extraManagers: { nodeId: string; address: string }[] = [];
  const streams: grpc.ClientReadableStream<unknown>[] = [];

  function client(m: Material): DispatcherServiceClient {
    const c = new DispatcherServiceClient(
      `127.0.0.1:${port}`,
      createChannelCredentials(m, { clusterId: CLUSTER }),
      SECURE_CHANNEL_OPTIONS,
    );
    clients.push(c);
    return c;
  }

  async function openSession(c: DispatcherServiceClient): Promise<{
    first: SessionResponse;
    stream: grpc.ClientReadableStream<SessionResponse>;
    ended: Promise<grpc.StatusObject>;
  }> {
    const stream = c.session({
      hostname: 'w1',
      addresses: ['192.168.50.2'],
      resources: undefined,
      labels: {},
    });
    streams.push(stream);
    const ended = new Promise<grpc.StatusObject>((resolve) => {
      stream.on('status', resolve);
      stream.on('error', () => {});
    });
    const first = await new Promise<SessionResponse>((resolve, reject) => {
      stream.once('data', resolve);
      stream.once('error', reject);
    });
    return { first, stream, ended };
  }

  function collect(stream: grpc.ClientReadableStream<AssignmentsResponse>): AssignmentsResponse[] {
    const got: AssignmentsResponse[] = [];
    streams.push(stream);
    stream.on('data', (m: AssignmentsResponse) => got.push(m));
    stream.on('error', () => {});
    return got;
  }

  before(async () => {
    root = await createRootCA({ clusterId: CLUSTER, nowMs: Date.now() });
    manager = await nodeMaterial(root, { role: 'manager' });
    worker = await nodeMaterial(root, { role: 'worker' });
    other = await nodeMaterial(root, { role: 'worker' });
    store = new MemoryStore();
    proposer = new InMemoryProposer(store);
    proposer.proposeSync(
      new TransactionBuilder(1)
        .create('network', network('ingress', 'ingress', '10.255.0.0/16', 4096, true))
        .create('network', network('app', 'app', '10.0.1.0/24', 4097))
        .create('service', service('web', 'web'))
        .create(
          'task',
          task('t1', 'web', worker.nodeId, 1, TaskState.TASK_STATE_ASSIGNED, { app: '10.0.1.3/24' }),
        )
        .create(
          'task',
          task('t2', 'web', other.nodeId, 2, TaskState.TASK_STATE_ASSIGNED, { app: '10.0.1.4/24' }),
        )
        .build(),
    );
    dispatcher = new Dispatcher({
      store,
      proposer,
      policy: {
        basePeriodMs: 300,
        graceMultiplier: 3,
        maxHeartbeatsPerSecond: 500,
        jitterFraction: 0.25,
        unknownGraceMs: 1000,
      },
      managers: () => [{ nodeId: manager.nodeId, address: `127.0.0.1:${port}` }, ...extraManagers],
      statusBatchDelayMs: 20,
    });
    server = new grpc.Server({
      interceptors: [createAuthorizationInterceptor({ clusterId: CLUSTER, policy: DISPATCHER_POLICY })],
    });
    server.addService(DispatcherServiceService, dispatcher.implementation());
    port = await bindSecure(server, '127.0.0.1:0', new ReloadableServerCredentials(manager));
    dispatcher.start();
  });

  after(() => {
    for (const s of streams) s.cancel();
    dispatcher.stop();
    for (const c of clients) c.close();
    server.forceShutdown();
  });

  test('a session is keyed by the certificate CN and registers the node READY', async () => {
    const c = client(worker);
    const { first } = await openSession(c);
    assert.equal(first.nodeId, worker.nodeId);
    assert.ok(first.sessionId.length > 0);
    assert.ok(
      first.heartbeatPeriodMs > 0 && first.heartbeatPeriodMs <= 300,
      `period ${first.heartbeatPeriodMs}`,
    );
    assert.equal(first.managers[0]?.nodeId, manager.nodeId);
    const n = store.get('node', worker.nodeId);
    assert.equal(n?.state, NodeState.NODE_STATE_READY);
    assert.deepEqual(n?.addresses, ['192.168.50.2']);
    const hb = await unary(c.heartbeat.bind(c), { sessionId: first.sessionId });
    assert.ok(hb.periodMs > 0);
  });

  test('a heartbeat on a live session brings a node marked UNKNOWN by a new leader back to READY', async () => {
    const c = client(worker);
    const { first } = await openSession(c);
    const n = structuredClone(store.get('node', worker.nodeId)!);
    n.state = NodeState.NODE_STATE_UNKNOWN;
    proposer.proposeSync(new TransactionBuilder(5).update('node', n).build());
    await unary(c.heartbeat.bind(c), { sessionId: first.sessionId });
    await waitFor('node ready', () => store.get('node', worker.nodeId)?.state === NodeState.NODE_STATE_READY);
  });

  test('the session stream carries later changes of the manager list', async () => {
    const c = client(worker);
    const { stream } = await openSession(c);
    const later: SessionResponse[] = [];
    stream.on('data', (m: SessionResponse) => later.push(m));
    extraManagers.push({ nodeId: 'm2', address: '127.0.0.2:4747' });
    proposer.proposeSync(
      new TransactionBuilder(6).create('network', network('n9', 'n9', '10.9.0.0/24', 4109)).build(),
    );
    await waitFor('manager list update', () => later.some((m) => m.managers.some((x) => x.nodeId === 'm2')));
  });

  test('a session whose address is not IPv4 is refused INVALID_ARGUMENT naming the field', async () => {
    const c = client(worker);
    const stream = c.session({ hostname: 'w1', addresses: ['not-an-ip'], resources: undefined, labels: {} });
    streams.push(stream);
    const err = await new Promise<grpc.ServiceError>((resolve) => stream.on('error', resolve));
    assert.equal(err.code, grpc.status.INVALID_ARGUMENT);
    assert.match(err.details, /addresses\[0\] must be an IPv4 address/);
  });

  test('a status request with too many updates is refused INVALID_ARGUMENT', async () => {
    const c = client(worker);
    const { first } = await openSession(c);
    const updates = Array.from({ length: 1001 }, (_, i) => ({
      taskId: `x${i}`,
      status: { state: TaskState.TASK_STATE_RUNNING, message: '', err: '', timestamp: undefined },
    }));
    await assert.rejects(
      unary(c.updateTaskStatus.bind(c), { sessionId: first.sessionId, updates }),
      (e: grpc.ServiceError) => e.code === grpc.status.INVALID_ARGUMENT && /at most 1000/.test(e.details),
    );
  });

  test('a heartbeat with a session ID that is not the caller’s current session is refused NOT_FOUND', async () => {
    const c = client(worker);
    await assert.rejects(unary(c.heartbeat.bind(c), { sessionId: 'bogus' }), (e: grpc.ServiceError) => {
      assert.equal(e.code, grpc.status.NOT_FOUND);
      assert.match(e.details, /open a new session/);
      return true;
    });
  });

  test('assignments start COMPLETE with only the node’s tasks, then carry increments on store changes', async () => {
    const c = client(worker);
    const { first } = await openSession(c);
    const got = collect(c.assignments({ sessionId: first.sessionId }));
    await waitFor('complete assignments', () => got.length >= 1);
    const complete = got[0]!;
    assert.equal(complete.kind, AssignmentsKind.ASSIGNMENTS_KIND_COMPLETE);
    assert.deepEqual(
      complete.upsertTasks.map((t) => t.meta?.id),
      ['t1'],
    );
    assert.ok(complete.desiredState?.sandboxes.some((s) => s.taskId === 't1'));
    proposer.proposeSync(
      new TransactionBuilder(2)
        .create(
          'task',
          task('t3', 'web', worker.nodeId, 3, TaskState.TASK_STATE_ASSIGNED, { app: '10.0.1.5/24' }),
        )
        .build(),
    );
    await waitFor('increment with t3', () => got.length >= 2);
    const inc = got[1]!;
    assert.equal(inc.kind, AssignmentsKind.ASSIGNMENTS_KIND_INCREMENTAL);
    assert.equal(inc.fromVersion, complete.toVersion);
    assert.deepEqual(
      inc.upsertTasks.map((t) => t.meta?.id),
      ['t3'],
    );
    assert.ok(inc.desiredStateDelta?.upsertSandboxes.some((s) => s.taskId === 't3'));
    proposer.proposeSync(new TransactionBuilder(3).delete('task', store.get('task', 't3')!).build());
    await waitFor('increment removing t3', () => got.length >= 3);
    assert.deepEqual(got[2]!.removeTasks, ['t3']);
  });

  test('task status is written forward only, and only for the reporter’s own tasks', async () => {
    const c = client(worker);
    const { first } = await openSession(c);
    const report = (taskId: string, state: TaskState) =>
      unary(c.updateTaskStatus.bind(c), {
        sessionId: first.sessionId,
        updates: [{ taskId, status: { state, message: '', err: '', timestamp: undefined } }],
      });
    await report('t1', TaskState.TASK_STATE_RUNNING);
    assert.equal(store.get('task', 't1')?.status?.state, TaskState.TASK_STATE_RUNNING);
    await report('t1', TaskState.TASK_STATE_STARTING);
    assert.equal(store.get('task', 't1')?.status?.state, TaskState.TASK_STATE_RUNNING);
    await report('t2', TaskState.TASK_STATE_FAILED);
    assert.equal(store.get('task', 't2')?.status?.state, TaskState.TASK_STATE_ASSIGNED);
  });

  test('status reports from one burst are committed as one transaction', async () => {
    const c = client(worker);
    const { first } = await openSession(c);
    const ids = ['b1', 'b2', 'b3', 'b4'];
    const tx = new TransactionBuilder(4);
    for (const [i, id] of ids.entries())
      tx.create('task', task(id, 'web', worker.nodeId, 10 + i, TaskState.TASK_STATE_ASSIGNED, {}));
    proposer.proposeSync(tx.build());
    const indexBefore = store.index;
    await Promise.all(
      ids.map((taskId) =>
        unary(c.updateTaskStatus.bind(c), {
          sessionId: first.sessionId,
          updates: [
            {
              taskId,
              status: { state: TaskState.TASK_STATE_ACCEPTED, message: '', err: '', timestamp: undefined },
            },
          ],
        }),
      ),
    );
    for (const id of ids) assert.equal(store.get('task', id)?.status?.state, TaskState.TASK_STATE_ACCEPTED);
    assert.ok(store.index - indexBefore <= 2, `took ${store.index - indexBefore} transactions`);
  });

  test('a node that stops heartbeating is marked DOWN and its session ends UNAVAILABLE', async () => {
    const c = client(other);
    const { ended } = await openSession(c);
    assert.equal(store.get('node', other.nodeId)?.state, NodeState.NODE_STATE_READY);
    const status = await ended;
    assert.equal(status.code, grpc.status.UNAVAILABLE);
    await waitFor('node down', () => store.get('node', other.nodeId)?.state === NodeState.NODE_STATE_DOWN);
    assert.equal(store.get('node', other.nodeId)?.statusMessage, 'heartbeat failure');
  });

  test('a stopped dispatcher answers UNAVAILABLE so agents fail over', async () => {
    const c = client(worker);
    const { first, ended } = await openSession(c);
    dispatcher.stop();
    assert.equal((await ended).code, grpc.status.UNAVAILABLE);
    await assert.rejects(
      unary(c.heartbeat.bind(c), { sessionId: first.sessionId }),
      (e: grpc.ServiceError) => {
        assert.equal(e.code, grpc.status.UNAVAILABLE);
        return true;
      },
    );
    dispatcher.start();
  });

  test('a dispatcher started again after a stop (leadership lost, then regained) writes task status again', async () => {
    dispatcher.stop();
    dispatcher.start();
    const c = client(worker);
    const { first } = await openSession(c);
    proposer.proposeSync(
      new TransactionBuilder(5)
        .create('task', task('again', 'web', worker.nodeId, 30, TaskState.TASK_STATE_ASSIGNED, {}))
        .build(),
    );
    await unary(c.updateTaskStatus.bind(c), {
      sessionId: first.sessionId,
      updates: [
        {
          taskId: 'again',
          status: { state: TaskState.TASK_STATE_ACCEPTED, message: '', err: '', timestamp: undefined },
        },
      ],
    });
    assert.equal(store.get('task', 'again')?.status?.state, TaskState.TASK_STATE_ACCEPTED);
  });
});
