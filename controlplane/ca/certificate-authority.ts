/**
 * The CA state a manager keeps: the root (and, during a rotation, the next
 * one), join tokens, what was issued to which node, and the denylist of
 * removed nodes. Signing goes through a NodeCertificateSigner: the local root
 * key, or an external CFSSL signer (external-signer.ts).
 *
 * The state itself lives behind a CaStateStore (ca-state.ts): in memory for
 * one process, or in the replicated store so every manager is the same CA.
 */
import type { Clock } from '../../src/common/clock.js';
import { MeshError, ValidationError } from '../../src/common/errors.js';
import { newId } from '../../src/common/ids.js';
import type { AuthorizationOptions, CallerIdentity } from '../../src/common/transport/authorization.js';
import {
  createRootCA,
  crossSign,
  DEFAULT_NODE_CERT_LIFETIME_MS,
  hasRootKey,
  type IssuedCertificate,
  type IssueRequest,
  issueNodeCertificate,
  loadRootCA,
  type NodeRole,
  type RootCA,
  type RootCertificate,
  type Signer,
  validateLifetimeMs,
} from './authority.js';
import {
  type AuthorityState,
  authorityOrThrow,
  type CaStateStore,
  type ExternalCaConfig,
  InMemoryCaState,
  type StoredNodeCertificate,
  type StoredRoot,
} from './ca-state.js';
import { signerForExternalCa } from './external-signer.js';
import { type JoinTokenState, JoinTokens, newJoinToken } from './join-token.js';
import { certificateDigest, joinPem } from './x509.js';

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
  /**
   * Where the state lives. Without it, `root` starts an in-memory state
   * with new join tokens (one process: tests, `meshd init`).
   */
  state?: CaStateStore;
  /** With its key the CA signs locally; without, `signer` (an external CA) is required. */
  root?: RootCA | RootCertificate;
  clock: Clock;
  lifetimeMs?: number;
  /** Defaults to signing with the root key here. */
  signer?: NodeCertificateSigner;
}

export const DEFAULT_ROTATION_BATCH_SIZE = 10;
/** Expired denylist entries dropped per removal (bounds one transaction). */
const MAX_PRUNED_PER_REMOVAL = 100;

/** A fresh in-memory state for a root: new worker and manager tokens. */
export function inMemoryStateFor(root: RootCA | RootCertificate): InMemoryCaState {
  const digest = root.digestHex;
  return new InMemoryCaState(root.clusterId, {
    root: { certPem: root.certPem, keyPem: hasRootKey(root) ? root.privateKeyPem : '' },
    tokens: { worker: newJoinToken(digest), manager: newJoinToken(digest) },
  });
}

export class CertificateAuthority {
  readonly state: CaStateStore;
  private readonly clock: Clock;
  private readonly lifetimeMs: number;
  private readonly externalSigner: NodeCertificateSigner | undefined;
  /** Imported root keys by certificate + key PEM (importing is async and costs a few ms). */
  private readonly roots = new Map<string, Promise<RootCA>>();
  private readonly digests = new Map<string, string>();
  private relay: { key: string; signer: NodeCertificateSigner } | undefined;

  constructor(opts: CertificateAuthorityOptions) {
    if (opts.state === undefined && opts.root === undefined)
      throw new ValidationError('root', 'a CA needs its state or a root certificate');
    this.state = opts.state ?? inMemoryStateFor(opts.root!);
    this.clock = opts.clock;
    this.lifetimeMs = opts.lifetimeMs ?? DEFAULT_NODE_CERT_LIFETIME_MS;
    validateLifetimeMs(this.lifetimeMs);
    this.externalSigner = opts.signer;
    if (opts.root !== undefined && hasRootKey(opts.root))
      this.roots.set(rootKey(opts.root), Promise.resolve(opts.root));
    const a = this.state.authority();
    if (a !== undefined && a.root.keyPem === '' && opts.signer === undefined && a.external === undefined)
      throw new ValidationError('signer', 'the root CA key is not here, so an external signer is required');
  }

