/**
 * The netlink layer's values: plain JSON (addresses and MACs as text) so they
 * cross the namespace-helper IPC unchanged and diff with `===`.
 */
export type LinkKind = 'bridge' | 'vxlan' | 'veth';

export interface VxlanOptions {
  vni: number;
  /** UDP destination port; default 4789. */
  port?: number;
  /** Local VTEP address (IPv4 text). */
  local?: string;
  /** Always false in meshd (static FDB, no learning); settable for tests. */
  learning?: boolean;
  /** Answer ARP from the device's neighbour table (static entries) instead of flooding. */
  arpProxy?: boolean;
}

export interface VethOptions {
  peerName: string;
  /** `/run/netns/<name>`: create the peer directly inside that namespace. */
  peerNetnsPath?: string;
  peerMac?: string;
  peerMtu?: number;
}

export interface LinkSpec {
  name: string;
  kind: LinkKind;
  mtu?: number;
  mac?: string;
  vxlan?: VxlanOptions;
  veth?: VethOptions;
}

export interface LinkChange {
  /** Rename (the kernel requires the link to be down). */
  name?: string;
  up?: boolean;
  mtu?: number;
  mac?: string;
  /** Name of the bridge to enslave to; null releases the link. */
  master?: string | null;
  /** `/run/netns/<name>`: move the link into that namespace. */
  netnsPath?: string;
}

export interface LinkInfo {
  index: number;
  name: string;
  /** IFLA_INFO_KIND; undefined for loopback and other kind-less devices. */
  kind?: string;
  mtu: number;
  mac?: string;
  up: boolean;
  masterIndex?: number;
  vxlan?: { vni: number; port: number; local?: string; learning: boolean; arpProxy: boolean };
}

export interface AddrInfo {
  ifname: string;
  address: string;
  prefixLength: number;
}

export interface RouteSpec {
  /** CIDR text, or "default". */
  dst: string;
  gateway?: string;
  dev?: string;
  /** Preferred source address. */
  src?: string;
}

export interface RouteInfo extends RouteSpec {
  scope: 'universe' | 'link' | 'host' | 'other';
  protocol: number;
}

/** An ARP entry: IP → MAC on a device (PERMANENT when meshd writes it). */
export interface NeighSpec {
  dev: string;
  address: string;
  mac: string;
}

export interface NeighInfo extends NeighSpec {
  permanent: boolean;
}

/** A bridge FDB entry on a vxlan device: MAC → remote VTEP (`bridge fdb ... self permanent`). */
export interface FdbSpec {
  dev: string;
  mac: string;
  dst: string;
}

export interface FdbInfo {
  dev: string;
  mac: string;
  dst?: string;
  permanent: boolean;
  /** true when the entry lives in the device's own table (`self`), false for the bridge's. */
  self: boolean;
}
