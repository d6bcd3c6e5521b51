import { HealthPortServer, healthProgrammer, type ListenFn, listenOnAllAddresses } from '../lb/health.js';
import { NftLoadBalancer } from '../lb/nft/backend.js';
import { type NftExecutor, nftToolExecutor } from '../lb/nft/executor.js';
import { lbProgrammer } from '../lb/programmer.js';
import type { LbScope } from '../lb/types.js';
import type { AnyProgrammer } from './reconciler.js';
import { Reconciler } from './reconciler.js';

/**
 * Namespace of an overlay network on this host: `<host prefix>n<network id>`,
 * lowercased, other characters as "-", at most 40 characters (dataplane/netns
 * name rules). The host scope is the namespace meshd runs in.
 */
export function networkNetnsName(hostPrefix: string, networkId: string): string {
  const id = networkId.toLowerCase().replace(/[^a-z0-9_-]/g, '-');
  return `${hostPrefix}n${id}`.slice(0, 40);
}

export interface NodeDataplaneOptions {
  /** Prefix of every namespace this host creates ("" on a real host, `<lab>h1-` in the lab). */
  hostPrefix: string;
  /** Networks this node takes part in (their namespaces are read by dump). */
  networkIds: () => string[];
  /** Serve mode=local health ports (long-running daemons only). */
  healthListen?: ListenFn | null;
  executor?: NftExecutor;
  /** More programmers (overlay FDB/neighbours, links...) run before the LB. */
  before?: AnyProgrammer[];
}

export interface NodeDataplane {
  reconciler: Reconciler;
  lb: NftLoadBalancer;
  health: HealthPortServer | null;
}

/** The data plane of one node: nftables LB (+ health ports) behind one reconciler. */
export function buildNodeDataplane(options: NodeDataplaneOptions): NodeDataplane {
  const lb = new NftLoadBalancer({
    executor: options.executor ?? nftToolExecutor,
    resolveScope: (scope) =>
      scope.kind === 'host' ? null : networkNetnsName(options.hostPrefix, scope.networkId),
    listScopes: (): LbScope[] => [
      { kind: 'host' },
      ...options.networkIds().map((networkId) => ({ kind: 'network' as const, networkId })),
    ],
  });
  const listen = options.healthListen === undefined ? listenOnAllAddresses : options.healthListen;
  const health = listen === null ? null : new HealthPortServer(listen);
  const programmers: AnyProgrammer[] = [...(options.before ?? []), lbProgrammer(lb)];
  if (health !== null) programmers.push(healthProgrammer(health));
  return { reconciler: new Reconciler(programmers), lb, health };
}
