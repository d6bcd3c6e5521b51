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
import { Agent, type DataplaneTarget } from '../../../dataplane/agent/agent.js';
import { DataplaneApply } from '../../../dataplane/agent/apply.js';
import { DesiredState } from '../../../src/api/gen/meshd/v1/dataplane.js';
import { DispatcherServiceService } from '../../../src/api/gen/meshd/v1/dispatcher.js';
import { type Task, TaskState } from '../../../src/api/gen/meshd/v1/objects.js';
import { ManualClock } from '../../../src/common/clock.js';
import { subsystemLogger } from '../../../src/common/logger.js';
import { createAuthorizationInterceptor } from '../../../src/common/transport/authorization.js';
import {
  bindSecure,
  createChannelCredentials,
  ReloadableServerCredentials,
} from '../../../src/common/transport/credentials.js';
import { network, service, task } from '../dispatcher/fixtures.js';
import { nodeMaterial } from '../transport/fixtures.js';

const log = subsystemLogger('agent-test');

/** A promise and its resolver, for a target that hangs until the test lets it go. */
function gate(): { promise: Promise<void>; open: () => void } {
  let open = () => {};
  const promise = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { promise, open };
}

const STATE = DesiredState.fromPartial({ version: 1 });
const HEAD_START_MS = 500;
const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

describe('DataplaneApply: when a task may start', () => {
  test('a target that made every sandbox and is still programming the LB holds a task back only for its head start', async () => {
    const clock = new ManualClock(0);
    const lb = gate();
    const apply = new DataplaneApply(
      [
        {
          name: 'reconciler',
          apply: async (_s, progress) => {
            progress.ready('all');
            await lb.promise;
          },
        },
      ],
      STATE,
      { log, clock, headStartMs: HEAD_START_MS },
    );
    let ended = false;
    void apply.done.then(() => {
      ended = true;
    });
    let ready = false;
    const started = apply.readyFor('t1').then(() => {
      ready = true;
    });
    clock.advance(HEAD_START_MS - 1);
    await settle();
    assert.equal(ready, false, 'the LB runs alone during its head start');
    clock.advance(1);
    await started;
    assert.equal(ended, false, 'the apply is still running');
    lb.open();
    await apply.done;
  });

  test('an LB apply that ends within the head start ends before the task starts', async () => {
    const clock = new ManualClock(0);
    const order: string[] = [];
    const apply = new DataplaneApply(
      [
        {
          name: 'reconciler',
          apply: async (_s, progress) => {
            progress.ready('all');
            await settle();
            order.push('lb done');
          },
        },
      ],
      STATE,
      { log, clock, headStartMs: HEAD_START_MS },
    );
    await apply.readyFor('t1');
    order.push('task starts');
    assert.deepEqual(order, ['lb done', 'task starts']);
    assert.equal(clock.pendingTimers(), 0, 'the head-start timer is cancelled');
  });

  test("a target slow for one task's sandbox holds back that task only, and the next target begins after 'all'", async () => {
    const clock = new ManualClock(0);
    const slow = gate();
    const order: string[] = [];
    const apply = new DataplaneApply(
      [
        {
          name: 'reconciler',
          apply: async (_s, progress) => {
            order.push('reconciler');
            progress.ready('all');
            await new Promise<void>(() => {}); // never ends: the DNS must begin anyway
          },
        },
        {
          name: 'dns',
          apply: async (_s, progress) => {
            order.push('dns');
            progress.ready(['fast']);
            await slow.promise;
            progress.ready(['slow']);
          },
        },
      ],
      STATE,
      { log, clock, headStartMs: HEAD_START_MS },
    );
    clock.advance(HEAD_START_MS);
    await apply.readyFor('fast');
    assert.deepEqual(order, ['reconciler', 'dns']);
    let slowReady = false;
    const slowStarted = apply.readyFor('slow').then(() => {
      slowReady = true;
    });
    await settle();
    assert.equal(slowReady, false, 'a task waits for its own sandbox');
    slow.open();
    await slowStarted;
  });

  test('a failing target holds no task back, and one that says nothing holds them until it ends', async () => {
    const quiet = gate();
    const apply = new DataplaneApply(
      [
        {
          name: 'failing',
          apply: async () => {
            throw new Error('nft exploded');
          },
        },
        { name: 'quiet', apply: () => quiet.promise },
      ],
      STATE,
      { log, clock: new ManualClock(0) },
    );
    let ready = false;
    const started = apply.readyFor('t1').then(() => {
      ready = true;
    });
    await settle();
    assert.equal(ready, false);
    quiet.open();
    await started;
    await apply.done;
  });
});

