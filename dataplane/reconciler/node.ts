import { subsystemLogger } from '../../src/common/logger.js';
import { HealthPortServer, healthProgrammer, type ListenFn, listenOnAllAddresses } from '../lb/health.js';
import { createIpvsLoadBalancer } from '../lb/ipvs/create.js';
import { ipvsProgrammer } from '../lb/ipvs/programmer.js';
import {
  type LbBackendChoice,
  type LbBackendSelection,
  probeIpvs,
  selectLbBackend,
} from '../lb/ipvs/select.js';
import { NftLoadBalancer } from '../lb/nft/backend.js';
import { type NftExecutor, nftToolExecutor } from '../lb/nft/executor.js';
import { lbProgrammer } from '../lb/programmer.js';
import type { LbScope, LbScopeResolver, LoadBalancer } from '../lb/types.js';
import { networkNetnsName } from '../overlay/names.js';
import { buildNodeOverlay, type NodeOverlay } from '../overlay/node.js';
import type { AnyProgrammer } from './reconciler.js';
import { Reconciler } from './reconciler.js';

/** The programmer after which every task sandbox of the applied state exists (the agent starts tasks then). */
export const SANDBOX_PROGRAMMER = 'sandbox' satisfies NodeOverlay['programmers'][1]['name'];

// One naming rule for every namespace (dataplane/overlay/names.ts); re-exported for callers here.
export { networkNetnsName };

const log = subsystemLogger('dataplane');

export interface NodeDataplaneOptions {
  /** Prefix of every namespace this host creates ("" on a real host, `<lab>h1-` in the lab). */
  hostPrefix: string;
  /** Networks this node takes part in (their namespaces are read by dump). */
  networkIds: () => string[];
  /** Serve mode=local health ports (long-running daemons only). */
  healthListen?: ListenFn | null;
  executor?: NftExecutor;
  /** The load-balancer backend (see selectLbBackend); default nftables. */
  lbBackend?: LbBackendSelection;
  /** How the IPVS backend starts its per-namespace helper (a bundle in the VM lab); default node + tsx. */
  ipvsHelperCommand?: string[];
  /** How the overlay starts its namespace helpers (dataplane/netns; a bundle in the VM lab); default node + tsx. */
  netnsHelperCommand?: string[];
  /** Build overlay networks and task sandboxes too (dataplane/overlay, dataplane/sandbox); default true. */
  overlay?: boolean;
  /** More programmers, run before the LB. */
  before?: AnyProgrammer[];
}

export interface NodeDataplane {
  reconciler: Reconciler;
  lb: LoadBalancer;
  /** Which backend is active and why (for `meshd dataplane dump` and the logs). */
  lbBackend: LbBackendSelection;
  health: HealthPortServer | null;
  overlay: NodeOverlay | null;
  /** Stops helper processes and health listeners. */
  close(): Promise<void>;
}

const DEFAULT_BACKEND: LbBackendSelection = { backend: 'nftables', reason: 'default: nftables' };

/**
 * The data plane of one node: overlay + sandboxes, the LB backend (+ health
 * ports) behind one reconciler. Both backends get the same scopes: the host
 * namespace (published ports) and one namespace per overlay network.
 */
export function buildNodeDataplane(options: NodeDataplaneOptions): NodeDataplane {
  const resolveScope: LbScopeResolver = (scope) =>
    scope.kind === 'host' ? null : networkNetnsName(options.hostPrefix, scope.networkId);
  const listScopes = (): LbScope[] => [
    { kind: 'host' },
    ...options.networkIds().map((networkId) => ({ kind: 'network' as const, networkId })),
  ];
  const selection = options.lbBackend ?? DEFAULT_BACKEND;
  let lb: LoadBalancer;
  let lbStep: AnyProgrammer;
  let closeLb = () => {};
  if (selection.backend === 'ipvs') {
    const made = createIpvsLoadBalancer({
      resolveScope,
      listScopes,
      ...(options.ipvsHelperCommand === undefined ? {} : { helperCommand: options.ipvsHelperCommand }),
    });
    lb = made.lb;
    lbStep = ipvsProgrammer(made.lb);
    closeLb = () => made.close();
  } else {
    lb = new NftLoadBalancer({ executor: options.executor ?? nftToolExecutor, resolveScope, listScopes });
    lbStep = lbProgrammer(lb);
  }
  const listen = options.healthListen === undefined ? listenOnAllAddresses : options.healthListen;
  const health = listen === null ? null : new HealthPortServer(listen);
  const overlay =
    options.overlay === false
      ? null
      : buildNodeOverlay({
          hostPrefix: options.hostPrefix,
          ...(options.netnsHelperCommand === undefined ? {} : { helperCommand: options.netnsHelperCommand }),
        });
  const programmers: AnyProgrammer[] = [...(overlay?.programmers ?? []), ...(options.before ?? []), lbStep];
  if (health !== null) programmers.push(healthProgrammer(health));
  return {
    reconciler: new Reconciler(programmers),
    lb,
    lbBackend: selection,
    health,
    overlay,
    async close() {
      await health?.close();
      await overlay?.close();
      closeLb();
    },
  };
}

/**
 * Logs which LB backend is active and why. Long-running callers (meshd run,
 * meshd dataplane run) log it at start; one-shot commands print it instead,
 * which keeps their --json output clean.
 */
export function logLbBackend(selection: LbBackendSelection): void {
  log.info({ lbBackend: selection.backend, reason: selection.reason }, 'load-balancer backend selected');
}

/**
 * Picks the LB backend for `choice` (auto: IPVS when its generic-netlink
 * family resolves after trying to load the module, nftables otherwise), then
 * builds the node's data plane with it; `lbBackend` of the result says which and why.
 */
export async function selectNodeDataplane(
  options: Omit<NodeDataplaneOptions, 'lbBackend'> & {
    lbBackendChoice: LbBackendChoice;
    probeIpvs?: () => Promise<void>;
  },
): Promise<NodeDataplane> {
  const selection = await selectLbBackend(options.lbBackendChoice, options.probeIpvs ?? probeIpvs);
  return buildNodeDataplane({ ...options, lbBackend: selection });
}
