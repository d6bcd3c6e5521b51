/**
 * The backend-neutral model of one node's load-balancer state, and the one
 * interface every backend (nftables here, IPVS in dataplane/lb/ipvs/) implements.
 *
 * A node programs virtual services in *scopes*: the host namespace (published
 * ports arriving on the node's own addresses) and one namespace per overlay
 * network (VIPs, and the ingress network's routing mesh). A backend maps a
 * scope to a kernel namespace through the `LbScopeResolver` it is given.
 *
 * The same model value works for both backends: IPVS programs a virtual
 * service per (address, protocol, port) with real servers and weights (weight
 * 0 = draining), nftables a map element and a selection chain.
 */

export type LbProtocol = 'tcp' | 'udp';

/** How a backend picks an endpoint for a new connection. */
export type LbScheduler = 'random' | 'source-hash';

/** Where a virtual service is programmed. */
export type LbScope = { kind: 'host' } | { kind: 'network'; networkId: string };

/** Address of a virtual service that matches every local address of its scope (published ports). */
export const ANY_LOCAL_ADDRESS = '*';

export interface LbBackend {
  address: string;
  port: number;
  /** 0 = draining: no new connections, open ones live on (conntrack / IPVS keep them). */
  weight: number;
}

export interface LbVirtualService {
  /** Stable identity: `scopeKey(scope)/protocol/address:port`, see `virtualServiceKey`. */
  key: string;
  scope: LbScope;
  protocol: LbProtocol;
  /** A VIP, or ANY_LOCAL_ADDRESS for a published port. */
  address: string;
  port: number;
  scheduler: LbScheduler;
  /**
   * Source address for balanced connections (the node's LB address on the
   * network), so replies return through this node. null keeps the client's
   * source address (mode=local, and the host's hop into the ingress network).
   */
  snatAddress: string | null;
  /** Sorted by address then port; weight 0 entries are draining. */
  backends: LbBackend[];
}

/** An HTTP health port for mode=local published ports: 200 when `healthy`, 503 otherwise. */
export interface LbHealthPort {
  port: number;
  serviceId: string;
  healthy: boolean;
}

/** Everything the load balancer of one node should (or does) hold. */
export interface LbState {
  /** By `key`. */
  services: Map<string, LbVirtualService>;
  /** By port. Health ports are served by the daemon, not the kernel backend. */
  healthPorts: Map<number, LbHealthPort>;
}

/** One kernel-level change. `plan` returns the minimum list; `apply` performs it. */
export type LbChange =
  | { type: 'add-service'; service: LbVirtualService }
  | { type: 'remove-service'; service: LbVirtualService }
  /** Scheduler, SNAT address or the backend set changed; carries the whole new value. */
  | { type: 'update-service'; service: LbVirtualService; previous: LbVirtualService };

export interface LbApplyResult {
  /** Kernel objects written (elements, chains, rules; IPVS messages). */
  kernelOperations: number;
}

export interface LoadBalancer {
  readonly backendName: string;
  /** Pure: the changes that turn `actual` into `desired`. Equal states give []. */
  plan(desired: LbState, actual: LbState): LbChange[];
  /** Performs `changes` atomically per scope where the backend can. */
  apply(changes: readonly LbChange[]): Promise<LbApplyResult>;
  /** Reads what the kernel holds, in the same model (health ports excluded: empty map). */
  dump(): Promise<LbState>;
}

/** Maps a scope to the network namespace name that holds it (null = the current namespace). */
export type LbScopeResolver = (scope: LbScope) => string | null;

export function scopeKey(scope: LbScope): string {
  return scope.kind === 'host' ? 'host' : `net:${scope.networkId}`;
}

export function virtualServiceKey(
  scope: LbScope,
  protocol: LbProtocol,
  address: string,
  port: number,
): string {
  return `${scopeKey(scope)}/${protocol}/${address}:${port}`;
}

export function emptyLbState(): LbState {
  return { services: new Map(), healthPorts: new Map() };
}
