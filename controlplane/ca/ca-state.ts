/**
 * Where the CA keeps its state: the root (and next root during a rotation),
 * the join tokens, and one record per node it issued to (removed nodes
 * included, which is the denylist). Reads are synchronous (the local copy);
 * writes are async (a Raft proposal in the store-backed implementation).
 *
 * InMemoryCaState is for one process (tests, library use, `meshd init`
 * before Raft exists); StoreCaState (store-ca-state.ts) keeps the same
 * state in the replicated store so every manager serves the CA.
 */
import { MeshError } from '../../src/common/errors.js';
import type { NodeRole } from './authority.js';
import type { JoinTokenState } from './join-token.js';

/** A root certificate, with its key unless the CA is external (keyPem ''). */
export interface StoredRoot {
  certPem: string;
  keyPem: string;
}

export interface StoredRotation {
  next: StoredRoot;
  crossSignedPem: string;
  batchSize: number;
}

/** External CA mode: where managers relay CSRs. */
export interface ExternalCaConfig {
  url: string;
  /** CFSSL signing profile; '' = the signer's default. */
  profile: string;
  /** CA of the signer's HTTPS certificate; '' = the system's. */
  tlsCaPem: string;
}

/** The cluster-wide part of the CA state: one object. */
export interface AuthorityState {
  root: StoredRoot;
  rotation?: StoredRotation | undefined;
  tokens: JoinTokenState;
  external?: ExternalCaConfig | undefined;
}

/** What the CA issued to one node. */
export interface StoredNodeCertificate {
  nodeId: string;
  /** Role (OU) of the certificate issued last. */
  role: NodeRole;
  notAfterMs: number;
  /** Digest of the root that signed it. */
  rootDigestHex: string;
  /** Removed from the cluster: refused until notAfterMs. */
  removed: boolean;
}

export interface CaStateStore {
  readonly clusterId: string;
  /** undefined until the state exists here (a new manager catching up). */
  authority(): AuthorityState | undefined;
  record(nodeId: string): StoredNodeCertificate | undefined;
  records(): StoredNodeCertificate[];
  /** The role a node should have when it differs from its certificate's (promotion, demotion). */
  wantedRole(nodeId: string): NodeRole | undefined;
  /** Resolves once reads here see every write committed before the call. */
  sync(): Promise<void>;
  /** Read-modify-write of the authority object (retried on a concurrent write). */
  updateAuthority(change: (current: AuthorityState) => AuthorityState): Promise<AuthorityState>;
  putRecord(record: StoredNodeCertificate): Promise<void>;
  /** Drops records (expired denylist entries). */
  deleteRecords(nodeIds: readonly string[]): Promise<void>;
  setWantedRole(nodeId: string, role: NodeRole): Promise<void>;
}

export function authorityOrThrow(state: CaStateStore): AuthorityState {
  const a = state.authority();
  if (a === undefined)
    throw new MeshError(
      'CA_NOT_READY',
      'this manager has not received the cluster CA state yet (it is catching up with Raft); retry in a moment or ask another manager',
    );
  return a;
}

export class InMemoryCaState implements CaStateStore {
  private state: AuthorityState;
  private readonly nodes = new Map<string, StoredNodeCertificate>();
  private readonly wanted = new Map<string, NodeRole>();

  constructor(
    readonly clusterId: string,
    initial: AuthorityState,
  ) {
    this.state = structuredClone(initial);
  }

  authority(): AuthorityState {
    return structuredClone(this.state);
  }

  record(nodeId: string): StoredNodeCertificate | undefined {
    const r = this.nodes.get(nodeId);
    return r === undefined ? undefined : { ...r };
  }

  records(): StoredNodeCertificate[] {
    return [...this.nodes.values()].map((r) => ({ ...r }));
  }

  wantedRole(nodeId: string): NodeRole | undefined {
    return this.wanted.get(nodeId);
  }

  async sync(): Promise<void> {}

  async updateAuthority(change: (current: AuthorityState) => AuthorityState): Promise<AuthorityState> {
    this.state = structuredClone(change(structuredClone(this.state)));
    return this.authority();
  }

  async putRecord(record: StoredNodeCertificate): Promise<void> {
    this.nodes.set(record.nodeId, { ...record });
    if (this.wanted.get(record.nodeId) === record.role) this.wanted.delete(record.nodeId);
  }

  async deleteRecords(nodeIds: readonly string[]): Promise<void> {
    for (const id of nodeIds) {
      this.nodes.delete(id);
      this.wanted.delete(id);
    }
  }

  async setWantedRole(nodeId: string, role: NodeRole): Promise<void> {
    this.wanted.set(nodeId, role);
  }
}
