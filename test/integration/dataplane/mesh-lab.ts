/**
 * The acceptance lab of issue 6 on 3 hosts (scripts/lab): the topology of
 * test/lib/mesh-topology.ts (networks `app` and `ingress`, tasks t1 on h1 and
 * t2 on h2 running fixtures/task-server.mjs, client sandbox c3 on h3, services
 * `web` and `loc`), shared with the VM lab.
 * Every host gets its own DesiredState and one Reconciler: K's overlay and sandbox
 * programmers (dataplane/overlay, dataplane/sandbox), the nftables LB and health ports.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { HealthPortServer, healthProgrammer } from '../../../dataplane/lb/health.js';
import { NftLoadBalancer } from '../../../dataplane/lb/nft/backend.js';
import { nftToolExecutor } from '../../../dataplane/lb/nft/executor.js';
import { lbProgrammer } from '../../../dataplane/lb/programmer.js';
import type { LbScope } from '../../../dataplane/lb/types.js';
import { NetnsHelper } from '../../../dataplane/netns/helper.js';
import { helperHostAccess } from '../../../dataplane/netns/host.js';
import { networkNetnsName, sandboxNetnsName } from '../../../dataplane/overlay/names.js';
import { buildNodeOverlay, type NodeOverlay } from '../../../dataplane/overlay/node.js';
import { Reconciler } from '../../../dataplane/reconciler/reconciler.js';
import { type LabHost, labDown, labUp, type NetnsLab } from '../../../scripts/lab/lab.js';
import { type DesiredState, EndpointState } from '../../../src/api/gen/meshd/v1/dataplane.js';
import {
  LOCAL_HEALTH,
  LOCAL_PUBLISHED,
  MESH_NETWORKS,
  MESH_TASKS,
  meshDesiredState,
  TASK_PORT,
  WEB_PUBLISHED,
  WEB_VIP,
} from '../../lib/mesh-topology.js';

export async function sh(argv: string[], input?: string): Promise<string> {
  const result = await execa(argv[0]!, argv.slice(1), { reject: false, timeout: 20_000, input: input ?? '' });
  if (result.exitCode !== 0)
    throw new Error(`${argv.join(' ')} failed (exit ${result.exitCode}): ${String(result.stderr).trim()}`);
  return String(result.stdout);
}

const FIXTURES = fileURLToPath(new URL('./fixtures/', import.meta.url));

export { LOCAL_HEALTH, LOCAL_PUBLISHED, TASK_PORT, WEB_PUBLISHED, WEB_VIP };

export interface EndpointStates {
  /** task id -> state on every network; missing = removed from the service. */
  web: Map<string, EndpointState>;
}

export class MeshLab {
  readonly reconcilers: Reconciler[] = [];
  readonly health: HealthPortServer[] = [];
  private readonly helpers: NetnsHelper[] = [];
  private readonly overlays: NodeOverlay[] = [];
  private readonly processes: ChildProcess[] = [];
  endpoints: EndpointStates = {
    web: new Map([
      ['t1', EndpointState.ENDPOINT_STATE_ACTIVE],
      ['t2', EndpointState.ENDPOINT_STATE_ACTIVE],
    ]),
  };

  /** More ports of service `web` (target -> published, ingress mode), e.g. iperf3 for the bench. */
  extraWebPorts: { targetPort: number; publishedPort: number }[] = [];

  private constructor(readonly lab: NetnsLab) {}

  static async up(prefix: string): Promise<MeshLab> {
    const mesh = new MeshLab(await labUp({ prefix, hosts: 3 }));
    try {
      for (const host of mesh.lab.hosts) await mesh.buildHost(host);
      await mesh.applyAll();
      for (const task of MESH_TASKS) if (task.service !== null) await mesh.startTask(task.id);
    } catch (err) {
      await mesh.down();
      throw err;
    }
    return mesh;
  }

  host(index: number): LabHost {
    return this.lab.hosts[index - 1]!;
  }

  networkNetns(host: LabHost, networkId: string): string {
    return networkNetnsName(host.netnsPrefix, networkId);
  }

  sandboxNetns(taskId: string): string {
    const task = MESH_TASKS.find((t) => t.id === taskId)!;
    return sandboxNetnsName(this.host(task.host).netnsPrefix, taskId);
  }

  private async buildHost(host: LabHost): Promise<void> {
    const helper = await NetnsHelper.start(host.netns);
    this.helpers.push(helper);
    const overlay = buildNodeOverlay({ hostPrefix: host.netnsPrefix, host: helperHostAccess(helper) });
    this.overlays.push(overlay);
    const health = new HealthPortServer(async (port) => (await helper.openTcpServer('0.0.0.0', port)).server);
    this.health.push(health);
    const scopes = (): LbScope[] => [
      { kind: 'host' },
      ...MESH_NETWORKS.map((n) => ({ kind: 'network' as const, networkId: n.id })),
    ];
    const lb = new NftLoadBalancer({
      executor: nftToolExecutor,
      resolveScope: (scope) =>
        scope.kind === 'host' ? host.netns : this.networkNetns(host, scope.networkId),
      listScopes: scopes,
    });
    this.reconcilers.push(
      new Reconciler([...overlay.programmers, lbProgrammer(lb), healthProgrammer(health)]),
    );
  }

  private async startTask(taskId: string): Promise<void> {
    const child = spawn(
      'ip',
      [
        'netns',
        'exec',
        this.sandboxNetns(taskId),
        process.execPath,
        `${FIXTURES}task-server.mjs`,
        taskId,
        String(TASK_PORT),
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    this.processes.push(child);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`task ${taskId} did not start`)), 10_000);
      child.stdout?.once('data', () => {
        clearTimeout(timer);
        resolve();
      });
      child.once('exit', (code) => reject(new Error(`task ${taskId} exited with ${code}`)));
    });
  }

  /** The desired state of host `index` given the current endpoint states (test/lib/mesh-topology.ts). */
  stateFor(index: number): DesiredState {
    return meshDesiredState({
      hosts: this.lab.hosts.map((h) => ({ index: h.index, address: h.address })),
      index,
      web: this.endpoints.web,
      extraWebPorts: this.extraWebPorts,
    });
  }

  /** Applies every host's desired state; returns the total changes made. */
  async applyAll(): Promise<number> {
    let changes = 0;
    for (const [i, r] of this.reconcilers.entries()) changes += (await r.apply(this.stateFor(i + 1))).changes;
    return changes;
  }

  async down(): Promise<void> {
    for (const child of this.processes) child.kill('SIGTERM');
    for (const h of this.health) await h.close().catch(() => {});
    for (const overlay of this.overlays) await overlay.close().catch(() => {});
    for (const helper of this.helpers) await helper.stop().catch(() => {});
    await labDown(this.lab.prefix);
  }
}

/** `curl` inside a namespace; returns the body, or null on failure/timeout. */
export async function httpGet(netns: string, url: string): Promise<{ status: number; body: string } | null> {
  try {
    const out = await sh([
      'ip',
      'netns',
      'exec',
      netns,
      'curl',
      '-s',
      '--max-time',
      '3',
      '-w',
      '\n%{http_code}',
      url,
    ]);
    const lines = out.split('\n');
    const status = Number(lines.pop());
    return { status, body: lines.join('\n').trim() };
  } catch {
    return null;
  }
}
