/**
 * The acceptance lab of issue 6: 3 hosts (scripts/lab), networks `app` and
 * `ingress`, tasks t1 (h1) and t2 (h2) running fixtures/task-server.mjs, a
 * client sandbox c3 on h3, service `web` (VIP, published 30080 ingress) and
 * service `loc` (t1 only, published 30090 mode=local, health port 30091).
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
import { macFromIpv4, networkNetnsName, sandboxNetnsName } from '../../../dataplane/overlay/names.js';
import { buildNodeOverlay, type NodeOverlay } from '../../../dataplane/overlay/node.js';
import { Reconciler } from '../../../dataplane/reconciler/reconciler.js';
import { type LabHost, labDown, labUp, type NetnsLab } from '../../../scripts/lab/lab.js';
import {
  type DesiredState,
  EndpointMode,
  EndpointState,
  type Network,
  Protocol,
  PublishMode,
} from '../../../src/api/gen/meshd/v1/dataplane.js';

const macOf = macFromIpv4;

export async function sh(argv: string[], input?: string): Promise<string> {
  const result = await execa(argv[0]!, argv.slice(1), { reject: false, timeout: 20_000, input: input ?? '' });
  if (result.exitCode !== 0)
    throw new Error(`${argv.join(' ')} failed (exit ${result.exitCode}): ${String(result.stderr).trim()}`);
  return String(result.stdout);
}

const FIXTURES = fileURLToPath(new URL('./fixtures/', import.meta.url));
export const TASK_PORT = 8080;
export const WEB_VIP = '10.10.0.100';
export const WEB_PUBLISHED = 30080;
export const LOCAL_PUBLISHED = 30090;
export const LOCAL_HEALTH = 30091;

interface NetworkSpec {
  id: string;
  vni: number;
  prefix: string;
  ingress: boolean;
}
const NETWORKS: NetworkSpec[] = [
  { id: 'app', vni: 4097, prefix: '10.10.0', ingress: false },
  { id: 'ingress', vni: 4096, prefix: '10.255.0', ingress: true },
];
/** Tasks: id, host index, last octet on every network; `service` null for the client sandbox. */
const TASKS = [
  { id: 't1', host: 1, octet: 11, service: 'web', networks: ['app', 'ingress'] },
  { id: 't2', host: 2, octet: 12, service: 'web', networks: ['app', 'ingress'] },
  { id: 'c3', host: 3, octet: 23, service: null, networks: ['app'] },
];
const lbOctet = (host: number) => 250 + host;

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
      for (const task of TASKS) if (task.service !== null) await mesh.startTask(task.id);
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
    const task = TASKS.find((t) => t.id === taskId)!;
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
      ...NETWORKS.map((n) => ({ kind: 'network' as const, networkId: n.id })),
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

  /** The desired state of host `index` given the current endpoint states. */
  stateFor(index: number): DesiredState {
    const host = this.host(index);
    const nodeId = (i: number) => `n${i}`;
    const networks: Network[] = NETWORKS.map((spec) => ({
      id: spec.id,
      name: spec.id,
      vni: spec.vni,
      subnet: `${spec.prefix}.0/24`,
      gateway: `${spec.prefix}.1`,
      mtu: 1450,
      lbAddress: `${spec.prefix}.${lbOctet(index)}`,
      peers: this.lab.hosts
        .filter((h) => h !== host)
        .map((h) => ({ nodeId: nodeId(h.index), underlayAddress: h.address })),
      ingress: spec.ingress,
    }));
    const attachments = (task: (typeof TASKS)[number]) =>
      task.networks.map((networkId) => {
        const address = `${NETWORKS.find((n) => n.id === networkId)!.prefix}.${task.octet}`;
        return { networkId, address, mac: macOf(address) };
      });
    const remoteEndpoints = [];
    for (const other of this.lab.hosts) {
      if (other === host) continue;
      for (const spec of NETWORKS) {
        const address = `${spec.prefix}.${lbOctet(other.index)}`;
        remoteEndpoints.push({
          networkId: spec.id,
          address,
          mac: macOf(address),
          vtep: other.address,
          taskId: `lb-${other.name}`,
        });
      }
      for (const task of TASKS.filter((t) => t.host === other.index))
        for (const a of attachments(task))
          remoteEndpoints.push({ ...a, vtep: other.address, taskId: task.id });
    }
    const webEndpoints = [];
    for (const task of TASKS)
      for (const a of attachments(task)) {
        const state = task.service === 'web' ? this.endpoints.web.get(task.id) : undefined;
        if (state !== undefined)
          webEndpoints.push({
            taskId: task.id,
            taskName: task.id,
            nodeId: nodeId(task.host),
            networkId: a.networkId,
            address: a.address,
            state,
          });
      }
    const port = (
      publishedPort: number,
      publishMode: PublishMode,
      healthPort: number,
      targetPort = TASK_PORT,
    ) => ({
      name: targetPort === TASK_PORT ? 'http' : `p${targetPort}`,
      protocol: Protocol.PROTOCOL_TCP,
      targetPort,
      publishedPort,
      publishMode,
      healthPort,
    });
    return {
      version: 1,
      node: { id: nodeId(index), underlayAddress: host.address, dataPathPort: 0, underlayMtu: 1500 },
      networks,
      sandboxes: TASKS.filter((t) => t.host === index).map((t) => ({
        taskId: t.id,
        taskName: t.id,
        serviceId: t.service ?? '',
        attachments: attachments(t),
      })),
      remoteEndpoints,
      services: [
        {
          id: 'web',
          name: 'web',
          vips: [{ networkId: 'app', address: WEB_VIP }],
          ports: [
            port(WEB_PUBLISHED, PublishMode.PUBLISH_MODE_INGRESS, 0),
            ...this.extraWebPorts.map((p) =>
              port(p.publishedPort, PublishMode.PUBLISH_MODE_INGRESS, 0, p.targetPort),
            ),
          ],
          endpoints: webEndpoints,
          endpointMode: EndpointMode.ENDPOINT_MODE_VIP,
          lb: undefined,
        },
        {
          id: 'loc',
          name: 'loc',
          vips: [],
          ports: [port(LOCAL_PUBLISHED, PublishMode.PUBLISH_MODE_LOCAL, LOCAL_HEALTH)],
          endpoints: webEndpoints
            .filter((e) => e.taskId === 't1' && e.networkId === 'ingress')
            .map((e) => ({ ...e, state: EndpointState.ENDPOINT_STATE_ACTIVE })),
          endpointMode: EndpointMode.ENDPOINT_MODE_VIP,
          lb: undefined,
        },
      ],
      dns: undefined,
    };
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
