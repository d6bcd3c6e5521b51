import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { createRootCA } from '../../../controlplane/ca/authority.js';
import { DISPATCHER_POLICY, Dispatcher } from '../../../controlplane/dispatcher/server.js';
import { MemoryStore } from '../../../controlplane/store/memory-store.js';
import { InMemoryProposer } from '../../../controlplane/store/proposer.js';
import { TransactionBuilder } from '../../../controlplane/store/transaction.js';
import { Agent } from '../../../dataplane/agent/agent.js';
import { type DesiredState, EndpointState } from '../../../src/api/gen/meshd/v1/dataplane.js';
import { DispatcherServiceService } from '../../../src/api/gen/meshd/v1/dispatcher.js';
import { type Task, TaskState } from '../../../src/api/gen/meshd/v1/objects.js';
import { createAuthorizationInterceptor } from '../../../src/common/transport/authorization.js';
import {
  bindSecure,
  createChannelCredentials,
  ReloadableServerCredentials,
} from '../../../src/common/transport/credentials.js';
import { network, service, task } from '../dispatcher/fixtures.js';
import { nodeMaterial } from '../transport/fixtures.js';

const CLUSTER = 'cluster-agent';
const POLICY = {
  basePeriodMs: 300,
  graceMultiplier: 5,
  maxHeartbeatsPerSecond: 500,
  jitterFraction: 0.25,
  unknownGraceMs: 2000,
};

