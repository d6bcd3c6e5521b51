import type { Clock } from '../../../src/common/clock.js';
import { subsystemLogger } from '../../../src/common/logger.js';
import type { IpvsDestination } from '../../netlink/ipvs/types.js';
import { sortBackends } from '../model.js';
import { planLbChanges } from '../plan.js';
import {
  ANY_LOCAL_ADDRESS,
  emptyLbState,
  type LbApplyResult,
  type LbChange,
  type LbScope,
  type LbScopeResolver,
  type LbState,
  type LbVirtualService,
  type LoadBalancer,
  scopeKey,
} from '../types.js';
import { type DrainTracker, destinationId, drainVerdict, startDrain } from './drain.js';
import type { IpvsNamespace, ScopeNetfilter } from './namespace.js';
import {
  DEFAULT_DRAIN_TIMEOUT_MS,
  fromIpvs,
  type IpvsServiceOptions,
  ipvsKeyOf,
  markToPublishedPort,
  publishedPortMark,
  scopeTimeouts,
  toIpvsDestinations,
  toIpvsService,
} from './translate.js';

export interface IpvsLoadBalancerOptions {
  /** Kernel access for the namespace that holds a scope (see LbScopeResolver). */
  namespaceFor: (netns: string | null) => IpvsNamespace;
  resolveScope: LbScopeResolver;
  /** The scopes `dump` reads. */
  listScopes: () => LbScope[];
  clock: Clock;
}

/**
 * The sysctls set in every scope namespace before its first service, each
 * for a reason:
 * - net.ipv4.ip_forward=1: a masqueraded reply from a remote endpoint is
 *   un-SNATed to the client's address and must be forwarded (without it the
 *   SYN-ACK died on the director in the VM lab).
 * - vs.conntrack=1: keep conntrack entries for IPVS connections, or the SNAT
 *   in postrouting never sees them (replies from remote endpoints went astray).
 * - vs.conn_reuse_mode=1: a new connection reusing a source port is scheduled
 *   afresh (so it avoids weight-0 destinations); the 1 s stall this caused
 *   with conntrack=1 was fixed in Linux 5.9.
 * - vs.expire_nodest_conn=1: packets of a connection whose destination was
 *   removed expire it at once instead of being dropped until the timeout
 *   (the stale-entry blackhole of moby#36878).
 * - vs.expire_quiescent_template=1: persistence templates to a weight-0
 *   destination expire, so draining really moves persistent clients away.
 */
export const LB_SYSCTLS: Readonly<Record<string, number>> = {
  'net.ipv4.ip_forward': 1,
  'net.ipv4.vs.conntrack': 1,
  'net.ipv4.vs.conn_reuse_mode': 1,
  'net.ipv4.vs.expire_nodest_conn': 1,
  'net.ipv4.vs.expire_quiescent_template': 1,
};

const log = subsystemLogger('lb-ipvs');

interface ScopeRuntime {
  scope: LbScope;
  netns: string | null;
  ns: IpvsNamespace;
  prepared: boolean;
}

/**
 * IPVS backend of the LoadBalancer interface. Services with a VIP are IPVS
 * services keyed by protocol + VIP + port; published ports (any local
 * address) are fwmark services marked by nftables (see translate.ts).
 * Destinations are masqueraded (DNAT) with SNAT to the scope's LB address.
 * Draining = weight 0 in the kernel; `sweepDrains` removes a draining
 * destination once it has no active connection or its deadline passed, and
 * flushes UDP conntrack entries of every removed destination.
 */
export class IpvsLoadBalancer implements LoadBalancer {
  readonly backendName = 'ipvs';
  private readonly scopes = new Map<string, ScopeRuntime>();
  private options = new Map<string, IpvsServiceOptions>();
  private readonly draining = new Map<
    string,
    DrainTracker & { service: LbVirtualService; address: string; port: number }
  >();
  /** Drained out of the kernel but still weight 0 in the desired state: dumps report them as they were. */
  private readonly retired = new Map<string, { serviceKey: string; address: string; port: number }>();
  /** Scheduler each service has in the kernel (from the last dump or apply). */
  private readonly kernelSchedulers = new Map<string, string>();
  /** The desired model last applied, for the netfilter/address state of each scope. */
  private readonly programmed = new Map<string, LbVirtualService>();