  get clusterId(): string {
    return this.state.clusterId;
  }

  /** Whether the state is here (a new manager may still be catching up). */
  isReady(): boolean {
    return this.state.authority() !== undefined;
  }

  rootCertificatePem(): string {
    return authorityOrThrow(this.state).root.certPem;
  }

  /** Roots a node should trust now: the current one, plus the next during a rotation. */
  trustBundlePem(): string {
    const a = authorityOrThrow(this.state);
    return a.rotation === undefined
      ? joinPem(a.root.certPem)
      : joinPem(a.root.certPem, a.rotation.next.certPem);
  }

  /** The options the transport's authorization interceptor needs from the CA. */
  authorizationOptions(): Pick<AuthorizationOptions, 'clusterId' | 'isDenied' | 'isValidJoinToken'> {
    return {
      clusterId: this.clusterId,
      isDenied: (nodeId) => this.isDenied(nodeId),
      isValidJoinToken: (token) => {
        try {
          this.validateJoinToken(token);
          return true;
        } catch {
          return false;
        }
      },
    };
  }

  joinTokens(): JoinTokenState {
    return authorityOrThrow(this.state).tokens;
  }

  /** The role a token grants, or JOIN_TOKEN_INVALID naming why not (this manager's copy). */
  validateJoinToken(token: string): NodeRole {
    const a = authorityOrThrow(this.state);
    return new JoinTokens(this.digest(a.root.certPem), a.tokens).validate(token, this.clock.nowMs());
  }

  /** A rotated-out token stops working on every manager once the change commits. */
  async rotateJoinToken(role: NodeRole, expiresAtMs?: number): Promise<string> {
    let token = '';
    await this.state.updateAuthority((a) => {
      token = newJoinToken(this.digest(a.root.certPem));
      const tokens: JoinTokenState = { ...a.tokens, [role]: token };
      if (expiresAtMs !== undefined) tokens.expiresAtMs = expiresAtMs;
      return { ...a, tokens };
    });
    return token;
  }

  async setJoinTokenExpiry(expiresAtMs: number | undefined): Promise<void> {
    await this.state.updateAuthority((a) => {
      const { expiresAtMs: _old, ...tokens } = a.tokens;
      return { ...a, tokens: expiresAtMs === undefined ? tokens : { ...tokens, expiresAtMs } };
    });
  }

  /** A new node presenting a join token: the token decides the role, the CA picks the node ID. */
  async issueForJoinToken(
    token: string,
    csrPem: string,
    addresses: readonly string[],
  ): Promise<NodeRecord & IssuedCertificate> {
    // A token rotated on another manager a moment ago must be refused here too.
    await this.state.sync();
    const role = this.validateJoinToken(token);
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
    const role =
      this.state.wantedRole(caller.nodeId) ?? this.state.record(caller.nodeId)?.role ?? caller.role;
    return this.issue(caller.nodeId, role, csrPem, addresses);
  }

  private async issue(nodeId: string, role: NodeRole, csrPem: string, addresses: readonly string[]) {
    const a = authorityOrThrow(this.state);
    const signer = await this.signerFor(a);
    const issued = await signer.sign({
      csrPem,
      nodeId,
      role,
      clusterId: this.clusterId,
      addresses,
      lifetimeMs: this.lifetimeMs,
      nowMs: this.clock.nowMs(),
    });
    const stored: StoredNodeCertificate = {
      nodeId,
      role,
      notAfterMs: issued.notAfterMs,
      rootDigestHex: this.digest((a.rotation?.next ?? a.root).certPem),
      removed: false,
    };
    await this.state.putRecord(stored);
    const record: NodeRecord = { ...stored, roleChanged: false };
    return { ...record, ...issued };
  }

