/**
 * Public types of the pure Raft core (etcd-io/raft style). Storage, transport
 * and the driver build on these; keep them stable (add fields, never rename).
 *
 * Indexes and terms are plain numbers (safe integers: 2^53 entries is more
 * than a manager will ever write). Index 0 / term 0 mean "nothing".
 */
import { MeshError } from '../../../src/common/errors.js';

/** A member's identity: its node ID (the 25-character ID from src/common/ids). */
export type NodeId = string;

export type EntryType = 'normal' | 'confChange';

/** One log entry. A `confChange` entry carries an encoded ConfChange (see conf-change.ts). */
export interface Entry {
  term: number;
  index: number;
  type: EntryType;
  data: Uint8Array;
}

/** What must be durable before any message produced in the same Ready is sent. */
export interface HardState {
  term: number;
  /** The candidate voted for in `term`, or null. */
  vote: NodeId | null;
  commit: number;
}

/** Membership: voters count for elections and commits, learners only receive the log. */
export interface ConfState {
  voters: NodeId[];
  learners: NodeId[];
}

export type ConfChangeType = 'addVoter' | 'addLearner' | 'removeNode';

/** A single-server membership change. Adding an existing learner as voter promotes it. */
export interface ConfChange {
  type: ConfChangeType;
  nodeId: NodeId;
  /** Opaque to Raft (e.g. the new member's address), handed back when applied. */
  context?: Uint8Array;
}

export interface SnapshotMetadata {
  index: number;
  term: number;
  confState: ConfState;
}

export interface Snapshot {
  metadata: SnapshotMetadata;
  /** The state machine's serialized state. No size cap: it travels in chunks. */
  data: Uint8Array;
}

export type RaftRole = 'follower' | 'preCandidate' | 'candidate' | 'leader';

/** Volatile state, reported in Ready only when it changed. Not persisted. */
export interface SoftState {
  lead: NodeId | null;
  role: RaftRole;
}

/** A ReadIndex answer: reads issued with `context` are linearizable once applied ≥ index. */
export interface ReadState {
  index: number;
  context: Uint8Array;
}

/** Fields every message carries. `term` 0 marks a message that is term-agnostic (local forwards). */
interface MessageBase {
  from: NodeId;
  to: NodeId;
  term: number;
}

/** §9.6 pre-vote: `term` is the term the sender would campaign in; nobody's term changes. */
export interface PreVoteMessage extends MessageBase {
  type: 'preVote';
  lastLogIndex: number;
  lastLogTerm: number;
}

export interface PreVoteResponseMessage extends MessageBase {
  type: 'preVoteResponse';
  reject: boolean;
}

export interface VoteMessage extends MessageBase {
  type: 'vote';
  lastLogIndex: number;
  lastLogTerm: number;
  /** Set when campaigning after TimeoutNow: voters with a live leader still answer. */
  transfer: boolean;
}

export interface VoteResponseMessage extends MessageBase {
  type: 'voteResponse';
  reject: boolean;
}

/** AppendEntries: entries follow (prevLogIndex, prevLogTerm). */
export interface AppendMessage extends MessageBase {
  type: 'append';
  prevLogIndex: number;
  prevLogTerm: number;
  entries: Entry[];
  commit: number;
}

export interface AppendResponseMessage extends MessageBase {
  type: 'appendResponse';
  /** On success the last index now known to match; on reject the rejected prevLogIndex. */
  index: number;
  reject: boolean;
  /** On reject: the follower's best guess of a matching index (fast back-tracking by term). */
  rejectHint: number;
  /** On reject: the follower's term at rejectHint. */
  logTerm: number;
}

export interface HeartbeatMessage extends MessageBase {
  type: 'heartbeat';
  commit: number;
  /** ReadIndex context being confirmed by this round, empty when none. */
  context: Uint8Array;
}

export interface HeartbeatResponseMessage extends MessageBase {
  type: 'heartbeatResponse';
  context: Uint8Array;
}

/**
 * One chunk of a snapshot streamed to a slow follower. Chunks of one snapshot
 * share `metadata` and arrive in `offset` order on one stream; `done` marks the
 * last one. `totalBytes` lets the receiver reject a stream that does not add up.
 */
export interface SnapshotChunkMessage extends MessageBase {
  type: 'snapshot';
  metadata: SnapshotMetadata;
  offset: number;
  totalBytes: number;
  data: Uint8Array;
  done: boolean;
}

/** A follower forwards proposals to its leader. */
export interface ProposeMessage extends MessageBase {
  type: 'propose';
  entries: Entry[];
}

