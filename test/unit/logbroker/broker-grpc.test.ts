import assert from 'node:assert/strict';
import { appendFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { createRootCA, type RootCA } from '../../../controlplane/ca/authority.js';
import { localLogsService } from '../../../controlplane/logbroker/forward.js';
import { LOG_BROKER_POLICY, LOGS_POLICY, LogBroker } from '../../../controlplane/logbroker/server.js';
import { MemoryStore } from '../../../controlplane/store/memory-store.js';
import { InMemoryProposer } from '../../../controlplane/store/proposer.js';
import { TransactionBuilder } from '../../../controlplane/store/transaction.js';
import { LogPublisher } from '../../../dataplane/agent/log-publisher.js';
import {
  type ListenSubscriptionsResponse,
  LogBrokerServiceClient,
  LogBrokerServiceService,
  LogStream,
  LogsServiceClient,
  LogsServiceService,
  type SubscribeLogsRequest,
  type SubscribeLogsResponse,
} from '../../../src/api/gen/meshd/v1/logs.js';
import { TaskState } from '../../../src/api/gen/meshd/v1/objects.js';
import { systemClock } from '../../../src/common/clock.js';
import { subsystemLogger } from '../../../src/common/logger.js';
import { createAuthorizationInterceptor } from '../../../src/common/transport/authorization.js';
import {
  bindSecure,
  createChannelCredentials,
  ReloadableServerCredentials,
  SECURE_CHANNEL_OPTIONS,
  type TlsMaterial,
} from '../../../src/common/transport/credentials.js';
import { waitFor } from '../../lib/wait.js';
import { node, service, task } from '../dispatcher/fixtures.js';
import { nodeMaterial } from '../transport/fixtures.js';

const CLUSTER = 'cluster-logs';
type Material = TlsMaterial & { nodeId: string };

interface Collected {
  lines: string[];
  warnings: string[];
  status: Promise<grpc.StatusObject>;
  call: grpc.ClientReadableStream<SubscribeLogsResponse>;
}

describe('log broker over mTLS: agents publish, a manager subscribes', () => {
  let root: RootCA;
  let manager: Material;
  let w1: Material;
  let w2: Material;
  let absent: Material;
  let server: grpc.Server;
  let port: number;
  let store: MemoryStore;
  let proposer: InMemoryProposer;
  let broker: LogBroker;
  let dir: string;
  const publishers: LogPublisher[] = [];
  const clients: grpc.Client[] = [];

  const creds = (m: Material) => createChannelCredentials(m, { clusterId: CLUSTER });

  function publisher(m: Material): LogPublisher {
    const p = new LogPublisher({
      logDir: join(dir, m.nodeId),
      credentials: () => creds(m),
      clock: systemClock,
      log: subsystemLogger('test-agent'),
      followPollMs: 50,
    });
    publishers.push(p);
    p.connect(`127.0.0.1:${port}`, 'session');
    return p;
  }

  function subscribe(req: Partial<SubscribeLogsRequest>): Collected {
    const c = new LogsServiceClient(`127.0.0.1:${port}`, creds(manager), SECURE_CHANNEL_OPTIONS);
    clients.push(c);
    const call = c.subscribeLogs({ service: 'web', follow: false, tail: undefined, ...req });
    const got: Collected = {
      lines: [],
      warnings: [],
      call,
      status: Promise.resolve({} as grpc.StatusObject),
    };
    got.status = new Promise((resolve) => {
      call.on('status', resolve);
      call.on('error', () => {});
    });
    call.on('data', (m: SubscribeLogsResponse) => {
      got.warnings.push(...m.warnings);
      for (const l of m.messages)
        got.lines.push(
          `${l.context?.taskId}@${l.context?.nodeName}:${l.stream === LogStream.LOG_STREAM_STDERR ? 'err' : 'out'}:${Buffer.from(l.data).toString()}`,
        );
    });
    return got;
  }

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'mdg-logs-'));
    root = await createRootCA({ clusterId: CLUSTER, nowMs: Date.now() });
    manager = await nodeMaterial(root, { role: 'manager' });
    w1 = await nodeMaterial(root, { role: 'worker' });
    w2 = await nodeMaterial(root, { role: 'worker' });
    absent = await nodeMaterial(root, { role: 'worker' });
    store = new MemoryStore();
    proposer = new InMemoryProposer(store);
    proposer.proposeSync(
      new TransactionBuilder(1)
        .create('node', { ...node(w1.nodeId, '10.0.0.2'), hostname: 'host1' })
        .create('node', { ...node(w2.nodeId, '10.0.0.3'), hostname: 'host2' })
        .create('node', { ...node(absent.nodeId, '10.0.0.4'), hostname: 'host3' })
        .create('service', service('websvc', 'web'))
        .create('service', service('apisvc', 'api'))
        .create('task', task('t1', 'websvc', w1.nodeId, 1, TaskState.TASK_STATE_RUNNING, {}))
        .create('task', task('t2', 'websvc', w2.nodeId, 2, TaskState.TASK_STATE_RUNNING, {}))
        .create('task', task('a1', 'apisvc', w1.nodeId, 1, TaskState.TASK_STATE_RUNNING, {}))
        .create('task', task('a2', 'apisvc', absent.nodeId, 2, TaskState.TASK_STATE_RUNNING, {}))
        .build(),
    );
    for (const [m, files] of [
      [w1, { 't1.stdout.log': 'one\ntwo\nthree\n', 't1.stderr.log': 'oops\n', 'a1.stdout.log': 'api-1\n' }],
      [w2, { 't2.stdout.log': 'alpha\nbeta\n' }],
    ] as const) {
      const d = join(dir, m.nodeId);
      mkdirSync(d, { recursive: true });
      for (const [name, content] of Object.entries(files)) writeFileSync(join(d, name), content);
    }
    broker = new LogBroker({ store, limits: { answerTimeoutMs: 1500, maxSubscriptions: 8 } });
    broker.start();
    server = new grpc.Server({
      interceptors: [
        createAuthorizationInterceptor({
          clusterId: CLUSTER,
          policy: { ...LOG_BROKER_POLICY, ...LOGS_POLICY },
        }),
      ],
    });
    server.addService(LogBrokerServiceService, broker.brokerImplementation());
    server.addService(LogsServiceService, broker.logsImplementation());
    port = await bindSecure(server, '127.0.0.1:0', new ReloadableServerCredentials(manager));
    publisher(w1);
    publisher(w2);
  });

  after(() => {
    for (const p of publishers) p.disconnect();
    for (const c of clients) c.close();
    broker.stop();
    server.forceShutdown();
    rmSync(dir, { recursive: true, force: true });
  });

  test('lines of every task on every node arrive with task and node, then the stream ends', async () => {
    const got = subscribe({});
    const status = await got.status;
    assert.equal(status.code, grpc.status.OK, status.details);
    assert.deepEqual(got.warnings, []);
    assert.deepEqual([...got.lines].sort(), [
      't1@host1:err:oops',
      't1@host1:out:one',
      't1@host1:out:three',
      't1@host1:out:two',
      't2@host2:out:alpha',
      't2@host2:out:beta',
    ]);
  });

  test('tail 1 gives the last line of each task stream', async () => {
    const got = subscribe({ tail: 1 });
    assert.equal((await got.status).code, grpc.status.OK);
    assert.deepEqual([...got.lines].sort(), ['t1@host1:err:oops', 't1@host1:out:three', 't2@host2:out:beta']);
  });

  test('a node that never answers is named in a warning within the bound; the others still arrive', async () => {
    const started = Date.now();
    const got = subscribe({ service: 'api' });
    const status = await got.status;
    assert.equal(status.code, grpc.status.OK, status.details);
    assert.deepEqual(got.lines, ['a1@host1:out:api-1']);
    assert.equal(got.warnings.length, 1);
    assert.match(
      got.warnings[0] ?? '',
      /^node host3 .* did not answer within 1\.5 s: logs of its 1 task are missing$/,
    );
    assert.ok(Date.now() - started < 10_000);
  });

  test('follow shows a line written after it started, and ends the agents’ work when the client goes', async () => {
    const got = subscribe({ follow: true, tail: 0 });
    await waitFor(
      'both agents serving the subscription',
      () => publishers.every((p) => p.activeSubscriptions === 1),
      10_000,
    );
    appendFileSync(join(dir, w2.nodeId, 't2.stdout.log'), 'gamma\n');
    await waitFor('the new line', () => got.lines.includes('t2@host2:out:gamma'), 10_000);
    // A task placed later (a scale-up) is followed too, from its first line.
    writeFileSync(join(dir, w1.nodeId, 't3.stdout.log'), 'newcomer\n');
    proposer.proposeSync(
      new TransactionBuilder(2)
        .create('task', task('t3', 'websvc', w1.nodeId, 3, TaskState.TASK_STATE_RUNNING, {}))
        .build(),
    );
    await waitFor('the new task’s line', () => got.lines.includes('t3@host1:out:newcomer'), 10_000);
    got.call.cancel();
    await waitFor('the agents stopped', () => publishers.every((p) => p.activeSubscriptions === 0), 10_000);
    await waitFor('the broker forgot it', () => broker.subscriptionCount === 0, 10_000);
  });

  test('a subscriber that does not read holds the agent back instead of filling the broker', async () => {
    // 16 MiB of lines: far more than the HTTP/2 windows and socket buffers between them.
    const big = `${'x'.repeat(1023)}\n`.repeat(16 * 1024);
    writeFileSync(join(dir, w2.nodeId, 'b2.stdout.log'), big);
    proposer.proposeSync(
      new TransactionBuilder(3)
        .create('service', service('bigsvc', 'big'))
        .create('task', task('b2', 'bigsvc', w2.nodeId, 1, TaskState.TASK_STATE_RUNNING, {}))
        .build(),
    );
    const c = new LogsServiceClient(`127.0.0.1:${port}`, creds(manager), SECURE_CHANNEL_OPTIONS);
    clients.push(c);
    const call = c.subscribeLogs({ service: 'big', follow: false, tail: undefined });
    let received = 0;
    call.on('data', (m: SubscribeLogsResponse) => {
      received += m.messages.length;
    });
    const status = new Promise<grpc.StatusObject>((resolve) => {
      call.on('status', resolve);
      call.on('error', () => {});
    });
    call.pause();
    await waitFor('the agent serving it', () => publishers[1]?.activeSubscriptions === 1, 10_000);
    // Without the backpressure the agent sent all of it in under 2 s here.
    await new Promise((r) => setTimeout(r, 3000));
    // Still going: the agent waits on the broker, which waits on the paused reader.
    assert.equal(publishers[1]?.activeSubscriptions, 1);
    assert.equal(broker.subscriptionCount, 1);
    call.resume();
    assert.equal((await status).code, grpc.status.OK);
    assert.equal(received, 16 * 1024);
  });

  test('a node may not publish lines of a task of another node', async () => {
    const c = new LogBrokerServiceClient(`127.0.0.1:${port}`, creds(absent), SECURE_CHANNEL_OPTIONS);
    clients.push(c);
    const listen = c.listenSubscriptions({ sessionId: 's' });
    listen.on('error', () => {});
    const asked = new Promise<ListenSubscriptionsResponse>((resolve) => listen.once('data', resolve));
    const got = subscribe({ service: 'api' });
    const sub = await asked;
    assert.deepEqual(sub.taskIds, ['a2']);
    const err = await new Promise<grpc.ServiceError | null>((resolve) =>
      c.publishLogs(
        {
          subscriptionId: sub.id,
          lines: [{ taskId: 'a1', stream: LogStream.LOG_STREAM_STDOUT, data: Buffer.from('forged') }],
          close: true,
        },
        (e) => resolve(e),
      ),
    );
    assert.equal(err?.code, grpc.status.PERMISSION_DENIED);
    assert.match(err?.details ?? '', /task a1 is not a task of node/);
    const bad = await new Promise<grpc.ServiceError | null>((resolve) =>
      c.publishLogs(
        {
          subscriptionId: sub.id,
          lines: [{ taskId: 'a2', stream: LogStream.LOG_STREAM_UNSPECIFIED, data: Buffer.from('x') }],
          close: true,
        },
        (e) => resolve(e),
      ),
    );
    assert.equal(bad?.code, grpc.status.INVALID_ARGUMENT);
    assert.match(bad?.details ?? '', /lines\[0\]\.stream must be LOG_STREAM_STDOUT or LOG_STREAM_STDERR/);
    listen.cancel();
    await got.status;
    assert.ok(!got.lines.some((l) => l.includes('forged')));
  });

  test('a worker certificate may not subscribe on the mTLS listener', async () => {
    const c = new LogsServiceClient(`127.0.0.1:${port}`, creds(w1), SECURE_CHANNEL_OPTIONS);
    clients.push(c);
    const call = c.subscribeLogs({ service: 'web', follow: false, tail: undefined });
    const status = await new Promise<grpc.StatusObject>((resolve) => {
      call.on('status', resolve);
      call.on('error', () => {});
      call.on('data', () => {});
    });
    assert.equal(status.code, grpc.status.PERMISSION_DENIED);
  });

  test("a follower's local socket forwards the subscription to the leader and relays its stream", async () => {
    // A second broker stands for a follower's: it has no listeners, so every line comes through the leader.
    const followerBroker = new LogBroker({ store });
    const local = new grpc.Server();
    local.addService(
      LogsServiceService,
      localLogsService(followerBroker, {
        isLeader: () => false,
        leaderAddress: () => `127.0.0.1:${port}`,
        credentials: () => creds(manager),
      }),
    );
    const socket = join(dir, 'follower.sock');
    await new Promise<void>((resolve, reject) =>
      local.bindAsync(`unix://${socket}`, grpc.ServerCredentials.createInsecure(), (e) =>
        e ? reject(e) : resolve(),
      ),
    );
    try {
      const c = new LogsServiceClient(`unix://${socket}`, grpc.credentials.createInsecure());
      clients.push(c);
      const call = c.subscribeLogs({ service: 'web', follow: false, tail: 1 });
      const lines: string[] = [];
      call.on('data', (m: SubscribeLogsResponse) => {
        for (const l of m.messages) lines.push(`${l.context?.nodeName}:${Buffer.from(l.data).toString()}`);
      });
      const status = await new Promise<grpc.StatusObject>((resolve) => {
        call.on('status', resolve);
        call.on('error', () => {});
      });
      assert.equal(status.code, grpc.status.OK, status.details);
      // The follow test above appended gamma and added task t3.
      assert.deepEqual(lines.sort(), ['host1:newcomer', 'host1:oops', 'host1:three', 'host2:gamma']);
      assert.equal(followerBroker.subscriptionCount, 0);
    } finally {
      local.forceShutdown();
    }
  });

  test('a follower that knows no leader says so in one line', async () => {
    const local = new grpc.Server();
    local.addService(
      LogsServiceService,
      localLogsService(new LogBroker({ store }), {
        isLeader: () => false,
        leaderAddress: () => undefined,
        credentials: () => creds(manager),
      }),
    );
    const socket = join(dir, 'noleader.sock');
    await new Promise<void>((resolve, reject) =>
      local.bindAsync(`unix://${socket}`, grpc.ServerCredentials.createInsecure(), (e) =>
        e ? reject(e) : resolve(),
      ),
    );
    try {
      const c = new LogsServiceClient(`unix://${socket}`, grpc.credentials.createInsecure());
      clients.push(c);
      const call = c.subscribeLogs({ service: 'web', follow: false, tail: undefined });
      const status = await new Promise<grpc.StatusObject>((resolve) => {
        call.on('status', resolve);
        call.on('error', () => {});
        call.on('data', () => {});
      });
      assert.equal(status.code, grpc.status.UNAVAILABLE);
      assert.match(status.details, /no leader is known/);
    } finally {
      local.forceShutdown();
    }
  });

  test('an unknown service is NOT_FOUND naming how to list them', async () => {
    const got = subscribe({ service: 'nope' });
    const status = await got.status;
    assert.equal(status.code, grpc.status.NOT_FOUND);
    assert.match(status.details, /meshctl service ls/);
  });
});