  constructor(private readonly config: IpvsLoadBalancerOptions) {}

  /** Per-service options (scheduler, timeouts, drain) from the desired state; see ipvsOptionsFromDesired. */
  setServiceOptions(options: Map<string, IpvsServiceOptions>): void {
    this.options = options;
  }

  private runtime(scope: LbScope): ScopeRuntime {
    const key = scopeKey(scope);
    let rt = this.scopes.get(key);
    if (rt === undefined) {
      const netns = this.config.resolveScope(scope);
      rt = { scope, netns, ns: this.config.namespaceFor(netns), prepared: false };
      this.scopes.set(key, rt);
    }
    return rt;
  }

  plan(desired: LbState, actual: LbState): LbChange[] {
    const changes = planLbChanges(desired, actual);
    const touched = new Set(changes.map((c) => c.service.key));
    // The model has no IPVS scheduler names: a scheduler change alone is found here.
    for (const [key, service] of desired.services) {
      const previous = actual.services.get(key);
      if (previous === undefined || touched.has(key)) continue;
      const want = toIpvsService(service, this.options.get(key)).scheduler;
      const have = this.kernelSchedulers.get(key);
      if (have !== undefined && have !== want) changes.push({ type: 'update-service', service, previous });
    }
    return changes;
  }

  async apply(changes: readonly LbChange[]): Promise<LbApplyResult> {
    let kernelOperations = 0;
    const touchedScopes = new Map<string, ScopeRuntime>();
    for (const change of changes) {
      const rt = this.runtime(change.service.scope);
      touchedScopes.set(scopeKey(rt.scope), rt);
      if (!rt.prepared) {
        for (const [name, value] of Object.entries(LB_SYSCTLS)) await rt.ns.setSysctl(name, value);
        rt.prepared = true;
        kernelOperations += Object.keys(LB_SYSCTLS).length;
      }
      kernelOperations += await this.applyChange(rt, change);
    }
    const namespaces = new Map([...touchedScopes.values()].map((rt) => [rt.netns, rt]));
    for (const rt of namespaces.values()) kernelOperations += await this.syncScope(rt);
    return { kernelOperations };
  }

  private async applyChange(rt: ScopeRuntime, change: LbChange): Promise<number> {
    const ipvs = await rt.ns.ipvs();
    const service = change.service;
    const key = ipvsKeyOf(service);
    let ops = 0;
    switch (change.type) {
      case 'add-service': {
        const svc = toIpvsService(service, this.options.get(service.key));
        await ipvs.addService(svc);
        this.kernelSchedulers.set(service.key, svc.scheduler);
        ops++;
        for (const dest of toIpvsDestinations(service)) {
          this.retired.delete(destinationId(service.key, dest.address, dest.port));
          await ipvs.addDestination(key, dest);
          if (dest.weight === 0) this.trackDrain(service, dest);
          ops++;
        }
        this.programmed.set(service.key, service);
        return ops;
      }
      case 'remove-service': {
        await ipvs.deleteService(key);
        ops++;
        for (const b of change.service.backends)
          ops += await this.forgetDestination(rt, service, b.address, b.port);
        this.kernelSchedulers.delete(service.key);
        this.programmed.delete(service.key);
        return ops;
      }
      case 'update-service': {
        const oldKey = ipvsKeyOf(change.previous);
        if (JSON.stringify(oldKey) !== JSON.stringify(key)) {
          // A published port that gains or loses SNAT changes its mark, hence its IPVS service.
          const removed = await this.applyChange(rt, { type: 'remove-service', service: change.previous });
          return removed + (await this.applyChange(rt, { type: 'add-service', service }));
        }
        const svc = toIpvsService(service, this.options.get(service.key));
        if (this.kernelSchedulers.get(service.key) !== svc.scheduler) {
          await ipvs.updateService(svc);
          this.kernelSchedulers.set(service.key, svc.scheduler);
          ops++;
        }
        const before = new Map(change.previous.backends.map((b) => [`${b.address}:${b.port}`, b]));
        const after = toIpvsDestinations(service);
        for (const dest of after) {
          const id = destinationId(service.key, dest.address, dest.port);
          const old = before.get(`${dest.address}:${dest.port}`);
          before.delete(`${dest.address}:${dest.port}`);
          if (old !== undefined && old.weight === dest.weight) continue;
          if (old === undefined || this.retired.has(id)) {
            this.retired.delete(id);
            await ipvs.addDestination(key, dest);
          } else {
            await ipvs.updateDestination(key, dest);
          }
          ops++;
          if (dest.weight === 0) this.trackDrain(service, dest);
          else this.draining.delete(id);
        }
        for (const gone of before.values()) {
          const id = destinationId(service.key, gone.address, gone.port);
          if (!this.retired.has(id)) {
            await ipvs.deleteDestination(key, gone.address, gone.port);
            ops++;
          }
          ops += await this.forgetDestination(rt, service, gone.address, gone.port);
        }
        this.programmed.set(service.key, service);
        return ops;
      }
    }
  }