/** A follower forwards a ReadIndex request to its leader. */
export interface ReadIndexMessage extends MessageBase {
  type: 'readIndex';
  context: Uint8Array;
}

export interface ReadIndexResponseMessage extends MessageBase {
  type: 'readIndexResponse';
  index: number;
  context: Uint8Array;
}

/** A follower forwards a leader-transfer request to its leader. */
export interface TransferLeaderMessage extends MessageBase {
  type: 'transferLeader';
  target: NodeId;
}

/** §3.10: the leader tells an up-to-date target to campaign at once. */
export interface TimeoutNowMessage extends MessageBase {
  type: 'timeoutNow';
}

export type RaftMessage =
  | PreVoteMessage
  | PreVoteResponseMessage
  | VoteMessage
  | VoteResponseMessage
  | AppendMessage
  | AppendResponseMessage
  | HeartbeatMessage
  | HeartbeatResponseMessage
  | SnapshotChunkMessage
  | ProposeMessage
  | ReadIndexMessage
  | ReadIndexResponseMessage
  | TransferLeaderMessage
  | TimeoutNowMessage;

export type RaftMessageType = RaftMessage['type'];

export const RAFT_MESSAGE_TYPES: readonly RaftMessageType[] = [
  'preVote',
  'preVoteResponse',
  'vote',
  'voteResponse',
  'append',
  'appendResponse',
  'heartbeat',
  'heartbeatResponse',
  'snapshot',
  'propose',
  'readIndex',
  'readIndexResponse',
  'transferLeader',
  'timeoutNow',
];

/**
 * Everything the caller must do, in this order:
 * 1. persist `snapshot` (if any), `entries` and `hardState` (fsync when `mustSync`);
 * 2. send `messages` (only after step 1: votes and acks need durable state);
 * 3. apply `snapshot` then `committedEntries` to the state machine, serve `readStates`;
 * 4. call `advance()`.
 */
export interface Ready {
  softState?: SoftState;
  hardState?: HardState;
  /** New unstable entries to append to storage (they may overwrite a suffix). */
  entries: Entry[];
  /** A snapshot received from the leader, to persist and apply. */
  snapshot?: Snapshot;
  committedEntries: Entry[];
  messages: RaftMessage[];
  readStates: ReadState[];
  /** True when hardState term/vote changed or entries were added: fsync before sending. */
  mustSync: boolean;
}

export type ReadOnlyOption = 'safe' | 'leaseBased';

/** Core configuration. Times are in ticks; the driver chooses the tick length. */
export interface RaftConfig {
  /** This node's ID. */
  id: NodeId;
  /** Ticks without a leader message before campaigning; the real timeout is randomized in [e, 2e). */
  electionTicks: number;
  /** Ticks between leader heartbeats; must be < electionTicks. */
  heartbeatTicks: number;
  /** §9.6 pre-vote. Default true. */
  preVote: boolean;
  /** §6.2 leader steps down when it has not heard from a quorum for an election timeout. Default true. */
  checkQuorum: boolean;
  /** Max append messages in flight per follower in replicate state. */
  maxInflightMsgs: number;
  /** Max bytes of entries in flight per follower (0 = no byte limit). */
  maxInflightBytes: number;
  /** Max bytes of entries in one append message (at least one entry is always sent). */
  maxSizePerMsg: number;
  /** Max bytes of proposed-but-uncommitted entries on the leader (0 = no limit). */
  maxUncommittedEntriesSize: number;
  /** Bytes of snapshot data per chunk message. */
  snapshotChunkBytes: number;
  /** The last index already applied by the state machine (on restart). */
  applied: number;
  /** Max bytes of committed entries handed out in one Ready (0 = no limit). */
  maxCommittedSizePerReady: number;
  readOnlyOption: ReadOnlyOption;
  /** When true, followers drop proposals instead of forwarding them to the leader. */
  disableProposalForwarding: boolean;
  /**
   * Raft thesis §10.2.1: the leader writes its log in parallel with replication.
   * When true the leader counts its own entries toward commit only at advance()
   * (after the caller persisted that Ready), so the caller may send the Ready's
   * `append` messages before persisting; every other message still waits for
   * the write. Default false.
   */
  asyncLeaderAppend?: boolean;
}

