import type { Clock } from '../../../src/common/clock.js';
import { MeshError } from '../../../src/common/errors.js';
import { subsystemLogger } from '../../../src/common/logger.js';
import type { IpvsDestination, IpvsRequest } from '../../netlink/ipvs/types.js';
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
import type { IpvsNamespace } from './namespace.js';
import { LB_SYSCTLS } from './sysctls.js';
import {
  DEFAULT_DRAIN_TIMEOUT_MS,
  fromIpvs,
  type IpvsServiceOptions,
  ipvsKeyOf,
  markToPublishedPort,
  netfilterSpecOf,
  sameTimeouts,
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

export { LB_SYSCTLS };

const log = subsystemLogger('lb-ipvs');

interface ScopeRuntime {
  scope: LbScope;
  netns: string | null;
  ns: IpvsNamespace;
  prepared: boolean;
}

/** What one apply does in one namespace: IPVS requests sent as one batch, then the rest. */
interface NamespaceWork {
  rt: ScopeRuntime;
  requests: IpvsRequest[];
  /** Removed UDP destinations, flushed from conntrack once the batch has removed them. */
  udpFlushes: { serviceKey: string; address: string; port: number }[];
  /** A service came, went, or changed its SNAT: the netfilter table and VIP addresses follow. */
  netfilterChanged: boolean;
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
  /** The same services by the namespace that holds them (null: this process's). */
  private readonly programmedIn = new Map<string | null, Map<string, LbVirtualService>>();
  /** Some service's timeouts changed since the last apply: every namespace re-checks its own. */
  private timeoutsChanged = false;

  constructor(private readonly config: IpvsLoadBalancerOptions) {}

  /** Per-service options (scheduler, timeouts, drain) from the desired state; see ipvsOptionsFromDesired. */
  setServiceOptions(options: Map<string, IpvsServiceOptions>): void {
    if (!sameTimeouts(this.options, options)) this.timeoutsChanged = true;
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
    const work = new Map<string | null, NamespaceWork>();
    for (const change of changes) {
      const rt = this.runtime(change.service.scope);
      if (!rt.prepared) {
        await rt.ns.setSysctls(LB_SYSCTLS);
        rt.prepared = true;
        kernelOperations += Object.keys(LB_SYSCTLS).length;
      }
      let w = work.get(rt.netns);
      if (w === undefined) {
        w = { rt, requests: [], udpFlushes: [], netfilterChanged: false };
        work.set(rt.netns, w);
      }
      this.planChange(change, w);
    }
    if (this.timeoutsChanged) {
      for (const rt of this.scopes.values()) {
        if (!work.has(rt.netns) && this.programmedIn.has(rt.netns))
          work.set(rt.netns, { rt, requests: [], udpFlushes: [], netfilterChanged: false });
      }
    }
    const failures: string[] = [];
    let requested = 0;
    for (const w of work.values()) {
      if (w.requests.length > 0) {
        const ipvs = await w.rt.ns.ipvs();
        for (const f of await ipvs.batch(w.requests)) failures.push(`${f.code}: ${f.message}`);
        requested += w.requests.length;
        kernelOperations += w.requests.length;
      }
      for (const f of w.udpFlushes)
        kernelOperations += await this.flushUdp(w.rt, f.serviceKey, f.address, f.port);
      // A change that leaves every service's address, port and SNAT as they were
      // (an endpoint added, removed or reweighted) touches neither the netfilter
      // table nor the VIP addresses: rendering them costs O(services) per change
      // (849 ms at 5k services in the emulated VM lab before this).
      if (w.netfilterChanged) kernelOperations += await this.syncNetfilter(w.rt);
      if (w.netfilterChanged || this.timeoutsChanged) kernelOperations += await this.syncTimeouts(w.rt);
    }
    this.timeoutsChanged = false;
    if (failures.length > 0) {
      throw new MeshError(
        'IPVS_APPLY_FAILED',
        `IPVS: ${failures.length} of ${requested} requests failed (the next sync retries them); first: ${failures[0]}`,
        { details: { failures: failures.slice(0, 20) } },
      );
    }
    return { kernelOperations };
  }

  /** The IPVS requests of one change, appended to its namespace's work; bookkeeping updated as if they succeed. */
  private planChange(change: LbChange, w: NamespaceWork): void {
    const service = change.service;
    const key = ipvsKeyOf(service);
    switch (change.type) {
      case 'add-service': {
        const svc = toIpvsService(service, this.options.get(service.key));
        w.requests.push({ op: 'addService', service: svc });
        this.kernelSchedulers.set(service.key, svc.scheduler);
        for (const dest of toIpvsDestinations(service)) {
          this.retired.delete(destinationId(service.key, dest.address, dest.port));
          w.requests.push({ op: 'addDestination', key, dest });
          if (dest.weight === 0) this.trackDrain(service, dest);
        }
        this.setProgrammed(w.rt.netns, service);
        w.netfilterChanged = true;
        return;
      }
      case 'remove-service': {
        w.requests.push({ op: 'deleteService', key });
        for (const b of change.service.backends) this.forgetDestination(w, service, b.address, b.port);
        this.kernelSchedulers.delete(service.key);
        this.setProgrammed(w.rt.netns, service, false);
        w.netfilterChanged = true;
        return;
      }
      case 'update-service': {
        const oldKey = ipvsKeyOf(change.previous);
        if (JSON.stringify(oldKey) !== JSON.stringify(key)) {
          // A published port that gains or loses SNAT changes its mark, hence its IPVS service.
          this.planChange({ type: 'remove-service', service: change.previous }, w);
          this.planChange({ type: 'add-service', service }, w);
          return;
        }
        if (change.previous.snatAddress !== service.snatAddress) w.netfilterChanged = true;
        const svc = toIpvsService(service, this.options.get(service.key));
        if (this.kernelSchedulers.get(service.key) !== svc.scheduler) {
          w.requests.push({ op: 'updateService', service: svc });
          this.kernelSchedulers.set(service.key, svc.scheduler);
        }
        const before = new Map(change.previous.backends.map((b) => [`${b.address}:${b.port}`, b]));
        for (const dest of toIpvsDestinations(service)) {
          const id = destinationId(service.key, dest.address, dest.port);
          const old = before.get(`${dest.address}:${dest.port}`);
          before.delete(`${dest.address}:${dest.port}`);
          if (old !== undefined && old.weight === dest.weight) continue;
          if (old === undefined || this.retired.has(id)) {
            this.retired.delete(id);
            w.requests.push({ op: 'addDestination', key, dest });
          } else {
            w.requests.push({ op: 'updateDestination', key, dest });
          }
          if (dest.weight === 0) this.trackDrain(service, dest);
          else this.draining.delete(id);
        }
        for (const gone of before.values()) {
          const id = destinationId(service.key, gone.address, gone.port);
          if (!this.retired.has(id))
            w.requests.push({ op: 'deleteDestination', key, address: gone.address, port: gone.port });
          this.forgetDestination(w, service, gone.address, gone.port);
        }
        this.setProgrammed(w.rt.netns, service);
        return;
      }
    }
  }

  private setProgrammed(netns: string | null, service: LbVirtualService, present = true): void {
    let inNetns = this.programmedIn.get(netns);
    if (inNetns === undefined) {
      inNetns = new Map();
      this.programmedIn.set(netns, inNetns);
    }
    if (present) {
      this.programmed.set(service.key, service);
      inNetns.set(service.key, service);
    } else {
      this.programmed.delete(service.key);
      inNetns.delete(service.key);
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

  /** A destination leaves the kernel: stop tracking it; a UDP one gets its conntrack entries flushed after the batch. */
  private forgetDestination(
    w: NamespaceWork,
    service: LbVirtualService,
    address: string,
    port: number,
  ): void {
    const id = destinationId(service.key, address, port);
    this.draining.delete(id);
    this.retired.delete(id);
    if (service.protocol === 'udp') w.udpFlushes.push({ serviceKey: service.key, address, port });
  }

  private async flushUdp(
    rt: ScopeRuntime,
    serviceKey: string,
    address: string,
    port: number,
  ): Promise<number> {
    const flushed = await rt.ns.flushUdpConntrack(address, port);
    log.debug({ service: serviceKey, address, port, flushed }, 'flushed UDP conntrack entries');
    return 1;
  }

  /** Netfilter table + VIP addresses of a namespace, from what is programmed there now. */
  private async syncNetfilter(rt: ScopeRuntime): Promise<number> {
    // Per namespace, not per scope: two scopes may share one (the VM tests put
    // every scope in the VM's own namespace), and one table must then serve both.
    await rt.ns.syncNetfilter(netfilterSpecOf([...(this.programmedIn.get(rt.netns)?.values() ?? [])]));
    return 1;
  }

  /** IPVS idle timeouts of a namespace: the largest any of its services asked for (0 = leave the kernel's). */
  private async syncTimeouts(rt: ScopeRuntime): Promise<number> {
    const services = this.programmedIn.get(rt.netns)?.values() ?? [];
    const wanted = scopeTimeouts([...services].flatMap((s) => this.options.get(s.key) ?? []));
    if (wanted.tcpS + wanted.tcpFinS + wanted.udpS === 0) return 0;
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
        this.draining.delete(id);
        if (service.protocol === 'udp') await this.flushUdp(rt, service.key, t.address, t.port);
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