  private async signerFor(a: AuthorityState): Promise<NodeCertificateSigner> {
    if (this.externalSigner !== undefined) return this.externalSigner;
    if (a.external !== undefined) return this.relayTo(a.external, a.root.certPem);
    if (a.rotation !== undefined) {
      const next = await this.rootWithKey(a.rotation.next);
      return new LocalSigner({ ...next, chainPem: a.rotation.crossSignedPem });
    }
    return new LocalSigner(await this.rootWithKey(a.root));
  }

  /** One signer per external CA setting (the state may change it; a new one is made then). */
  private relayTo(external: ExternalCaConfig, rootCertPem: string): NodeCertificateSigner {
    const key = JSON.stringify([external, rootCertPem]);
    if (this.relay?.key !== key)
      this.relay = {
        key,
        signer: signerForExternalCa(external, rootCertPem),
      };
    return this.relay.signer;
  }

  private rootWithKey(root: StoredRoot): Promise<RootCA> {
    if (root.keyPem === '')
      throw new MeshError('NO_SIGNER', 'this CA has no root key and no external signer');
    const key = rootKey({ certPem: root.certPem, privateKeyPem: root.keyPem });
    let loaded = this.roots.get(key);
    if (loaded === undefined) {
      loaded = loadRootCA(root.certPem, root.keyPem);
      this.roots.set(key, loaded);
    }
    return loaded;
  }

  private digest(certPem: string): string {
    let d = this.digests.get(certPem);
    if (d === undefined) {
      d = certificateDigest(certPem);
      this.digests.set(certPem, d);
    }
    return d;
  }

  /** Promotion or demotion: the node's next certificate carries the new OU; status says renew. */
  async setRole(nodeId: string, role: NodeRole): Promise<void> {
    if (this.state.record(nodeId) === undefined)
      throw new ValidationError('nodeId', `node "${nodeId}" has no certificate from this CA`);
    await this.state.setWantedRole(nodeId, role);
  }

  /** A removed node is refused by every check until its last certificate would have expired. */
  async removeNode(nodeId: string): Promise<void> {
    const nowMs = this.clock.nowMs();
    const record = this.state.record(nodeId);
    await this.state.putRecord({
      nodeId,
      role: record?.role ?? 'worker',
      rootDigestHex: record?.rootDigestHex ?? '',
      notAfterMs: record?.notAfterMs ?? nowMs + this.lifetimeMs,
      removed: true,
    });
    const expired = this.state
      .records()
      .filter((r) => r.removed && r.notAfterMs < nowMs)
      .slice(0, MAX_PRUNED_PER_REMOVAL)
      .map((r) => r.nodeId);
    if (expired.length > 0) await this.state.deleteRecords(expired);
  }

  isDenied(nodeId: string): boolean {
    const r = this.state.record(nodeId);
    return r?.removed === true && this.clock.nowMs() <= r.notAfterMs;
  }

  status(nodeId: string): CertificateStatus {
    const r = this.state.record(nodeId);
    if (r === undefined) return { state: 'unknown' };
    if (r.removed) return this.clock.nowMs() <= r.notAfterMs ? { state: 'removed' } : { state: 'unknown' };
    const wanted = this.state.wantedRole(nodeId) ?? r.role;
    const record: NodeRecord = {
      nodeId,
      role: wanted,
      notAfterMs: r.notAfterMs,
      rootDigestHex: r.rootDigestHex,
      roleChanged: wanted !== r.role,
    };
    if (record.roleChanged) return { state: 'renew', record };
    const rotation = this.state.authority()?.rotation;
    if (rotation === undefined || r.rootDigestHex === this.digest(rotation.next.certPem))
      return { state: 'current', record };
    // Rotation batches: only the first batchSize pending nodes (in a stable
    // order) are told to renew; as they do, the next ones move up.
    const batch = this.nodesPendingRotation().sort().slice(0, rotation.batchSize);
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
    const a = authorityOrThrow(this.state);
    if (a.root.keyPem === '' || this.externalSigner !== undefined)
      throw new MeshError(
        'ROTATION_UNSUPPORTED',
        'root rotation needs the current root key here (not in external CA mode)',
      );
    const crossSignedPem = await crossSign(await this.rootWithKey(a.root), next, this.clock.nowMs());
    this.roots.set(rootKey(next), Promise.resolve(next));
    await this.state.updateAuthority((current) => {
      // Two managers asked at once: the first one's rotation stands.
      if (current.rotation !== undefined) throw rotationInProgress(this.nodesPendingRotation().length);
      return {
        ...current,
        rotation: { next: { certPem: next.certPem, keyPem: next.privateKeyPem }, crossSignedPem, batchSize },
      };
    });
  }

