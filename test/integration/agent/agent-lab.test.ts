/**
 * One lab host (prefix `mdag`): a real Dispatcher over mTLS on loopback, an
 * Agent whose data plane is the real overlay/sandbox programmers and the
 * nftables LB programming the lab host's namespaces, and a real task process
 * inside its sandbox. Checks the path assignments → sandbox → process →
 * RUNNING → published port and DNS name, and drain → stop → SHUTDOWN →
 * sandbox removed.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { execa } from 'execa';
import { Registry } from 'prom-client';
import { createRootCA } from '../../../controlplane/ca/authority.js';
import { DISPATCHER_POLICY, Dispatcher } from '../../../controlplane/dispatcher/server.js';
import { MemoryStore } from '../../../controlplane/store/memory-store.js';
import { InMemoryProposer } from '../../../controlplane/store/proposer.js';
import { TransactionBuilder } from '../../../controlplane/store/transaction.js';
import { Agent } from '../../../dataplane/agent/agent.js';
import { EmbeddedDns } from '../../../dataplane/dns/embedded.js';
import { NftLoadBalancer } from '../../../dataplane/lb/nft/backend.js';
import { nftToolExecutor } from '../../../dataplane/lb/nft/executor.js';
import { lbProgrammer } from '../../../dataplane/lb/programmer.js';
import type { LbScope } from '../../../dataplane/lb/types.js';
import { NetnsHelper } from '../../../dataplane/netns/helper.js';
import { helperHostAccess } from '../../../dataplane/netns/host.js';
import { listNetns } from '../../../dataplane/netns/netns.js';
import { networkNetnsName, sandboxNetnsName } from '../../../dataplane/overlay/names.js';
import { buildNodeOverlay, type NodeOverlay } from '../../../dataplane/overlay/node.js';
import { SANDBOX_PROGRAMMER } from '../../../dataplane/reconciler/node.js';
import { Reconciler } from '../../../dataplane/reconciler/reconciler.js';
import { type LabHost, labDown, labUp } from '../../../scripts/lab/lab.js';
import { DispatcherServiceService } from '../../../src/api/gen/meshd/v1/dispatcher.js';
import { Node, NodeState, TaskState } from '../../../src/api/gen/meshd/v1/objects.js';
import { createAuthorizationInterceptor } from '../../../src/common/transport/authorization.js';
import {
  bindSecure,
  createChannelCredentials,
  ReloadableServerCredentials,
} from '../../../src/common/transport/credentials.js';
import { network, service, task } from '../../unit/dispatcher/fixtures.js';
import { nodeMaterial } from '../../unit/transport/fixtures.js';
import { httpGet } from '../dataplane/mesh-lab.js';

const PREFIX = 'mdag';
const CLUSTER = 'cluster-agent-lab';
const TASK_SERVER = fileURLToPath(new URL('../dataplane/fixtures/task-server.mjs', import.meta.url));

function waitFor(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const start = Date.now();
  return new Promise((resolve, reject) => {
    const tick = async () => {
      if (await cond()) resolve();
      else if (Date.now() - start > timeoutMs) reject(new Error(`timed out waiting for ${what}`));
      else setTimeout(tick, 100);
    };
    void tick();
  });
}

describe('agent on a lab host with the real data plane', { timeout: 180_000 }, () => {
  const store = new MemoryStore();
  const proposer = new InMemoryProposer(store);
  let host: LabHost;
  let helper: NetnsHelper | undefined;
  let overlay: NodeOverlay | undefined;
  let server: grpc.Server | undefined;
  let dispatcher: Dispatcher | undefined;
  let agent: Agent | undefined;
  let dns: EmbeddedDns | undefined;
  let logDir: string;

  const observed = (id: string) => store.get('task', id)?.status?.state;

  before(async () => {
    logDir = mkdtempSync(join(tmpdir(), 'mdag-'));
    const lab = await labUp({ prefix: PREFIX, hosts: 1 });
    host = lab.hosts[0]!;
    helper = await NetnsHelper.start(host.netns);
    overlay = buildNodeOverlay({ hostPrefix: host.netnsPrefix, host: helperHostAccess(helper) });
    const lb = new NftLoadBalancer({
      executor: nftToolExecutor,
      resolveScope: (scope) =>
        scope.kind === 'host' ? host.netns : networkNetnsName(host.netnsPrefix, scope.networkId),
      listScopes: (): LbScope[] => [
        { kind: 'host' },
        ...['app', 'ingress'].map((networkId) => ({ kind: 'network' as const, networkId })),
      ],
    });
    const reconciler = new Reconciler([...overlay.programmers, lbProgrammer(lb)]);
    dns = new EmbeddedDns({
      registry: new Registry(),
      hostPrefix: host.netnsPrefix,
      resolvConfPath: '/nonexistent',
    });

    const root = await createRootCA({ clusterId: CLUSTER, nowMs: Date.now() });
    const manager = await nodeMaterial(root, { role: 'manager' });
    const worker = await nodeMaterial(root, { role: 'worker' });
    const web = service('web', 'web');
    // As the allocator stores it: a CIDR.
    web.vips = [{ networkId: 'app', address: '10.0.1.2/24' }];
    web.ports[0]!.targetPort = 8080;
    const t1 = task('t1', 'web', worker.nodeId, 1, TaskState.TASK_STATE_ASSIGNED, {
      app: '10.0.1.11/24',
      ingress: '10.255.0.11/16',
    });
    t1.spec = {
      command: [process.execPath, TASK_SERVER, 't1', '8080'],
      env: [],
      reservations: undefined,
      restart: undefined,
      health: undefined,
      placement: undefined,
      forceUpdate: 0,
    };
    proposer.proposeSync(
      new TransactionBuilder(1)
        .create('network', network('ingress', 'ingress', '10.255.0.0/16', 4096, true))
        .create('network', network('app', 'app', '10.0.1.0/24', 4097))
        .create(
          'node',
          Node.fromPartial({
            meta: { id: worker.nodeId },
            hostname: 'h1',
            role: 1,
            availability: 1,
            addresses: [host.address],
            state: NodeState.NODE_STATE_UNKNOWN,
            lbAttachments: [
              { networkId: 'app', address: '10.0.1.251/24', mac: '' },
              { networkId: 'ingress', address: '10.255.0.251/16', mac: '' },
            ],
          }),
        )
        .create('service', web)
        .create('task', t1)
        .build(),
    );
    dispatcher = new Dispatcher({ store, proposer, statusBatchDelayMs: 10 });
    server = new grpc.Server({
      interceptors: [createAuthorizationInterceptor({ clusterId: CLUSTER, policy: DISPATCHER_POLICY })],
    });
    server.addService(DispatcherServiceService, dispatcher.implementation());
    const port = await bindSecure(server, '127.0.0.1:0', new ReloadableServerCredentials(manager));
    dispatcher.start();
    agent = new Agent({
      managers: [`127.0.0.1:${port}`],
      credentials: () =>
        createChannelCredentials(worker, { clusterId: CLUSTER, organizationalUnit: 'meshd-manager' }),
      describe: () => ({ hostname: 'h1', addresses: [host.address], resources: undefined, labels: {} }),
      dataplane: [
        // Wired as meshd run does: the task starts once its sandbox and its DNS socket exist.
        {
          name: 'reconciler',
          apply: (s, progress) =>
            reconciler.apply(s, {
              onProgrammed: (p) => {
                if (p === SANDBOX_PROGRAMMER) progress.ready('all');
              },
            }),
        },
        { name: 'dns', apply: (s, progress) => dns!.apply(s, (taskId) => progress.ready([taskId])) },
      ],
      hostPrefix: host.netnsPrefix,
      logDir,
      stopGracePeriodMs: 3000,
      drainSettleMs: 200,
    });
    agent.start();
  });

  after(async () => {
    await agent?.stop({ stopTasks: true }).catch(() => {});
    dispatcher?.stop();
    dns?.close();
    server?.forceShutdown();
    await overlay?.close().catch(() => {});
    await helper?.stop().catch(() => {});
    await labDown(PREFIX);
    rmSync(logDir, { recursive: true, force: true });
  });

  test('an assigned task runs inside its sandbox, is reported RUNNING and answers on the published port', async () => {
    await waitFor('t1 running', () => observed('t1') === TaskState.TASK_STATE_RUNNING).catch((err: Error) => {
      throw new Error(
        `${err.message}; task status ${JSON.stringify(store.get('task', 't1')?.status)}, agent ${JSON.stringify(agent?.status())}`,
      );
    });
    const pid = agent!.status().tasks.find((t) => t.taskId === 't1')?.pid;
    assert.ok(pid !== undefined);
    const ns = execFileSync('ip', ['netns', 'identify', String(pid)])
      .toString()
      .trim();
    assert.equal(ns, sandboxNetnsName(host.netnsPrefix, 't1'));
    let body = '';
    await waitFor('published port answers', async () => {
      body = (await httpGet(host.netns, `http://${host.address}:30080/`))?.body ?? '';
      return body.startsWith('t1 ');
    });
    assert.match(body, /^t1 /);
    const sandbox = sandboxNetnsName(host.netnsPrefix, 't1');
    let answer = '';
    // Asynchronously: the resolver runs in this process's event loop.
    await waitFor('the service name resolves inside the task', async () => {
      const dig = await execa(
        'ip',
        ['netns', 'exec', sandbox, 'dig', '+short', '+time=1', '+tries=1', '@127.0.0.11', 'web'],
        {
          reject: false,
        },
      );
      answer = String(dig.stdout).trim();
      return dig.exitCode === 0 && answer !== '';
    });
    assert.equal(answer, '10.0.1.2');
  });

  test('a task desired SHUTDOWN is stopped, reported SHUTDOWN and its sandbox removed', async () => {
    const t1 = structuredClone(store.get('task', 't1')!);
    t1.desiredState = TaskState.TASK_STATE_SHUTDOWN;
    proposer.proposeSync(new TransactionBuilder(Date.now()).update('task', t1).build());
    await waitFor('t1 shutdown', () => observed('t1') === TaskState.TASK_STATE_SHUTDOWN);
    const sandbox = sandboxNetnsName(host.netnsPrefix, 't1');
    await waitFor('sandbox removed', () => !listNetns(host.netnsPrefix).includes(sandbox));
  });
});
