import { type Clock, systemClock } from '../../../src/common/clock.js';
import type { LbScope, LbScopeResolver } from '../types.js';
import { IpvsLoadBalancer } from './backend.js';
import { type IpvsNamespace, LocalIpvsNamespace } from './namespace.js';

export interface CreateIpvsLoadBalancerOptions {
  /** Same resolver the nftables backend gets (host scope -> null, networks -> their namespace). */
  resolveScope: LbScopeResolver;
  listScopes: () => LbScope[];
  clock?: Clock;
  /** How helpers in named namespaces start (default node + tsx; the VM lab passes a bundle). */
  helperCommand?: string[];
}

/**
 * The IPVS backend wired to real namespaces: one LocalIpvsNamespace per
 * namespace name (an in-process netlink socket for the current one, a helper
 * process for a named one). `close()` stops the helpers.
 */
export function createIpvsLoadBalancer(options: CreateIpvsLoadBalancerOptions): {
  lb: IpvsLoadBalancer;
  close(): void;
} {
  const namespaces = new Map<string | null, IpvsNamespace>();
  const lb = new IpvsLoadBalancer({
    namespaceFor: (netns) => {
      let ns = namespaces.get(netns);
      if (ns === undefined) {
        ns = new LocalIpvsNamespace(netns, options.helperCommand);
        namespaces.set(netns, ns);
      }
      return ns;
    },
    resolveScope: options.resolveScope,
    listScopes: options.listScopes,
    clock: options.clock ?? systemClock,
  });
  return {
    lb,
    close() {
      for (const ns of namespaces.values()) ns.close();
      namespaces.clear();
    },
  };
}
