/**
 * nftables load-balancer backend (kube-proxy's nftables proxier is the model).
 *
 * One table `ip meshd` per scope namespace (the host namespace, and each
 * overlay network's namespace):
 *
 *   map vips  { ipv4_addr . inet_proto . inet_service : verdict }   VIP:port -> goto vs_*
 *   map ports { inet_proto . inet_service : verdict }               published port on any local address
 *
 *   chain prerouting  (nat, dstnat)  ip daddr . l4proto . th dport vmap @vips
 *                                    fib daddr type local  l4proto . th dport vmap @ports
 *   chain output      (nat, -100)    the same two rules, for locally originated connections
 *   chain postrouting (nat, srcnat)  meta mark & SNAT_MARK  snat ip to <scope's lb address>
 *
 *   chain vs_<proto>_<addr|any>_<port>     one per virtual service, one or two rules:
 *     meta l4proto P [mark |= SNAT_MARK] dnat ip to numgen random mod N map { 0: ep . port, ... }
 *       (jhash ip saddr mod N for source-hash; a backend of weight w holds w slots;
 *        `reject` when no backend is active)
 *     meta l4proto P ip daddr . th dport { draining... } comment "meshd draining"
 *       (never matches: it records draining backends so `dump` reads them back)
 *
 * Packet path: a new connection hits prerouting, the vmap jumps to the service's
 * chain, which picks a backend and DNATs; conntrack remembers the mapping, so
 * only the first packet is balanced and an established flow survives its
 * backend becoming draining (out of the map) or removed. Connections marked in
 * the selection chain are SNATed to the node's LB address so replies return here.
 *
 * Changes are element updates plus one chain flush/refill per changed service,
 * sent as one `nft -f` transaction per namespace (atomic per scope).
 */
import { assertNever } from '../../../src/common/errors.js';
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
  renderAddService,
  renderRemoveService,
  renderSkeleton,
  renderUpdateService,
  TABLE,
} from './render.js';

export interface NftLoadBalancerOptions {
  executor: NftExecutor;
  resolveScope: LbScopeResolver;
  /** The scopes `dump` reads (the host and every network this node takes part in). */
  listScopes: () => LbScope[];
}

const log = subsystemLogger('lb-nft');

interface ScopeBatch {
  scope: LbScope;
  lines: string[];
  operations: number;
  snatAddress: string | null;
}

export class NftLoadBalancer implements LoadBalancer {
  readonly backendName = 'nftables';
  /** Per scope key: the SNAT address of a skeleton known intact (from the last dump or apply). */
  private readonly skeletons = new Map<string, string | null>();

  constructor(private readonly options: NftLoadBalancerOptions) {}

  plan(desired: LbState, actual: LbState): LbChange[] {
    return planLbChanges(desired, actual);
  }

  async apply(changes: readonly LbChange[]): Promise<LbApplyResult> {
    const batches = new Map<string, ScopeBatch>();
    for (const change of changes) {
      const scope = change.service.scope;
      const key = scopeKey(scope);
      let batch = batches.get(key);
      if (batch === undefined) {
        batch = { scope, lines: [], operations: 0, snatAddress: null };
        batches.set(key, batch);
      }
      if (change.type !== 'remove-service' && change.service.snatAddress !== null)
        batch.snatAddress = change.service.snatAddress;
      const lines = this.render(change);
      batch.lines.push(...lines);
      batch.operations += lines.length;
    }
    let kernelOperations = 0;
    for (const [key, batch] of batches) {
      const known = this.skeletons.get(key);
      const needSnat = batch.snatAddress ?? (known === undefined ? null : known);
      const script: string[] = [];
      if (known === undefined || known !== needSnat) {
        const skeleton = renderSkeleton(needSnat);
        script.push(...skeleton);
        kernelOperations += skeleton.length;
      }
      script.push(...batch.lines);
      kernelOperations += batch.operations;
      const namespace = this.options.resolveScope(batch.scope);
      try {
        await this.options.executor.run(namespace, `${script.join('\n')}\n`);
      } catch (err) {
        // The transaction is atomic; forget what we knew so the next run re-reads.
        this.skeletons.delete(key);
        throw err;
      }
      this.skeletons.set(key, needSnat);
      log.debug({ scope: key, namespace, lines: script.length }, 'nft transaction applied');
    }
    return { kernelOperations };
  }

  async dump(): Promise<LbState> {
    const state = emptyLbState();
    for (const scope of this.options.listScopes()) {
      const key = scopeKey(scope);
      const json = await this.options.executor.listTableJson(this.options.resolveScope(scope), TABLE);
      if (json === null) {
        this.skeletons.delete(key);
        continue;
      }
      const dump = parseScopeDump(scope, json);
      if (dump.skeletonIntact) this.skeletons.set(key, dump.snatAddress);
      else this.skeletons.delete(key);
      for (const service of dump.services) state.services.set(service.key, service);
    }
    return state;
  }

  /** Removes the meshd table from every listed scope (teardown). */
  async removeAll(): Promise<void> {
    for (const scope of this.options.listScopes()) {
      const namespace = this.options.resolveScope(scope);
      if ((await this.options.executor.listTableJson(namespace, TABLE)) !== null)
        await this.options.executor.run(namespace, `delete table ip ${TABLE}\n`);
      this.skeletons.delete(scopeKey(scope));
    }
  }

  private render(change: LbChange): string[] {
    switch (change.type) {
      case 'add-service':
        return renderAddService(change.service);
      case 'update-service':
        return renderUpdateService(change.service);
      case 'remove-service':
        return renderRemoveService(change.service);
      default:
        return assertNever(change, 'LB change');
    }
  }
}
