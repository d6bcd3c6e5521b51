/**
 * nftables load-balancer backend (kube-proxy's nftables proxier is the model,
 * with per-service state moved from chains into map elements).
 *
 * One table `ip meshd` per scope namespace (the host namespace, and each
 * overlay network's namespace):
 *
 *   map vips       { ipv4_addr . inet_proto . inet_service : verdict }  VIP . proto . port -> goto selector
 *   map ports      { inet_proto . inet_service : verdict }              published port on any local address
 *   map vip_slots_{tcp,udp}  { VIP . proto . port . slot : backend addr . port }  slot 0..N-1; weight w = w slots
 *   map port_slots_{tcp,udp} { proto . port . slot : backend addr . port }
 *   set draining   { VIP|0.0.0.0 . proto . port . backend addr . port } bookkeeping only, read back by dump
 *
 *   chain prerouting  (nat, dstnat)  ip daddr . l4proto . th dport vmap @vips
 *                                    fib daddr type local  l4proto . th dport vmap @ports
 *   chain output      (nat, -100)    the same two rules, for locally originated connections
 *   chain postrouting (nat, srcnat)  meta mark & SNAT_MARK  snat ip to <the scope's LB address>
 *
 *   chain sel_<proto>_<r|h>_<s|n>_<N>  shared by every service with N slots:
 *     meta l4proto P [mark |= SNAT_MARK] dnat ip to ip daddr . l4proto . P dport
 *                                         . (numgen random | jhash ip saddr) mod N  map @vip_slots_P
 *   chain psel_...                      the same over @port_slots_P for published ports
 *   N = 0 (no active backend): the selector rejects instead (tcp reset)
 *
 * Packet path: the first packet of a connection hits prerouting; the vmap jumps
 * to the selector for the service's slot count, which picks a slot and DNATs to
 * it. Conntrack remembers the mapping, so only new connections are balanced: an
 * established flow survives its backend turning draining (its slots removed,
 * it stays in `draining`) or being removed. Connections marked by a selector
 * are SNATed to the node's LB address so replies come back through this node.
 *
 * UDP has no connection end, so removing a UDP backend also deletes the conntrack entries
 * whose replies come from it (`conntrack -D`); a draining one keeps them.
 *
 * So a change to a service is element updates only (its verdict, its slots,
 * its draining entries), and the few selector chains are shared. All changes of
 * one sync go to each namespace as one atomic `nft -f` transaction.
 */
import { subsystemLogger } from '../../../src/common/logger.js';
import { planLbChanges } from '../plan.js';
import {
  emptyLbState,
  type LbApplyResult,
  type LbChange,
  type LbScope,
  type LbScopeResolver,
  type LbState,
  type LoadBalancer,
  scopeKey,
} from '../types.js';
import type { NftExecutor } from './executor.js';
import { parseScopeDump } from './parse.js';
import {
  footprintOf,
  keysOf,
  renderSelectorChain,
  renderServiceElements,
  renderSkeleton,
  type ServiceFootprint,
  selectorChainName,
  selectorOf,
  TABLE,
} from './render.js';

export interface NftLoadBalancerOptions {
  executor: NftExecutor;
  resolveScope: LbScopeResolver;
  /** The scopes `dump` reads (the host and every network this node takes part in). */
  listScopes: () => LbScope[];
}

const log = subsystemLogger('lb-nft');

/** What this process knows a scope's table holds (from the last dump or apply). */
interface ScopeKnowledge {
  /** False: the base maps/chains must be (re)written before anything else. */
  skeletonIntact: boolean;
  snatAddress: string | null;
  selectors: Set<string>;
  verdicts: Set<string>;
  footprints: Map<string, ServiceFootprint>;
}

export class NftLoadBalancer implements LoadBalancer {
  readonly backendName = 'nftables';
  private readonly scopes = new Map<string, ScopeKnowledge>();

  constructor(private readonly options: NftLoadBalancerOptions) {}

  plan(desired: LbState, actual: LbState): LbChange[] {
    return planLbChanges(desired, actual);
  }