  /** `meshctl ca --rotate`: a new root made here, then startRootRotation. */
  async rotateRoot(batchSize = DEFAULT_ROTATION_BATCH_SIZE): Promise<void> {
    if (this.state.authority()?.rotation !== undefined)
      throw rotationInProgress(this.nodesPendingRotation().length);
    await this.startRootRotation(
      await createRootCA({ clusterId: this.clusterId, nowMs: this.clock.nowMs() }),
      batchSize,
    );
  }

  /** Where a root rotation stands (`meshctl ca`). */
  rotationStatus(): RotationStatus {
    const a = authorityOrThrow(this.state);
    return {
      rootDigestHex: this.digest(a.root.certPem),
      nextRootDigestHex: a.rotation === undefined ? '' : this.digest(a.rotation.next.certPem),
      nodesTotal: this.state.records().filter((r) => !r.removed).length,
      pendingNodeIds: this.nodesPendingRotation().sort(),
    };
  }

  /** The leader calls this now and then: a rotation every node went through is finished. */
  async finishRootRotationIfDone(): Promise<boolean> {
    if (this.state.authority()?.rotation === undefined || this.nodesPendingRotation().length > 0)
      return false;
    await this.finishRootRotation();
    return true;
  }

  /** Nodes still holding a certificate from the old root (the rotation waits for none). */
  nodesPendingRotation(): string[] {
    const rotation = this.state.authority()?.rotation;
    if (rotation === undefined) return [];
    const want = this.digest(rotation.next.certPem);
    return this.state
      .records()
      .filter((r) => !r.removed && r.rootDigestHex !== want)
      .map((r) => r.nodeId);
  }

  /** Root rotation, last step: the old root is retired, tokens pin the new one. */
  async finishRootRotation(): Promise<void> {
    if (this.state.authority()?.rotation === undefined)
      throw new MeshError('NO_ROTATION', 'no root rotation is in progress');
    const pending = this.nodesPendingRotation();
    if (pending.length > 0)
      throw new MeshError(
        'ROTATION_PENDING',
        `cannot retire the old root: ${pending.length} node(s) still hold certificates from it (${pending.slice(0, 5).join(', ')})`,
      );
    await this.state.updateAuthority((a) => {
      if (a.rotation === undefined) throw new MeshError('NO_ROTATION', 'no root rotation is in progress');
      const digest = this.digest(a.rotation.next.certPem);
      return {
        root: a.rotation.next,
        rotation: undefined,
        tokens: { worker: newJoinToken(digest), manager: newJoinToken(digest) },
      };
    });
  }
}

export interface RotationStatus {
  rootDigestHex: string;
  /** Empty when no rotation is in progress. */
  nextRootDigestHex: string;
  /** Nodes with a live (not removed) certificate record. */
  nodesTotal: number;
  /** Nodes still holding a certificate from the old root, sorted. */
  pendingNodeIds: string[];
}

function rotationInProgress(pending: number): MeshError {
  return new MeshError(
    'ROTATION_IN_PROGRESS',
    `a root rotation is already in progress (${pending} node(s) still to renew); "meshctl ca" shows its progress`,
  );
}

function rootKey(root: { certPem: string; privateKeyPem: string }): string {
  return `${root.certPem}\n${root.privateKeyPem}`;
}
