/**
 * Every node keeps its certificate fresh (NodeCertificateKeeper) and asks a
 * manager every few seconds whether to renew now: a promotion or demotion
 * (the CA says renew; the new certificate carries the new OU) or its batch
 * of a root rotation. A renewed certificate with another role is how the
 * daemon learns to start or stop its manager role.
 */
import { randomInt } from 'node:crypto';
import { join } from 'node:path';
import type { NodeRole } from '../../controlplane/ca/authority.js';
import type { NodeCertificate } from '../../controlplane/ca/ca-client.js';
import { NodeCertificateKeeper } from '../../controlplane/ca/node-certificate-keeper.js';
import type { NodeTlsMaterial } from '../../controlplane/ca/node-identity.js';
import { certificateValidity } from '../../controlplane/ca/renewal.js';
import { systemClock } from '../common/clock.js';
import { errorMessage } from '../common/errors.js';
import { splitHostPort } from '../common/host-port.js';
import { subsystemLogger } from '../common/logger.js';
import { SeededRng } from '../common/rng.js';
import type { DaemonConfig } from './config.js';
import type { LocalNode } from './daemon.js';

const log = subsystemLogger('meshd');

/** How often a node asks the CA whether it should renew now (role change, rotation batch). */
export const CERTIFICATE_STATUS_INTERVAL_MS = 3_000;

export interface CertificateKeepingOptions {
  /** advertiseAddress is this node's cluster address (a manager renews through itself). */
  cfg: DaemonConfig;
  state: () => LocalNode;
  /** Replaced in place on renewal: holders of this object see the new certificate. */
  material: NodeTlsMaterial;
  /** Installs a renewed certificate in the TLS listeners. */
  reload: (material: NodeTlsMaterial) => void;
  /** Called, one at a time, when a renewed certificate carries another role. */
  onRole: (role: NodeRole) => Promise<void>;
}

/** Starts keeping this node's certificate; returns the stop function. */
export function startCertificateKeeping(opts: CertificateKeepingOptions): () => Promise<void> {
  const { cfg, material } = opts;
  const initial = opts.state();
  const current: NodeCertificate = {
    nodeId: initial.nodeId,
    role: initial.role,
    clusterId: initial.clusterId,
    notAfterMs: certificateValidity(material.certChainPem).notAfterMs,
    material: { ...material },
  };
  let turn = 0;
  const targets = () => {
    const s = opts.state();
    const list = [
      ...new Set([...(s.role === 'manager' ? [cfg.advertiseAddress] : []), ...(s.managers ?? [])]),
    ];
    return list.length > 0 ? list : [cfg.advertiseAddress];
  };
  const host = splitHostPort(cfg.advertiseAddress).host;
  const keeper = new NodeCertificateKeeper({
    current,
    stateDir: join(cfg.stateDir, 'tls'),
    // Round robin: a manager that is down costs one attempt, not every one.
    managerTarget: () => {
      const list = targets();
      return list[turn++ % list.length]!;
    },
    addresses: [host],
    clock: systemClock,
    rng: new SeededRng(randomInt(2 ** 31)),
  });
  let roleChange: Promise<void> = Promise.resolve();
  keeper.onRenewed((node) => {
    Object.assign(material, node.material);
    opts.reload(node.material);
    if (node.role !== opts.state().role)
      roleChange = roleChange
        .then(() => opts.onRole(node.role))
        .catch((err: unknown) =>
          log.error({ err: errorMessage(err), role: node.role }, 'changing the node role failed'),
        );
  });
  keeper.start();
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  const poll = () => {
    timer = setTimeout(async () => {
      try {
        const outcome = await keeper.checkStatus();
        if (outcome === 'removed')
          log.error('this node was removed from the cluster; its certificate is refused');
      } catch (err) {
        log.debug({ err: errorMessage(err) }, 'certificate status check failed');
      }
      if (!stopped) poll();
    }, CERTIFICATE_STATUS_INTERVAL_MS);
  };
  poll();
  return async () => {
    stopped = true;
    clearTimeout(timer);
    keeper.stop();
    await keeper.settled();
    await roleChange;
  };
}
