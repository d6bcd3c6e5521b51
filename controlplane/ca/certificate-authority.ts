/**
 * The CA state a manager keeps: the root (and, during a rotation, the next
 * one), join tokens, what was issued to which node, and the denylist of
 * removed nodes. Signing goes through a NodeCertificateSigner: the local root
 * key, or an external CFSSL signer (external-signer.ts).
 *
 * Today this state lives in memory on one manager; the replicated store will
 * own the records later (the methods are the seam).
 */
import type { Clock } from '../../src/common/clock.js';
import { MeshError, ValidationError } from '../../src/common/errors.js';
import { newId } from '../../src/common/ids.js';
import type { AuthorizationOptions, CallerIdentity } from '../../src/common/transport/authorization.js';
import {
  crossSign,
  DEFAULT_NODE_CERT_LIFETIME_MS,
  hasRootKey,
  type IssuedCertificate,
  type IssueRequest,
  issueNodeCertificate,
  type NodeRole,
  type RootCA,
  type RootCertificate,
  type Signer,
  validateLifetimeMs,
} from './authority.js';
import { JoinTokens } from './join-token.js';
import { joinPem } from './x509.js';

/** Signs a node certificate for a request whose subject the CA already decided. */
export interface NodeCertificateSigner {
  sign(req: IssueRequest): Promise<IssuedCertificate>;
}

export class LocalSigner implements NodeCertificateSigner {
  constructor(public signer: Signer) {}
  sign(req: IssueRequest): Promise<IssuedCertificate> {
    return issueNodeCertificate(this.signer, req);
  }
}

export interface NodeRecord {
  nodeId: string;
  role: NodeRole;
  notAfterMs: number;
  /** Digest of the root that signed the current certificate. */
  rootDigestHex: string;
  /** Role changed since issue: the next renewal carries the new OU. */
  roleChanged: boolean;
}

export type CertificateStatus =
  | { state: 'current' | 'renew'; record: NodeRecord }
  | { state: 'removed' }
  | { state: 'unknown' };

export interface CertificateAuthorityOptions {
  /** With its key the CA signs locally; without, `signer` (an external CA) is required. */
  root: RootCA | RootCertificate;
  clock: Clock;
  lifetimeMs?: number;
  /** Defaults to signing with the root key here. */
  signer?: NodeCertificateSigner;
}

interface Rotation {
  next: RootCA;
  crossSignedPem: string;
  /** How many nodes are told to renew at a time. */
  batchSize: number;
}

export const DEFAULT_ROTATION_BATCH_SIZE = 10;

export class CertificateAuthority {
  private root: RootCA | RootCertificate;
  private rotation: Rotation | undefined;
  private readonly clock: Clock;
  private readonly lifetimeMs: number;
  private readonly externalSigner: NodeCertificateSigner | undefined;
  private localSigner: LocalSigner | undefined;
  readonly tokens: JoinTokens;
  private readonly nodes = new Map<string, NodeRecord>();
  /** Node ID to the time its last certificate expires; after that TLS refuses it anyway. */
  private readonly denylist = new Map<string, number>();

  constructor(opts: CertificateAuthorityOptions) {
    this.root = opts.root;
    this.clock = opts.clock;
    this.lifetimeMs = opts.lifetimeMs ?? DEFAULT_NODE_CERT_LIFETIME_MS;
    validateLifetimeMs(this.lifetimeMs);
    this.externalSigner = opts.signer;
    this.localSigner = hasRootKey(opts.root) ? new LocalSigner(opts.root) : undefined;
    if (this.localSigner === undefined && opts.signer === undefined)
      throw new ValidationError('signer', 'the root CA key is not here, so an external signer is required');
    this.tokens = JoinTokens.forRoot(opts.root.certPem);
  }

  get clusterId(): string {
    return this.root.clusterId;
  }

  rootCertificatePem(): string {
    return this.root.certPem;
  }

  /** Roots a node should trust now: the current one, plus the next during a rotation. */
  trustBundlePem(): string {
    return this.rotation === undefined
      ? joinPem(this.root.certPem)
      : joinPem(this.root.certPem, this.rotation.next.certPem);
  }

  /** The options the transport's authorization interceptor needs from the CA. */
  authorizationOptions(): Pick<AuthorizationOptions, 'clusterId' | 'isDenied' | 'isValidJoinToken'> {
    return {
      clusterId: this.clusterId,
      isDenied: (nodeId) => this.isDenied(nodeId),
      isValidJoinToken: (token) => {
        try {
          this.tokens.validate(token, this.clock.nowMs());
          return true;
        } catch {
          return false;
        }
      },
    };
  }

  /** A new node presenting a join token: the token decides the role, the CA picks the node ID. */
  async issueForJoinToken(
    token: string,
    csrPem: string,
    addresses: readonly string[],
  ): Promise<NodeRecord & IssuedCertificate> {
    const role = this.tokens.validate(token, this.clock.nowMs());
    return this.issue(newId(), role, csrPem, addresses);
  }