function waitFor(what: string, cond: () => boolean, timeoutMs = 10_000): Promise<void> {
  const start = Date.now();
  return new Promise((resolve, reject) => {
    const tick = () => {
      if (cond()) resolve();
      else if (Date.now() - start > timeoutMs) reject(new Error(`timed out waiting for ${what}`));
      else setTimeout(tick, 20);
    };
    tick();
  });
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function withCommand(t: Task, command: string[]): Task {
  t.spec = {
    command,
    env: [],
    reservations: undefined,
    restart: undefined,
    health: undefined,
    placement: undefined,
    forceUpdate: 0,
  };
  return t;
}

describe('agent against real dispatchers over mTLS', () => {
  const store = new MemoryStore();
  const proposer = new InMemoryProposer(store);
  const servers: grpc.Server[] = [];
  const dispatchers: Dispatcher[] = [];
  const addresses: string[] = [];
  const applied: DesiredState[] = [];
  let agent: Agent;
  let workerId: string;
  let logDir: string;
  let t1Pid: number | undefined;
  let leaderAddress: string | undefined;
  let root: Awaited<ReturnType<typeof createRootCA>>;
  let t1AliveWhenDraining: boolean | undefined;

  const observed = (id: string) => store.get('task', id)?.status?.state;
  const create = (t: Task) =>
    proposer.proposeSync(new TransactionBuilder(Date.now()).create('task', t).build());

  before(async () => {
    logDir = mkdtempSync(join(tmpdir(), 'meshd-agent-'));
    root = await createRootCA({ clusterId: CLUSTER, nowMs: Date.now() });
    const worker = await nodeMaterial(root, { role: 'worker' });
    workerId = worker.nodeId;
    proposer.proposeSync(
      new TransactionBuilder(1)
        .create('network', network('ingress', 'ingress', '10.255.0.0/16', 4096, true))
        .create('network', network('app', 'app', '10.0.1.0/24', 4097))
        .create('service', service('web', 'web'))
        .build(),
    );
    // Two managers sharing one store, as two Raft replicas would; only the leader dispatches.
    for (let i = 0; i < 2; i++) {
      const manager = await nodeMaterial(root, { role: 'manager' });
      const d = new Dispatcher({
        store,
        proposer,
        policy: POLICY,
        statusBatchDelayMs: 10,
        leaderAddress: () => leaderAddress,
      });
      const server = new grpc.Server({
        interceptors: [createAuthorizationInterceptor({ clusterId: CLUSTER, policy: DISPATCHER_POLICY })],
      });
      server.addService(DispatcherServiceService, d.implementation());
      const port = await bindSecure(server, '127.0.0.1:0', new ReloadableServerCredentials(manager));
      servers.push(server);
      dispatchers.push(d);
      addresses.push(`127.0.0.1:${port}`);
    }
    dispatchers[0]!.start();
    agent = new Agent({
      managers: addresses,
      credentials: () =>
        createChannelCredentials(worker, { clusterId: CLUSTER, organizationalUnit: 'meshd-manager' }),
      describe: () => ({ hostname: 'w1', addresses: ['192.168.50.2'], resources: undefined, labels: {} }),
      dataplane: [
        {
          name: 'recorder',
          apply: async (s) => {
            applied.push(s);
            const draining = s.services.some((v) =>
              v.endpoints.some((e) => e.taskId === 't1' && e.state === EndpointState.ENDPOINT_STATE_DRAINING),
            );
            if (draining && t1Pid !== undefined) t1AliveWhenDraining = isAlive(t1Pid);
          },
        },
      ],
      hostPrefix: null,
      logDir,
      stopGracePeriodMs: 2000,
      drainTimeoutMs: 2000,
      drainSettleMs: 50,
      reconnectMinMs: 50,
      reconnectMaxMs: 300,
    });
    agent.start();
    await waitFor('agent session', () => agent.status().connected !== undefined);
  });

  after(async () => {
    await agent.stop({ stopTasks: true });
    for (const d of dispatchers) d.stop();
    for (const s of servers) s.forceShutdown();
    rmSync(logDir, { recursive: true, force: true });
  });

  test('an assigned task is started after its sandbox was applied and reported RUNNING', async () => {
    create(
      withCommand(task('t1', 'web', workerId, 1, TaskState.TASK_STATE_ASSIGNED, { app: '10.0.1.3/24' }), [
        'sleep',
        '30',
      ]),
    );
    await waitFor('t1 running', () => observed('t1') === TaskState.TASK_STATE_RUNNING);
    assert.ok(applied.some((s) => s.sandboxes.some((b) => b.taskId === 't1')));
    const local = agent.status().tasks.find((t) => t.taskId === 't1');
    assert.equal(local?.phase, 'running');
    assert.ok((local?.pid ?? 0) > 0);
  });

  test('a process exiting non-zero is reported FAILED with its exit code', async () => {
    create(
      withCommand(task('t2', 'web', workerId, 2, TaskState.TASK_STATE_ASSIGNED, {}), ['sh', '-c', 'exit 3']),
    );
    await waitFor('t2 failed', () => observed('t2') === TaskState.TASK_STATE_FAILED);
    assert.match(store.get('task', 't2')?.status?.err ?? '', /exit code 3/);
  });

  test('a task desired SHUTDOWN is drained, stopped and reported SHUTDOWN', async () => {
    const pid = agent.status().tasks.find((t) => t.taskId === 't1')?.pid;
    t1Pid = pid;
    const t1 = structuredClone(store.get('task', 't1')!);
    t1.desiredState = TaskState.TASK_STATE_SHUTDOWN;
    proposer.proposeSync(new TransactionBuilder(Date.now()).update('task', t1).build());
    await waitFor('t1 shutdown', () => observed('t1') === TaskState.TASK_STATE_SHUTDOWN);
    assert.equal(t1AliveWhenDraining, true, 'the endpoint was draining while the process still ran');
    assert.equal(isAlive(pid!), false, 'the process is gone');
  });

  test('when the leader stops dispatching the agent fails over to the other manager', async () => {
    dispatchers[0]!.stop();
    dispatchers[1]!.start();
    leaderAddress = addresses[1];
    await waitFor('session on the second manager', () => agent.status().connected?.manager === addresses[1]);
    create(withCommand(task('t3', 'web', workerId, 3, TaskState.TASK_STATE_ASSIGNED, {}), ['sleep', '30']));
    await waitFor('t3 running', () => observed('t3') === TaskState.TASK_STATE_RUNNING);
  });

  test('an agent that knows only a follower is pointed to the leader', async () => {
    const other = await nodeMaterial(root, { role: 'worker' });
    const second = new Agent({
      managers: [addresses[0]!],
      credentials: () =>
        createChannelCredentials(other, { clusterId: CLUSTER, organizationalUnit: 'meshd-manager' }),
      describe: () => ({ hostname: 'w2', addresses: ['192.168.50.3'], resources: undefined, labels: {} }),
      dataplane: [],
      hostPrefix: null,
      logDir,
      reconnectMinMs: 50,
      reconnectMaxMs: 300,
    });
    second.start();
    try {
      await waitFor('session on the leader', () => second.status().connected?.manager === addresses[1]);
    } finally {
      await second.stop();
    }
  });
});
