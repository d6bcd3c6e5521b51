import type { DesiredState } from '../../src/api/gen/meshd/v1/dataplane.js';
import type { RouteSpec } from '../netlink/types.js';
import { DEFAULT_UNDERLAY_MTU, VXLAN_OVERHEAD_BYTES } from '../overlay/model.js';
import { networkNetnsName, sandboxIfName, sandboxNetnsName, sandboxVethName } from '../overlay/names.js';

/** The embedded DNS address every task resolves through (served by meshd via socket handoff). */
export const EMBEDDED_DNS = '127.0.0.11';

export interface SandboxAttachment {
  /** eth0, eth1, ... inside the sandbox. */
  ifname: string;
  networkNetns: string;
  /** The veth end on the network's bridge. */
  vethName: string;
  mac: string;
  address: string;
  prefixLength: number;
  mtu: number;
}

export interface SandboxModel {
  netns: string;
  taskId: string;
  attachments: SandboxAttachment[];
  /** Sorted by dst. VIPs via their network's gateway; default via the ingress (else first) network's gateway. */
  routes: RouteSpec[];
  resolvConf: string;
  /** Always true when desired: 127.0.0.11 (embedded DNS) and local services need it. */
  loopbackUp: boolean;
}

export interface SandboxesModel {
  /** By namespace name. */
  sandboxes: Map<string, SandboxModel>;
}

export function resolvConfText(): string {
  return `nameserver ${EMBEDDED_DNS}\noptions ndots:0\n`;
}

export function routeKey(r: RouteSpec): string {
  return `${r.dst} via ${r.gateway ?? '-'} dev ${r.dev ?? '-'}`;
}

/** What a dump can see of an attachment from inside the sandbox; the rest is derived. */
export function attachmentSignature(a: SandboxAttachment): string {
  return JSON.stringify([a.ifname, a.mac, a.address, a.prefixLength, a.mtu]);
}

/** Pure: the sandboxes this node should have. Assumes a validated state. */
export function desiredSandboxes(state: DesiredState, hostPrefix: string): SandboxesModel {
  const underlayMtu = state.node?.underlayMtu || DEFAULT_UNDERLAY_MTU;
  const networks = new Map(state.networks.map((n) => [n.id, n]));
  const out: SandboxesModel = { sandboxes: new Map() };
  for (const s of state.sandboxes) {
    const netns = sandboxNetnsName(hostPrefix, s.taskId);
    const attachments: SandboxAttachment[] = [];
    const routes = new Map<string, RouteSpec>();
    // Default route: through the ingress network when attached (replies to published-port
    // clients must leave the way they came), else through the first attachment.
    const defaultIndex = Math.max(
      0,
      s.attachments.findIndex((x) => networks.get(x.networkId)?.ingress === true),
    );
    for (const [i, a] of s.attachments.entries()) {
      const n = networks.get(a.networkId);
      if (n === undefined) continue;
      const ifname = sandboxIfName(i);
      attachments.push({
        ifname,
        networkNetns: networkNetnsName(hostPrefix, n.id),
        vethName: sandboxVethName(s.taskId, i),
        mac: a.mac,
        address: a.address,
        prefixLength: Number(n.subnet.split('/')[1] ?? '32'),
        mtu: n.mtu || underlayMtu - VXLAN_OVERHEAD_BYTES,
      });
      if (i === defaultIndex && n.gateway !== '') {
        routes.set('default', { dst: 'default', gateway: n.gateway, dev: ifname });
      }
      // VIPs sit inside the subnet but nothing answers ARP for them: route them to the
      // network namespace, where the load balancer rewrites the destination.
      for (const svc of state.services) {
        for (const vip of svc.vips) {
          if (vip.networkId !== n.id || vip.address === '' || n.gateway === '') continue;
          const dst = `${vip.address}/32`;
          if (!routes.has(dst)) routes.set(dst, { dst, gateway: n.gateway, dev: ifname });
        }
      }
    }
    out.sandboxes.set(netns, {
      netns,
      taskId: s.taskId,
      attachments,
      routes: [...routes.values()].sort((x, y) => x.dst.localeCompare(y.dst)),
      resolvConf: resolvConfText(),
      loopbackUp: true,
    });
  }
  return out;
}