  async apply(changes: readonly LbChange[]): Promise<LbApplyResult> {
    const byScope = new Map<string, LbChange[]>();
    for (const change of changes) {
      const key = scopeKey(change.service.scope);
      const list = byScope.get(key);
      if (list === undefined) byScope.set(key, [change]);
      else list.push(change);
    }
    let kernelOperations = 0;
    for (const [key, scopeChanges] of byScope) {
      const scope = scopeChanges[0]!.service.scope;
      const known = this.scopes.get(key);
      // Updated in place (a copy would make every change O(services)); forgotten while the
      // transaction is in flight, so a failure leaves nothing stale behind.
      const next: ScopeKnowledge = known ?? {
        skeletonIntact: false,
        snatAddress: null,
        selectors: new Set(),
        verdicts: new Set(),
        footprints: new Map(),
      };
      this.scopes.delete(key);
      const wantSnat = scopeChanges.find((c) => c.type !== 'remove-service' && c.service.snatAddress !== null)
        ?.service.snatAddress;
      const script: string[] = [];
      if (!next.skeletonIntact || (wantSnat !== undefined && wantSnat !== next.snatAddress)) {
        next.snatAddress = wantSnat ?? next.snatAddress;
        next.skeletonIntact = true;
        script.push(...renderSkeleton(next.snatAddress));
      }
      const deletes: string[] = [];
      const adds: string[] = [];
      for (const change of scopeChanges) {
        const keys = keysOf(change.service);
        const old = {
          footprint: next.footprints.get(keys.key) ?? { slotIndexes: [], draining: [] },
          hasVerdict: next.verdicts.has(keys.key),
        };
        const target = change.type === 'remove-service' ? null : change.service;
        if (target !== null) {
          // Neighbouring slot counts are written along with a new selector: adding a chain that
          // DNATs through a map makes the kernel re-validate the whole table (O(services)), so a
          // later one-endpoint change must not be the one that creates its chain.
          const selector = selectorOf(target);
          for (const slots of new Set([
            Math.max(0, selector.slots - 1),
            selector.slots,
            selector.slots + 1,
          ])) {
            const name = selectorChainName({ ...selector, slots });
            if (next.selectors.has(name)) continue;
            script.push(...renderSelectorChain({ ...selector, slots }));
            next.selectors.add(name);
          }
        }
        const rendered = renderServiceElements(keys, old, target);
        deletes.push(...rendered.deletes);
        adds.push(...rendered.adds);
        if (target === null) {
          next.footprints.delete(keys.key);
          next.verdicts.delete(keys.key);
        } else {
          next.footprints.set(keys.key, footprintOf(target));
          next.verdicts.add(keys.key);
        }
      }
      script.push(...deletes.map((d) => `delete element ${d}`), ...adds.map((a) => `add element ${a}`));
      kernelOperations += script.length;
      const namespace = this.options.resolveScope(scope);
      try {
        await this.options.executor.run(namespace, `${script.join('\n')}\n`);
      } catch (err) {
        // The transaction is atomic and nothing changed, but our knowledge may be stale: re-read next time.
        this.scopes.delete(key);
        throw err;
      }
      this.scopes.set(key, next);
      log.debug({ scope: key, namespace, commands: script.length }, 'nft transaction applied');
      kernelOperations += await this.flushRemovedUdpBackends(namespace, scopeChanges);
    }
    return { kernelOperations };
  }

  async dump(): Promise<LbState> {
    const state = emptyLbState();
    for (const scope of this.options.listScopes()) {
      const key = scopeKey(scope);
      const json = await this.options.executor.listTableJson(this.options.resolveScope(scope), TABLE);
      if (json === null) {
        this.scopes.delete(key);
        continue;
      }
      const dump = parseScopeDump(scope, json);
      // Element knowledge stays valid when the skeleton is damaged: the repair deletes what exists.
      this.scopes.set(key, {
        skeletonIntact: dump.skeletonIntact,
        snatAddress: dump.snatAddress,
        selectors: dump.selectors,
        verdicts: dump.verdicts,
        footprints: dump.footprints,
      });
      for (const service of dump.services) state.services.set(service.key, service);
    }
    return state;
  }

  /**
   * UDP has no end of connection: conntrack would keep sending a flow to a removed backend
   * until the entry times out, so entries whose replies come from a removed backend go.
   * (Draining backends keep theirs: that is what draining means.)
   */
  private async flushRemovedUdpBackends(
    namespace: string | null,
    changes: readonly LbChange[],
  ): Promise<number> {
    let operations = 0;
    for (const change of changes) {
      if (change.service.protocol !== 'udp' || change.type === 'add-service') continue;
      const before = change.type === 'update-service' ? change.previous.backends : change.service.backends;
      const after = new Set(
        change.type === 'update-service' ? change.service.backends.map((b) => `${b.address}:${b.port}`) : [],
      );
      for (const backend of before) {
        if (after.has(`${backend.address}:${backend.port}`)) continue;
        await this.options.executor.flushUdpConntrack(namespace, backend.address, backend.port);
        operations++;
      }
    }
    return operations;
  }

  /** Removes the meshd table from every listed scope (teardown). */
  async removeAll(): Promise<void> {
    for (const scope of this.options.listScopes()) {
      const namespace = this.options.resolveScope(scope);
      if ((await this.options.executor.listTableJson(namespace, TABLE)) !== null)
        await this.options.executor.run(namespace, `delete table ip ${TABLE}\n`);
      this.scopes.delete(scopeKey(scope));
    }
  }
}