  private trackDrain(service: LbVirtualService, dest: IpvsDestination): void {
    const id = destinationId(service.key, dest.address, dest.port);
    if (this.draining.has(id) || this.retired.has(id)) return;
    const timeoutMs = this.options.get(service.key)?.drainTimeoutMs ?? DEFAULT_DRAIN_TIMEOUT_MS;
    this.draining.set(id, {
      ...startDrain(this.config.clock.nowMs(), timeoutMs),
      service,
      address: dest.address,
      port: dest.port,
    });
  }

  /** A destination left the kernel: stop tracking it, flush its UDP conntrack entries. */
  private async forgetDestination(
    rt: ScopeRuntime,
    service: LbVirtualService,
    address: string,
    port: number,
  ): Promise<number> {
    const id = destinationId(service.key, address, port);
    this.draining.delete(id);
    this.retired.delete(id);
    if (service.protocol !== 'udp') return 0;
    const flushed = await rt.ns.flushUdpConntrack(address, port);
    log.debug({ service: service.key, address, port, flushed }, 'flushed UDP conntrack entries');
    return 1;
  }

  /** Netfilter + VIP addresses + timeouts of a scope, from what is programmed there now. */
  private async syncScope(rt: ScopeRuntime): Promise<number> {
    // Per namespace, not per scope: two scopes may share one (the VM tests put
    // every scope in the VM's own namespace), and one table and one set of
    // timeouts must then serve both.
    const services = [...this.programmed.values()].filter((s) => this.runtime(s.scope).netns === rt.netns);
    const spec: ScopeNetfilter = {
      snatAddress: services.find((s) => s.snatAddress !== null)?.snatAddress ?? null,
      vips: services
        .filter((s) => s.address !== ANY_LOCAL_ADDRESS)
        .map((s) => ({ protocol: s.protocol, address: s.address, port: s.port })),
      published: services
        .filter((s) => s.address === ANY_LOCAL_ADDRESS)
        .map((s) => ({
          protocol: s.protocol,
          port: s.port,
          mark: publishedPortMark(s.protocol, s.port, s.snatAddress !== null),
        })),
    };
    await rt.ns.syncNetfilter(spec);
    const wanted = scopeTimeouts(services.flatMap((s) => this.options.get(s.key) ?? []));
    if (wanted.tcpS + wanted.tcpFinS + wanted.udpS === 0) return 1;
    const ipvs = await rt.ns.ipvs();
    const have = await ipvs.getTimeouts();
    if (
      (wanted.tcpS === 0 || wanted.tcpS === have.tcpS) &&
      (wanted.tcpFinS === 0 || wanted.tcpFinS === have.tcpFinS) &&
      (wanted.udpS === 0 || wanted.udpS === have.udpS)
    ) {
      return 1;
    }
    await ipvs.setTimeouts(wanted);
    return 2;
  }

