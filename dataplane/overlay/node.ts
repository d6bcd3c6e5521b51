import { type HostAccess, localHostAccess } from '../netns/host.js';
import { NetnsHelperPool } from '../netns/pool.js';
import { type SandboxProgrammer, sandboxProgrammer } from '../sandbox/programmer.js';
import { type OverlayProgrammer, overlayProgrammer } from './programmer.js';

export interface NodeOverlay {
  /** In reconciler order: overlay networks first, then sandboxes (before the LB). */
  programmers: [OverlayProgrammer, SandboxProgrammer];
  helpers: NetnsHelperPool;
  /** Stops the network-namespace helpers (they also exit on their own when this process does). */
  close(): Promise<void>;
}

/**
 * The overlay and sandbox programmers of one node, sharing one helper pool.
 * `host` defaults to the namespace this process runs in (meshd on a host, or
 * `ip netns exec <lab host> meshd ...` in the lab).
 */
export function buildNodeOverlay(options: {
  hostPrefix: string;
  host?: HostAccess;
  /** How namespace helpers start (NetnsHelper.start); default node + tsx. */
  helperCommand?: string[];
}): NodeOverlay {
  const helpers = new NetnsHelperPool(options.helperCommand);
  const host = options.host ?? localHostAccess();
  return {
    programmers: [
      overlayProgrammer({ hostPrefix: options.hostPrefix, host, helpers }),
      sandboxProgrammer({ hostPrefix: options.hostPrefix, helpers }),
    ],
    helpers,
    close: () => helpers.stopAll(),
  };
}