export const DEFAULT_RAFT_CONFIG: Omit<RaftConfig, 'id'> = {
  electionTicks: 10,
  heartbeatTicks: 1,
  preVote: true,
  checkQuorum: true,
  maxInflightMsgs: 256,
  maxInflightBytes: 0,
  maxSizePerMsg: 1024 * 1024,
  maxUncommittedEntriesSize: 64 * 1024 * 1024,
  snapshotChunkBytes: 1024 * 1024,
  applied: 0,
  maxCommittedSizePerReady: 0,
  readOnlyOption: 'safe',
  disableProposalForwarding: false,
  asyncLeaderAppend: false,
};

/** What the core reads from storage at start. */
export interface InitialState {
  hardState: HardState;
  confState: ConfState;
}

/**
 * The log storage the core reads (etcd-io/raft's Storage). The caller writes
 * to it from Ready; the core never writes. A new cluster starts from a storage
 * whose initialState().confState lists the founding voters (e.g. a snapshot at
 * index 0 holding that ConfState); a node joining an existing cluster starts
 * from the membership it was given on join (it is not a voter of it yet).
 *
 * Errors: throw LogCompactedError for an index below firstIndex(),
 * LogUnavailableError above lastIndex(), SnapshotTemporarilyUnavailableError
 * when a snapshot is being built.
 */
export interface Storage {
  initialState(): InitialState;
  /** Entries in [lo, hi), at most maxBytes of entries (0 = no limit) but always at least one if any. */
  entries(lo: number, hi: number, maxBytes: number): Entry[];
  /** Term of entry i, for i in [firstIndex()-1, lastIndex()]. */
  term(index: number): number;
  /** Index of the first entry still in the log (snapshot index + 1). */
  firstIndex(): number;
  lastIndex(): number;
  snapshot(): Snapshot;
}

export class LogCompactedError extends MeshError {
  constructor(index: number, firstIndex: number) {
    super('RAFT_LOG_COMPACTED', `raft log: index ${index} is compacted; first index is ${firstIndex}`);
    this.name = 'LogCompactedError';
  }
}

export class LogUnavailableError extends MeshError {
  constructor(index: number, lastIndex: number) {
    super('RAFT_LOG_UNAVAILABLE', `raft log: index ${index} is unavailable; last index is ${lastIndex}`);
    this.name = 'LogUnavailableError';
  }
}

export class SnapshotTemporarilyUnavailableError extends MeshError {
  constructor() {
    super('RAFT_SNAPSHOT_TEMPORARILY_UNAVAILABLE', 'raft storage: snapshot is temporarily unavailable');
    this.name = 'SnapshotTemporarilyUnavailableError';
  }
}

/** A proposal was not accepted (no leader, leader transfer, uncommitted limit, pending conf change). */
export class ProposalDroppedError extends MeshError {
  constructor(reason: string) {
    super('RAFT_PROPOSAL_DROPPED', `raft: proposal dropped: ${reason}`);
    this.name = 'ProposalDroppedError';
  }
}

export type ProgressState = 'probe' | 'replicate' | 'snapshot';

export interface ProgressStatus {
  match: number;
  next: number;
  state: ProgressState;
  isLearner: boolean;
  recentActive: boolean;
}

export interface RaftStatus {
  id: NodeId;
  hardState: HardState;
  softState: SoftState;
  applied: number;
  confState: ConfState;
  /** Set on the leader only. */
  progress?: Record<NodeId, ProgressStatus>;
  leadTransferee: NodeId | null;
}

/**
 * The pure core's interface, implemented by `createRaftCore(config, storage, rng)`
 * in core/index.ts. Every method is synchronous and does no I/O.
 */
export interface RaftCore {
  readonly id: NodeId;
  tick(): void;
  /** Feeds a message from a peer. Bad or stale messages are ignored, never thrown. */
  step(message: RaftMessage): void;
  /** Throws ProposalDroppedError when the proposal cannot be accepted now. */
  propose(data: Uint8Array): void;
  /** Throws ProposalDroppedError (or ValidationError for a change that would break quorum). */
  proposeConfChange(change: ConfChange): void;
  /** Asks for a ReadState carrying `context`; answered in a later Ready. */
  readIndex(context: Uint8Array): void;
  transferLeader(to: NodeId): void;
  /** Starts an election now (pre-vote first when enabled). */
  campaign(): void;
  /** The transport could not reach `id`: the leader probes it again. */
  reportUnreachable(id: NodeId): void;
  /** The transport finished (or failed) streaming a snapshot to `id`. */
  reportSnapshot(id: NodeId, ok: boolean): void;
  hasReady(): boolean;
  ready(): Ready;
  /** Acknowledges the last ready(); conf changes in its committed entries take effect here. */
  advance(): void;
  status(): RaftStatus;
}
