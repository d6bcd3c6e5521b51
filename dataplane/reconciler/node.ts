import { HealthPortServer, healthProgrammer, type ListenFn, listenOnAllAddresses } from '../lb/health.js';
import { NftLoadBalancer } from '../lb/nft/backend.js';
import { type NftExecutor, nftToolExecutor } from '../lb/nft/executor.js';
import { lbProgrammer } from '../lb/programmer.js';
import type { LbScope } from '../lb/types.js';
import { networkNetnsName } from '../overlay/names.js';
import { buildNodeOverlay, type NodeOverlay } from '../overlay/node.js';
import type { AnyProgrammer } from './reconciler.js';
import { Reconciler } from './reconciler.js';

// One naming rule for every namespace (dataplane/overlay/names.ts); re-exported for callers here.
export { networkNetnsName };

export interface NodeDataplaneOptions {
  /** Prefix of every namespace this host creates ("" on a real host, `<lab>h1-` in the lab). */
  hostPrefix: string;
  /** Networks this node takes part in (their namespaces are read by dump). */
  networkIds: () => string[];
  /** Serve mode=local health ports (long-running daemons only). */
  healthListen?: ListenFn | null;
  executor?: NftExecutor;
  /** Build overlay networks and task sandboxes too (dataplane/overlay, dataplane/sandbox); default true. */
  overlay?: boolean;
  /** More programmers, run before the LB. */
  before?: AnyProgrammer[];
}

export interface NodeDataplane {
  reconciler: Reconciler;
  lb: NftLoadBalancer;
  health: HealthPortServer | null;
  overlay: NodeOverlay | null;
  /** Stops helper processes and health listeners. */
  close(): Promise<void>;
}

/** The data plane of one node: overlay + sandboxes, nftables LB (+ health ports) behind one reconciler. */
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
  const overlay = options.overlay === false ? null : buildNodeOverlay({ hostPrefix: options.hostPrefix });
  const programmers: AnyProgrammer[] = [
    ...(overlay?.programmers ?? []),
    ...(options.before ?? []),
    lbProgrammer(lb),
  ];
  if (health !== null) programmers.push(healthProgrammer(health));
  return {
    reconciler: new Reconciler(programmers),
    lb,
    health,
    overlay,
    async close() {
      await health?.close();
      await overlay?.close();
    },
  };
}