  /**
   * Removes draining destinations that have no active connection left or
   * whose deadline passed. Run before each dump (every sync), so drains
   * finish at the reconciler's cadence. Returns how many were removed.
   */
  async sweepDrains(): Promise<number> {
    let removed = 0;
    const now = this.config.clock.nowMs();
    const byService = new Map<string, { service: LbVirtualService; ids: string[] }>();
    for (const [id, t] of this.draining) {
      const entry = byService.get(t.service.key) ?? { service: t.service, ids: [] };
      entry.ids.push(id);
      byService.set(t.service.key, entry);
    }
    for (const { service, ids } of byService.values()) {
      const rt = this.runtime(service.scope);
      const ipvs = await rt.ns.ipvs();
      const key = ipvsKeyOf(service);
      const inKernel = new Map(
        (await ipvs.listDestinations(key).catch(() => [])).map((d) => [
          destinationId(service.key, d.address, d.port),
          d,
        ]),
      );
      for (const id of ids) {
        const t = this.draining.get(id);
        if (t === undefined) continue;
        const dest = inKernel.get(id);
        if (dest !== undefined && dest.weight !== 0) {
          this.draining.delete(id);
          continue;
        }
        if (dest !== undefined && drainVerdict(t, dest.activeConns ?? 0, now) === 'keep') continue;
        if (dest !== undefined) await ipvs.deleteDestination(key, t.address, t.port);
        await this.forgetDestination(rt, service, t.address, t.port);
        this.retired.set(id, { serviceKey: service.key, address: t.address, port: t.port });
        removed++;
        log.info({ service: service.key, address: t.address, port: t.port }, 'drained destination removed');
      }
    }
    return removed;
  }

  /**
   * The SNAT address of a scope's VIP services: what this process programmed,
   * else (a fresh process, e.g. `meshd dataplane dump`) what the scope's
   * netfilter table holds; only read when the scope has VIP services.
   */
  private async snatAddressOf(
    rt: ScopeRuntime,
    services: readonly { key: { kind: string } }[],
  ): Promise<string | null> {
    const programmed = [...this.programmed.values()].find(
      (s) => scopeKey(s.scope) === scopeKey(rt.scope) && s.snatAddress !== null,
    );
    if (programmed !== undefined) return programmed.snatAddress;
    if (!services.some((s) => s.key.kind === 'inet')) return null;
    return rt.ns.readSnatAddress();
  }

  async dump(): Promise<LbState> {
    const state = emptyLbState();
    for (const scope of this.config.listScopes()) {
      const rt = this.runtime(scope);
      const ipvs = await rt.ns.ipvs();
      const services = await ipvs.listServices();
      const snatAddress = await this.snatAddressOf(rt, services);
      for (const svc of services) {
        if (svc.key.kind === 'fwmark' && markToPublishedPort(svc.key.fwmark) === null) continue;
        const destinations = await ipvs.listDestinations(svc.key);
        const model = fromIpvs(scope, svc, destinations, snatAddress);
        if (model === null) continue;
        // Only published ports live in the host scope; VIPs only in network scopes.
        if ((scope.kind === 'host') !== (model.address === ANY_LOCAL_ADDRESS)) continue;
        const programmed = this.programmed.get(model.key);
        if (programmed !== undefined) model.scheduler = programmed.scheduler;
        for (const r of this.retired.values()) {
          if (r.serviceKey === model.key)
            model.backends.push({ address: r.address, port: r.port, weight: 0 });
        }
        sortBackends(model.backends);
        this.kernelSchedulers.set(model.key, svc.scheduler);
        state.services.set(model.key, model);
      }
    }
    return state;
  }
}
