/**
 * The CA's state in the replicated store: the `ca` object (root, rotation,
 * join tokens; ID = cluster ID) and one `certificate` object per node (ID =
 * node ID). Writes go through the manager's Proposer (Raft; a follower's
 * proposal is forwarded to the leader) and are read back from this
 * manager's replica, so every manager serves the same CA. The wanted role
 * of a node is its Node object's role (what `node promote/demote` changes).
 */
import {
  CertificateAuthorityState,
  NodeCertificate,
  NodeRole as ProtoNodeRole,
} from '../../src/api/gen/meshd/v1/objects.js';
import type { Clock } from '../../src/common/clock.js';
import { MeshError, ValidationError } from '../../src/common/errors.js';
import type { Proposer } from '../store/proposer.js';
import { TransactionBuilder } from '../store/transaction.js';
import type { StoreView } from '../store/types.js';
import type { NodeRole } from './authority.js';
import {
  type AuthorityState,
  authorityOrThrow,
  type CaStateStore,
  type StoredNodeCertificate,
} from './ca-state.js';

/** Optimistic-concurrency retries for one CA write (another writer got there first). */
const MAX_WRITE_ATTEMPTS = 5;
/** How long a barrier or a refused proposal is retried (an election takes one or two election timeouts). */
const RAFT_RETRY_FOR_MS = 8_000;
const RAFT_RETRY_FIRST_DELAY_MS = 50;
const RAFT_RETRY_MAX_DELAY_MS = 1_000;

export interface StoreCaStateOptions {
  clusterId: string;
  store: StoreView;
  proposer: Proposer;
  /** A ReadIndex barrier (ManagerNode.linearizableRead). */
  sync: () => Promise<void>;
  clock: Clock;
}

export function roleToProtoRole(role: NodeRole): ProtoNodeRole {
  return role === 'manager' ? ProtoNodeRole.NODE_ROLE_MANAGER : ProtoNodeRole.NODE_ROLE_WORKER;
}

function roleOfProto(role: ProtoNodeRole): NodeRole | undefined {
  if (role === ProtoNodeRole.NODE_ROLE_MANAGER) return 'manager';
  if (role === ProtoNodeRole.NODE_ROLE_WORKER) return 'worker';
  return undefined;
}

/** The stored `ca` object for a state (a new cluster's bootstrap transaction creates it). */
export function authorityObject(
  clusterId: string,
  a: AuthorityState,
  meta?: CertificateAuthorityState['meta'],
): CertificateAuthorityState {
  return CertificateAuthorityState.fromPartial({
    meta: meta ?? { id: clusterId },
    root: { certificatePem: a.root.certPem, privateKeyPem: a.root.keyPem },
    rotation:
      a.rotation === undefined
        ? undefined
        : {
            next: { certificatePem: a.rotation.next.certPem, privateKeyPem: a.rotation.next.keyPem },
            crossSignedCertificatePem: a.rotation.crossSignedPem,
            batchSize: a.rotation.batchSize,
          },
    joinTokens: { worker: a.tokens.worker, manager: a.tokens.manager },
    joinTokensExpireAt: a.tokens.expiresAtMs === undefined ? undefined : { unixMs: a.tokens.expiresAtMs },
    externalCa:
      a.external === undefined
        ? undefined
        : { url: a.external.url, profile: a.external.profile, tlsCaPem: a.external.tlsCaPem },
  });
}

function authorityOf(o: CertificateAuthorityState): AuthorityState {
  const expires = o.joinTokensExpireAt?.unixMs;
  return {
    root: { certPem: o.root?.certificatePem ?? '', keyPem: o.root?.privateKeyPem ?? '' },
    rotation:
      o.rotation?.next === undefined
        ? undefined
        : {
            next: { certPem: o.rotation.next.certificatePem, keyPem: o.rotation.next.privateKeyPem },
            crossSignedPem: o.rotation.crossSignedCertificatePem,
            batchSize: o.rotation.batchSize,
          },
    tokens: {
      worker: o.joinTokens?.worker ?? '',
      manager: o.joinTokens?.manager ?? '',
      ...(expires === undefined ? {} : { expiresAtMs: Number(expires) }),
    },
    external:
      o.externalCa === undefined || o.externalCa.url === ''
        ? undefined
        : { url: o.externalCa.url, profile: o.externalCa.profile, tlsCaPem: o.externalCa.tlsCaPem },
  };
}

/** The stored `certificate` object for a record. */
export function certificateObject(r: StoredNodeCertificate, meta?: NodeCertificate['meta']): NodeCertificate {
  return NodeCertificate.fromPartial({
    meta: meta ?? { id: r.nodeId },
    role: roleToProtoRole(r.role),
    notAfter: { unixMs: r.notAfterMs },
    rootDigestHex: r.rootDigestHex,
    removed: r.removed,
  });
}