  /** A node renewing with its current certificate: same ID, role from the CA's record. */
  async renew(
    caller: CallerIdentity,
    csrPem: string,
    addresses: readonly string[],
  ): Promise<NodeRecord & IssuedCertificate> {
    if (this.isDenied(caller.nodeId))
      throw new MeshError(
        'NODE_REMOVED',
        `node ${caller.nodeId} was removed from the cluster and cannot renew`,
      );
    const role = this.nodes.get(caller.nodeId)?.role ?? caller.role;
    return this.issue(caller.nodeId, role, csrPem, addresses);
  }

  private async issue(nodeId: string, role: NodeRole, csrPem: string, addresses: readonly string[]) {
    const signer = this.externalSigner ?? this.localSigner;
    if (signer === undefined) throw new MeshError('NO_SIGNER', 'this CA has no signer');
    const issued = await signer.sign({
      csrPem,
      nodeId,
      role,
      clusterId: this.clusterId,
      addresses,
      lifetimeMs: this.lifetimeMs,
      nowMs: this.clock.nowMs(),
    });
    const record: NodeRecord = {
      nodeId,
      role,
      notAfterMs: issued.notAfterMs,
      rootDigestHex: (this.rotation?.next ?? this.root).digestHex,
      roleChanged: false,
    };
    this.nodes.set(nodeId, record);
    return { ...record, ...issued };
  }

  /** Promotion or demotion: the node's next certificate carries the new OU; status says renew. */
  setRole(nodeId: string, role: NodeRole): void {
    const record = this.nodes.get(nodeId);
    if (record === undefined)
      throw new ValidationError('nodeId', `node "${nodeId}" has no certificate from this CA`);
    if (record.role !== role) this.nodes.set(nodeId, { ...record, role, roleChanged: true });
  }

  /** A removed node is refused by every check until its last certificate would have expired. */
  removeNode(nodeId: string): void {
    const record = this.nodes.get(nodeId);
    const untilMs = record?.notAfterMs ?? this.clock.nowMs() + this.lifetimeMs;
    this.denylist.set(nodeId, untilMs);
    this.nodes.delete(nodeId);
  }

  isDenied(nodeId: string): boolean {
    const untilMs = this.denylist.get(nodeId);
    if (untilMs === undefined) return false;
    if (this.clock.nowMs() > untilMs) {
      this.denylist.delete(nodeId);
      return false;
    }
    return true;
  }

  status(nodeId: string): CertificateStatus {
    if (this.isDenied(nodeId)) return { state: 'removed' };
    const record = this.nodes.get(nodeId);
    if (record === undefined) return { state: 'unknown' };
    if (record.roleChanged) return { state: 'renew', record };
    if (this.rotation === undefined || record.rootDigestHex === this.rotation.next.digestHex)
      return { state: 'current', record };
    // Rotation batches: only the first batchSize pending nodes (in a stable
    // order) are told to renew; as they do, the next ones move up.
    const batch = this.nodesPendingRotation().sort().slice(0, this.rotation.batchSize);
    return { state: batch.includes(nodeId) ? 'renew' : 'current', record };
  }

  /**
   * Root rotation, step 1: trust both roots, sign with the next root's key and
   * present the cross-signed certificate after every new leaf, so nodes that
   * still trust only the old root accept the new certificates.
   */
  async startRootRotation(next: RootCA, batchSize = DEFAULT_ROTATION_BATCH_SIZE): Promise<void> {
    if (!Number.isInteger(batchSize) || batchSize < 1)
      throw new ValidationError('batchSize', `rotation batchSize must be an integer >= 1, got ${batchSize}`);
    if (next.clusterId !== this.clusterId)
      throw new ValidationError(
        'root',
        `next root is for cluster "${next.clusterId}", not "${this.clusterId}"`,
      );
    if (!hasRootKey(this.root) || this.externalSigner !== undefined)
      throw new MeshError(
        'ROTATION_UNSUPPORTED',
        'root rotation needs the current root key here (not in external CA mode)',
      );
    const crossSignedPem = await crossSign(this.root, next, this.clock.nowMs());
    this.rotation = { next, crossSignedPem, batchSize };
    this.localSigner = new LocalSigner({ ...next, chainPem: crossSignedPem });
  }

  /** Nodes still holding a certificate from the old root (the rotation waits for none). */
  nodesPendingRotation(): string[] {
    if (this.rotation === undefined) return [];
    const want = this.rotation.next.digestHex;
    return [...this.nodes.values()].filter((r) => r.rootDigestHex !== want).map((r) => r.nodeId);
  }

  /** Root rotation, last step: the old root is retired, tokens pin the new one. */
  finishRootRotation(): void {
    if (this.rotation === undefined) throw new MeshError('NO_ROTATION', 'no root rotation is in progress');
    const pending = this.nodesPendingRotation();
    if (pending.length > 0)
      throw new MeshError(
        'ROTATION_PENDING',
        `cannot retire the old root: ${pending.length} node(s) still hold certificates from it (${pending.slice(0, 5).join(', ')})`,
      );
    const next = this.rotation.next;
    this.root = next;
    this.rotation = undefined;
    this.localSigner = new LocalSigner(next);
    this.tokens.rebase(this.root.certPem);
  }
}
