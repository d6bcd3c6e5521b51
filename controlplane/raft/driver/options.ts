import type { ChannelCredentials, ServerCredentials } from '@grpc/grpc-js';
import type { Clock } from '../../../src/common/clock.js';
import { MeshError } from '../../../src/common/errors.js';
import type { ConfChange, ConfState, NodeId, ProgressStatus, RaftConfig, RaftRole } from '../core/types.js';

/**
 * The replicated state machine above Raft (the store). `apply` sees every
 * committed normal entry exactly once per process lifetime, in index order,
 * starting after the snapshot given to `restore`.
 */
export interface StateMachine {
  apply(index: number, payload: Uint8Array): void;
  /** Serialized state as of the last applied index. */
  snapshot(): Uint8Array;
  restore(data: Uint8Array): void;
  onConfChange?(change: ConfChange, index: number): void;
}

export interface RaftNodeOptions {
  id: NodeId;
  dataDir: string;
  stateMachine: StateMachine;
  listenAddress: string;
  serverCredentials: ServerCredentials;
  channelCredentials: ChannelCredentials;
  tlsServerName?: string;
  /** Peers as id → "host:port" (more arrive through conf-change contexts). */
  peers: Record<NodeId, string>;
  /** Founding voters for a new cluster (ignored when the data directory has state). */
  bootstrap?: ConfState;
  heartbeatMs?: number;
  electionMs?: number;
  /** A proposal or read with no outcome after this long rejects (outcome unknown). */
  requestTimeoutMs?: number;
  /** Take a snapshot every this many applied entries. */
  snapshotEveryEntries?: number;
  segmentBytes?: number;
  /** Log entries kept below a snapshot so a briefly slow follower needs no snapshot. */
  keepEntriesAfterSnapshot?: number;
  clock?: Clock;
  /** Called once if the node stops itself (a storage write failed); the process should exit. */
  onFatal?: (err: Error) => void;
  core?: Partial<Omit<RaftConfig, 'id' | 'electionTicks' | 'heartbeatTicks' | 'applied'>>;
}

export interface RaftNodeStatus {
  id: NodeId;
  role: RaftRole;
  term: number;
  lead: NodeId | null;
  commit: number;
  applied: number;
  lastIndex: number;
  confState: ConfState;
  /** On the leader: what it knows of each member's log (learner promotion reads it). */
  progress?: Record<NodeId, ProgressStatus>;
}

export class NodeStoppedError extends MeshError {
  constructor(id: NodeId) {
    super('RAFT_NODE_STOPPED', `raft node ${id} is stopped`);
  }
}