function recordOf(o: NodeCertificate): StoredNodeCertificate {
  return {
    nodeId: o.meta?.id ?? '',
    role: roleOfProto(o.role) ?? 'worker',
    notAfterMs: Number(o.notAfter?.unixMs ?? 0),
    rootDigestHex: o.rootDigestHex,
    removed: o.removed,
  };
}

function isRetryable(err: unknown): boolean {
  return err instanceof MeshError && (err.code === 'VERSION_CONFLICT' || err.code === 'ALREADY_EXISTS');
}

export class StoreCaState implements CaStateStore {
  readonly clusterId: string;

  constructor(private readonly opts: StoreCaStateOptions) {
    this.clusterId = opts.clusterId;
  }

  authority(): AuthorityState | undefined {
    const o = this.opts.store.get('ca', this.clusterId);
    return o === undefined ? undefined : authorityOf(o);
  }

  record(nodeId: string): StoredNodeCertificate | undefined {
    const o = this.opts.store.get('certificate', nodeId);
    return o === undefined ? undefined : recordOf(o);
  }

  records(): StoredNodeCertificate[] {
    return this.opts.store.list('certificate').map(recordOf);
  }

  wantedRole(nodeId: string): NodeRole | undefined {
    const node = this.opts.store.get('node', nodeId);
    return node === undefined ? undefined : roleOfProto(node.role);
  }

  /** ReadIndex barrier; it writes nothing, so any Raft failure but a stopped node is retried. */
  sync(): Promise<void> {
    return this.raftRetrying(
      () => this.opts.sync(),
      (code) => code.startsWith('RAFT_') && code !== 'RAFT_NODE_STOPPED',
    );
  }

  updateAuthority(change: (current: AuthorityState) => AuthorityState): Promise<AuthorityState> {
    return this.retrying(async (tx) => {
      const stored = this.opts.store.get('ca', this.clusterId);
      if (stored === undefined) authorityOrThrow(this);
      const next = change(authorityOf(stored!));
      tx.update('ca', authorityObject(this.clusterId, next, structuredClone(stored!.meta)));
      return next;
    });
  }

  putRecord(record: StoredNodeCertificate): Promise<void> {
    return this.retrying(async (tx) => {
      const stored = this.opts.store.get('certificate', record.nodeId);
      if (stored === undefined) tx.create('certificate', certificateObject(record));
      else tx.update('certificate', certificateObject(record, structuredClone(stored.meta)));
    });
  }

  deleteRecords(nodeIds: readonly string[]): Promise<void> {
    return this.retrying(async (tx) => {
      for (const id of nodeIds) {
        const stored = this.opts.store.get('certificate', id);
        if (stored !== undefined) tx.delete('certificate', stored);
      }
    });
  }

  setWantedRole(nodeId: string, role: NodeRole): Promise<void> {
    return this.retrying(async (tx) => {
      const node = this.opts.store.get('node', nodeId);
      if (node === undefined)
        throw new ValidationError(
          'nodeId',
          `node "${nodeId}" has no Node object (it never opened a session)`,
        );
      const next = structuredClone(node);
      next.role = roleToProtoRole(role);
      if (next.role !== node.role) tx.update('node', next);
    });
  }

  /** Builds and proposes one transaction; rebuilds it from a fresher read after a concurrent write. */
  private async retrying<T>(build: (tx: TransactionBuilder) => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      const tx = new TransactionBuilder(this.opts.clock.nowMs());
      const result = await build(tx);
      if (tx.size === 0) return result;
      const built = tx.build();
      try {
        // Only a proposal Raft refused outright (no leader) is repeated: one
        // that timed out may still commit.
        await this.raftRetrying(
          () => this.opts.proposer.propose(built),
          (code) => code === 'RAFT_PROPOSAL_DROPPED',
        );
        return result;
      } catch (err) {
        if (!isRetryable(err) || attempt >= MAX_WRITE_ATTEMPTS) throw err;
        await this.sync();
      }
    }
  }

  private async raftRetrying(fn: () => Promise<void>, retriable: (code: string) => boolean): Promise<void> {
    const deadline = this.opts.clock.nowMs() + RAFT_RETRY_FOR_MS;
    for (let attempt = 0; ; attempt++) {
      try {
        return await fn();
      } catch (err) {
        const code = err instanceof MeshError ? err.code : '';
        if (!retriable(code) || this.opts.clock.nowMs() >= deadline) throw err;
        const delayMs = Math.min(RAFT_RETRY_MAX_DELAY_MS, RAFT_RETRY_FIRST_DELAY_MS * 2 ** attempt);
        await new Promise<void>((resolve) => this.opts.clock.setTimer(delayMs, resolve));
      }
    }
  }
}
