import type {
  AddrInfo,
  FdbInfo,
  FdbSpec,
  LinkChange,
  LinkInfo,
  LinkSpec,
  NeighInfo,
  NeighSpec,
  RouteInfo,
  RouteSpec,
} from './types.js';

/** A remote endpoint as the vxlan device sees it: IP → MAC (neighbour), MAC → VTEP (FDB). */
export interface VxlanPeer {
  address: string;
  mac: string;
  vtep: string;
}

/**
 * Every rtnetlink operation meshd performs. `Rtnl` runs them on a netlink
 * socket of this process's namespace; `helperRtnl` (remote.ts) runs the same
 * methods inside another namespace through its helper.
 */
export interface RtnlOps {
  links(): Promise<LinkInfo[]>;
  addLink(spec: LinkSpec): Promise<void>;
  setLink(name: string, change: LinkChange): Promise<void>;
  delLink(name: string): Promise<void>;
  addrs(): Promise<AddrInfo[]>;
  addAddr(dev: string, cidr: string): Promise<void>;
  delAddr(dev: string, cidr: string): Promise<void>;
  routes(): Promise<RouteInfo[]>;
  addRoute(spec: RouteSpec): Promise<void>;
  delRoute(spec: RouteSpec): Promise<void>;
  neighs(): Promise<NeighInfo[]>;
  replaceNeigh(spec: NeighSpec): Promise<void>;
  delNeigh(spec: NeighSpec): Promise<void>;
  fdb(): Promise<FdbInfo[]>;
  replaceFdb(spec: FdbSpec): Promise<void>;
  delFdb(spec: FdbSpec): Promise<void>;
  /** Static FDB + permanent neighbour entry per remote endpoint on a vxlan, pipelined. */
  replaceVxlanPeers(dev: string, peers: VxlanPeer[]): Promise<void>;
  /** Removes them; entries already gone are not an error. */
  delVxlanPeers(dev: string, peers: VxlanPeer[]): Promise<void>;
}

export const RTNL_METHODS: readonly (keyof RtnlOps)[] = [
  'links',
  'addLink',
  'setLink',
  'delLink',
  'addrs',
  'addAddr',
  'delAddr',
  'routes',
  'addRoute',
  'delRoute',
  'neighs',
  'replaceNeigh',
  'delNeigh',
  'fdb',
  'replaceFdb',
  'delFdb',
  'replaceVxlanPeers',
  'delVxlanPeers',
];
