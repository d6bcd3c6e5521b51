/**
 * Keeps one node's certificate fresh and everything that uses it in step:
 * renews on schedule (CertificateRenewer) or when the CA says so (role change,
 * root rotation), saves the new material durably, reloads the node's server
 * credentials, and tells listeners (e.g. transports that hold channels) so
 * they make new channels.
 */
import type { Clock } from '../../src/common/clock.js';
import type { Rng } from '../../src/common/rng.js';
import { ReloadableServerCredentials, type TlsMaterial } from '../../src/common/transport/credentials.js';
import { fetchCertificateStatus, type NodeCertificate, renewNodeCertificate } from './ca-client.js';
import { saveNodeTlsMaterial } from './node-identity.js';
import { CertificateRenewer } from './renewal.js';

export interface KeeperOptions {
  current: NodeCertificate;
  /** Directory for node.key (0600), node.crt and ca.crt. */
  stateDir: string;
  /** A manager to renew through (host:port); asked again on every attempt. */
  managerTarget: () => string;
  addresses: readonly string[];
  clock: Clock;
  rng: Rng;
}

export class NodeCertificateKeeper {
  readonly serverCredentials: ReloadableServerCredentials;
  private node: NodeCertificate;
  private readonly renewer: CertificateRenewer;
  private readonly listeners = new Set<(node: NodeCertificate) => void>();

  constructor(private readonly opts: KeeperOptions) {
    this.node = opts.current;
    this.serverCredentials = new ReloadableServerCredentials(opts.current.material);
    this.renewer = new CertificateRenewer(opts.current.material, {
      clock: opts.clock,
      rng: opts.rng,
      renew: async () => {
        const next = await renewNodeCertificate({
          target: opts.managerTarget(),
          current: this.node,
          addresses: opts.addresses,
        });
        this.node = next;
        return next.material;
      },
      onRenewed: (material: TlsMaterial) => this.install(material),
    });
  }

  private install(material: TlsMaterial): void {
    saveNodeTlsMaterial(this.opts.stateDir, material);
    this.serverCredentials.reload(material);
    for (const listener of this.listeners) listener(this.node);
  }

  current(): NodeCertificate {
    return this.node;
  }

  /** Called with the new certificate after each renewal; returns an unsubscribe function. */
  onRenewed(listener: (node: NodeCertificate) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  start(): void {
    saveNodeTlsMaterial(this.opts.stateDir, this.node.material);
    this.renewer.start();
  }

  stop(): void {
    this.renewer.stop();
  }

  /**
   * Asks the CA whether this node should renew now (role change, its batch of
   * a root rotation) and does; installs a changed trust bundle (a new root
   * to trust, or a retired one to drop).
   */
  async checkStatus(): Promise<'current' | 'renewed' | 'trust-updated' | 'removed'> {
    const { state, trustBundlePem } = await fetchCertificateStatus({
      target: this.opts.managerTarget(),
      current: this.node,
    });
    if (state === 'removed') {
      this.renewer.stop();
      return 'removed';
    }
    if (state === 'renew') {
      await this.renewer.renewNow();
      return 'renewed';
    }
    if (trustBundlePem === '' || trustBundlePem === this.node.material.trustBundlePem) return 'current';
    const material = { ...this.node.material, trustBundlePem };
    this.node = { ...this.node, material };
    this.renewer.replaceMaterial(material);
    this.install(material);
    return 'trust-updated';
  }

  /** Resolves when a renewal in progress has finished (tests, shutdown). */
  settled(): Promise<void> {
    return this.renewer.settled();
  }
}
