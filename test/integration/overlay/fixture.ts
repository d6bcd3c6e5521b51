/**
 * A small overlay lab for the overlay/sandbox tests: scripts/lab hosts, each
 * with its own overlay + sandbox programmers driven like the reconciler does
 * (desired -> dump -> plan -> apply), and desired states for network `app`.
 */

import { NetnsHelper } from '../../../dataplane/netns/helper.js';
import { helperHostAccess } from '../../../dataplane/netns/host.js';
import { NetnsHelperPool } from '../../../dataplane/netns/pool.js';
import { macFromIpv4 } from '../../../dataplane/overlay/names.js';
import { type OverlayProgrammer, overlayProgrammer } from '../../../dataplane/overlay/programmer.js';
import { Reconciler } from '../../../dataplane/reconciler/reconciler.js';
import { type SandboxProgrammer, sandboxProgrammer } from '../../../dataplane/sandbox/programmer.js';
import { type LabHost, labDown, labUp, type NetnsLab } from '../../../scripts/lab/lab.js';
import { type DesiredState, EndpointMode } from '../../../src/api/gen/meshd/v1/dataplane.js';

export const VIP = '10.10.0.100';

export interface LabNode {
  host: LabHost;
  hostHelper: NetnsHelper;
  helpers: NetnsHelperPool;
  overlay: OverlayProgrammer;
  sandbox: SandboxProgrammer;
  /** The data plane's reconciler driving just these two programmers. */
  reconciler: Reconciler;
}

export interface TaskSpec {
  id: string;
  host: number;
  address: string;
}

export class OverlayLab {
  readonly nodes: LabNode[] = [];
  tasks: TaskSpec[] = [];

  private constructor(readonly lab: NetnsLab) {}

  static async up(prefix: string, hosts: number): Promise<OverlayLab> {
    const ol = new OverlayLab(await labUp({ prefix, hosts }));
    try {
      for (const host of ol.lab.hosts) {
        const hostHelper = await NetnsHelper.start(host.netns);
        const helpers = new NetnsHelperPool();
        const access = helperHostAccess(hostHelper);
        const overlay = overlayProgrammer({ hostPrefix: host.netnsPrefix, host: access, helpers });
        const sandbox = sandboxProgrammer({ hostPrefix: host.netnsPrefix, helpers });
        ol.nodes.push({
          host,
          hostHelper,
          helpers,
          overlay,
          sandbox,
          reconciler: new Reconciler([overlay, sandbox]),
        });
      }
    } catch (err) {
      await ol.down();
      throw err;
    }
    return ol;
  }

  node(index: number): LabNode {
    return this.nodes[index - 1]!;
  }

  stateFor(index: number, options: { withNetwork?: boolean } = {}): DesiredState {
    const me = this.node(index).host;
    const lb = (i: number) => `10.10.0.${250 + i}`;
    const withNetwork = options.withNetwork ?? true;
    const remote = [];
    for (const n of this.nodes) {
      if (n.host === me) continue;
      remote.push({
        networkId: 'app',
        address: lb(n.host.index),
        mac: macFromIpv4(lb(n.host.index)),
        vtep: n.host.address,
        taskId: '',
      });
      for (const t of this.tasks.filter((x) => x.host === n.host.index)) {
        remote.push({
          networkId: 'app',
          address: t.address,
          mac: macFromIpv4(t.address),
          vtep: n.host.address,
          taskId: t.id,
        });
      }
    }
    return {
      version: 1,
      node: { id: `n${index}`, underlayAddress: me.address, dataPathPort: 0, underlayMtu: 1500 },
      networks: withNetwork
        ? [
            {
              id: 'app',
              name: 'app',
              vni: 4097,
              subnet: '10.10.0.0/24',
              gateway: '10.10.0.1',
              mtu: 0,
              lbAddress: lb(index),
              peers: this.nodes
                .filter((n) => n.host !== me)
                .map((n) => ({ nodeId: `n${n.host.index}`, underlayAddress: n.host.address })),
              ingress: false,
            },
          ]
        : [],
      sandboxes: withNetwork
        ? this.tasks
            .filter((t) => t.host === index)
            .map((t) => ({
              taskId: t.id,
              taskName: t.id,
              serviceId: 'web',
              attachments: [{ networkId: 'app', address: t.address, mac: macFromIpv4(t.address) }],
            }))
        : [],
      remoteEndpoints: withNetwork ? remote : [],
      services: withNetwork
        ? [
            {
              id: 'web',
              name: 'web',
              vips: [{ networkId: 'app', address: VIP }],
              ports: [],
              endpoints: [],
              endpointMode: EndpointMode.ENDPOINT_MODE_VIP,
              lb: undefined,
            },
          ]
        : [],
      dns: undefined,
    };
  }

  /** Reconciles host `index` to its desired state through the reconciler; returns the changes made. */
  async apply(index: number, state = this.stateFor(index)): Promise<number> {
    return (await this.node(index).reconciler.apply(state)).changes;
  }

  /** A resync of host `index` (re-reads the kernel); returns the drift it repaired. */
  async resync(index: number): Promise<number> {
    return (await this.node(index).reconciler.resync())?.changes ?? 0;
  }

  async down(): Promise<void> {
    for (const n of this.nodes) {
      await n.helpers.stopAll().catch(() => {});
      await n.hostHelper.stop().catch(() => {});
    }
    await labDown(this.lab.prefix);
  }
}