function waitFor(what: string, cond: () => boolean, timeoutMs = 20_000): Promise<void> {
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

function sleeping(t: Task): Task {
  t.spec = {
    command: ['sleep', '30'],
    env: [],
    reservations: undefined,
    restart: undefined,
    health: undefined,
    placement: undefined,
    forceUpdate: 0,
  };
  return t;
}

describe('agent: tasks start on their own sandbox, not on the whole data-plane apply', () => {
  const store = new MemoryStore();
  const proposer = new InMemoryProposer(store);
  const lb = gate();
  const dnsForSlow = gate();
  let server: grpc.Server;
  let dispatcher: Dispatcher;
  let agent: Agent;
  let logDir: string;
  let workerId: string;
  let lbStillProgramming = true;
  const observed = (id: string) => store.get('task', id)?.status?.state;

  before(async () => {
    logDir = mkdtempSync(join(tmpdir(), 'meshd-agent-gate-'));
    const root = await createRootCA({ clusterId: 'cluster-gate', nowMs: Date.now() });
    const worker = await nodeMaterial(root, { role: 'worker' });
    const manager = await nodeMaterial(root, { role: 'manager' });
    workerId = worker.nodeId;
    proposer.proposeSync(
      new TransactionBuilder(1)
        .create('network', network('ingress', 'ingress', '10.255.0.0/16', 4096, true))
        .create('network', network('app', 'app', '10.0.1.0/24', 4097))
        .create('service', service('web', 'web'))
        .build(),
    );
    dispatcher = new Dispatcher({
      store,
      proposer,
      policy: {
        basePeriodMs: 300,
        graceMultiplier: 5,
        maxHeartbeatsPerSecond: 500,
        jitterFraction: 0.25,
        unknownGraceMs: 2000,
      },
      statusBatchDelayMs: 10,
      leaderAddress: () => undefined,
    });
    server = new grpc.Server({
      interceptors: [
        createAuthorizationInterceptor({ clusterId: 'cluster-gate', policy: DISPATCHER_POLICY }),
      ],
    });
    server.addService(DispatcherServiceService, dispatcher.implementation());
    const port = await bindSecure(server, '127.0.0.1:0', new ReloadableServerCredentials(manager));
    dispatcher.start();
    const dataplane: DataplaneTarget[] = [
      {
        // As the reconciler does: the sandboxes first, then an LB that takes long.
        name: 'reconciler',
        apply: async (s, progress) => {
          if (!s.sandboxes.some((b) => b.taskId === 'slow')) return;
          progress.ready('all');
          await lb.promise;
          lbStillProgramming = false;
        },
      },
      {
        // As the embedded DNS does: per sandbox; another task's sockets are slow.
        name: 'dns',
        apply: async (s, progress) => {
          for (const b of s.sandboxes) if (b.taskId !== 'slow') progress.ready([b.taskId]);
          if (s.sandboxes.some((b) => b.taskId === 'slow')) await dnsForSlow.promise;
        },
      },
    ];
    agent = new Agent({
      managers: [`127.0.0.1:${port}`],
      credentials: () =>
        createChannelCredentials(worker, { clusterId: 'cluster-gate', organizationalUnit: 'meshd-manager' }),
      describe: () => ({ hostname: 'w1', addresses: ['192.168.50.2'], resources: undefined, labels: {} }),
      dataplane,
      hostPrefix: null,
      logDir,
      stopGracePeriodMs: 1000,
      reconnectMinMs: 50,
      reconnectMaxMs: 300,
    });
    agent.start();
    await waitFor('agent session', () => agent.status().connected !== undefined);
  });

  after(async () => {
    lb.open();
    dnsForSlow.open();
    await agent.stop({ stopTasks: true });
    dispatcher.stop();
    server.forceShutdown();
    rmSync(logDir, { recursive: true, force: true });
  });

  test("a task is RUNNING while the LB is still being programmed and another task's DNS is slow", async () => {
    proposer.proposeSync(
      new TransactionBuilder(Date.now())
        .create(
          'task',
          sleeping(task('fast', 'web', workerId, 1, TaskState.TASK_STATE_ASSIGNED, { app: '10.0.1.3/24' })),
        )
        .create(
          'task',
          sleeping(task('slow', 'web', workerId, 2, TaskState.TASK_STATE_ASSIGNED, { app: '10.0.1.4/24' })),
        )
        .build(),
    );
    await waitFor('fast running', () => observed('fast') === TaskState.TASK_STATE_RUNNING);
    assert.equal(lbStillProgramming, true, 'the LB part of the apply has not ended');
    assert.equal(
      agent.status().tasks.some((t) => t.taskId === 'slow'),
      false,
      'the task whose sandbox is not ready has not started',
    );
    dnsForSlow.open();
    await waitFor('slow running', () => observed('slow') === TaskState.TASK_STATE_RUNNING);
    assert.equal(lbStillProgramming, true);
    lb.open();
    await waitFor('the apply ended', () => agent.appliedState()?.sandboxes.length === 2);
  });
});
