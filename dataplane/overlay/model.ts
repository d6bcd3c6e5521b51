import type { DesiredState } from '../../src/api/gen/meshd/v1/dataplane.js';
import { BRIDGE_IF, macFromIpv4, networkNetnsName } from './names.js';

/** One overlay network on this node, as the kernel should hold it. */
export interface OverlayNetwork {
  netns: string;
  vni: number;
  port: number;
  /** This node's underlay address: the VTEP. */
  local: string;
  mtu: number;
  bridgeMac: string;
  /** On the bridge, CIDR text, sorted: the gateway and this node's LB address. */
  addresses: string[];
  subnet: string;
}

/** A remote endpoint (a task or a peer's LB address): static FDB + neighbour entry on the vxlan. */
export interface OverlayPeerEntry {
  netns: string;
  address: string;
  mac: string;
  vtep: string;
}

export interface OverlayModel {
  /** By namespace name. */
  networks: Map<string, OverlayNetwork>;
  /** By `entryKey`. */
  entries: Map<string, OverlayPeerEntry>;
  /** Subnets masqueraded when they leave the node (egress), sorted. */
  egressSubnets: string[];
}

export interface OverlayOptions {
  /** Prefix of every namespace this node creates, e.g. "mdkh1-" in the lab, "md-" on a host. */
  hostPrefix: string;
}

export const DEFAULT_VXLAN_PORT = 4789;
export const DEFAULT_UNDERLAY_MTU = 1500;
/** Outer Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8. */
export const VXLAN_OVERHEAD_BYTES = 50;

export function entryKey(e: { netns: string; address: string }): string {
  return `${e.netns}|${e.address}`;
}

export function emptyOverlayModel(): OverlayModel {
  return { networks: new Map(), entries: new Map(), egressSubnets: [] };
}

/** Pure: what the overlay of this node should be. Assumes a validated state. */
export function desiredOverlay(state: DesiredState, options: OverlayOptions): OverlayModel {
  const node = state.node;
  const model = emptyOverlayModel();
  const underlayMtu = node?.underlayMtu || DEFAULT_UNDERLAY_MTU;
  const netnsOf = new Map<string, string>();
  for (const n of state.networks) {
    const netns = networkNetnsName(options.hostPrefix, n.id);
    netnsOf.set(n.id, netns);
    const prefixLength = n.subnet.split('/')[1] ?? '32';
    const addresses = [n.gateway, n.lbAddress].filter((a) => a !== '').map((a) => `${a}/${prefixLength}`);
    model.networks.set(netns, {
      netns,
      vni: n.vni,
      port: node?.dataPathPort || DEFAULT_VXLAN_PORT,
      local: node?.underlayAddress ?? '',
      mtu: n.mtu || underlayMtu - VXLAN_OVERHEAD_BYTES,
      bridgeMac: macFromIpv4(n.lbAddress || n.gateway),
      addresses: [...new Set(addresses)].sort(),
      subnet: n.subnet,
    });
  }
  for (const r of state.remoteEndpoints) {
    const netns = netnsOf.get(r.networkId);
    if (netns === undefined) continue;
    const entry = { netns, address: r.address, mac: r.mac, vtep: r.vtep };
    model.entries.set(entryKey(entry), entry);
  }
  model.egressSubnets = [...new Set(state.networks.map((n) => n.subnet))].sort();
  return model;
}

/**
 * Everything about a network that, when different, means rebuilding it. The
 * bridge's addresses and MAC are not in it: they change in place, because a
 * node's LB address on a network arrives after the network itself (the
 * allocator attaches it a moment later), and rebuilding then deleted and
 * re-made the namespace under the same name, taking the sandboxes' veths and
 * every helper's hold on it along.
 */
export function networkSignature(n: OverlayNetwork): string {
  return JSON.stringify([n.vni, n.port, n.local, n.mtu, n.subnet]);
}

/** The part of a network that is changed in place (see networkSignature). */
export function bridgeSignature(n: OverlayNetwork): string {
  return JSON.stringify([n.bridgeMac, n.addresses]);
}

export { BRIDGE_IF };
