import { assertNever } from '../../../src/common/errors.js';
import type { Rng } from '../../../src/common/rng.js';
import { encodeConfChange } from './conf-change.js';
import { validateConfig } from './config.js';
import { RaftLog } from './log.js';
import { checkConfChange } from './membership.js';
import { entrySizeBytes } from './memory-storage.js';
import { ReadOnlyQueue } from './read-only.js';
import { ReadyTracker } from './ready.js';
import {
  bcastHeartbeat,
  onPeerUnreachable,
  onSnapshotReported,
  type SnapshotAssembly,
} from './replication.js';
import { handleVoteRequest, stepCandidate, stepFollower, stepLeader } from './roles.js';
import { raftStatus } from './status.js';
import { ProgressTracker } from './tracker.js';
import {
  type ConfChange,
  type Entry,
  type HardState,
  type NodeId,
  ProposalDroppedError,
  type RaftConfig,
  type RaftCore,
  type RaftMessage,
  type RaftRole,
  type RaftStatus,
  type ReadState,
  type Ready,
  type SoftState,
  type Storage,
} from './types.js';
import { validateMessage } from './validate.js';

export type CampaignKind = 'preElection' | 'election' | 'transfer';

/**
 * The Raft state machine. Fields are visible to the role and replication
 * modules of this folder; outside code uses the RaftCore interface.
 */
export class Raft implements RaftCore {
  readonly id: NodeId;
  readonly config: RaftConfig;
  readonly rng: Rng;
  readonly log: RaftLog;
  readonly tracker: ProgressTracker;
  term = 0;
  vote: NodeId | null = null;
  lead: NodeId | null = null;
  role: RaftRole = 'follower';
  electionElapsed = 0;
  heartbeatElapsed = 0;
  randomizedElectionTimeout = 0;
  leadTransferee: NodeId | null = null;
  /** Index of the latest conf change proposed; a new one waits until it is applied. */
  pendingConfIndex = 0;
  uncommittedSize = 0;
  readOnly = new ReadOnlyQueue();
  pendingReadIndex: { from: NodeId; context: Uint8Array }[] = [];
  snapshotAssembly: SnapshotAssembly | undefined;
  messages: RaftMessage[] = [];
  readStates: ReadState[] = [];
  private readonly readyTracker: ReadyTracker;

  constructor(config: RaftConfig, storage: Storage, rng: Rng) {
    validateConfig(config);
    this.id = config.id;
    this.config = config;
    this.rng = rng;
    this.log = new RaftLog(storage);
    const { hardState, confState } = storage.initialState();
    this.tracker = new ProgressTracker(config.maxInflightMsgs, config.maxInflightBytes);
    this.tracker.setConfState(confState, this.log.lastIndex() + 1);
    // The commit index is written without fsync, so after a crash it may lag what the
    // state machine already applied; applied entries were committed, so take the larger.
    const commit = Math.min(Math.max(hardState.commit, config.applied), this.log.lastIndex());
    this.log.commitTo(commit);
    if (config.applied > this.log.applied) this.log.appliedTo(Math.min(config.applied, commit));
    this.term = hardState.term;
    this.vote = hardState.vote;
    const initialHardState = this.hardState();
    this.becomeFollower(this.term, null);
    this.readyTracker = new ReadyTracker(initialHardState, this.softState());
  }

  hardState(): HardState {
    return { term: this.term, vote: this.vote, commit: this.log.committed };
  }

  softState(): SoftState {
    return { lead: this.lead, role: this.role };
  }

  /** A voter without a pending snapshot may campaign. */
  promotable(): boolean {
    return this.tracker.voters.has(this.id) && this.log.unstable.snapshot === undefined;
  }

  send(message: RaftMessage): void {
    this.messages.push(message);
  }

  // ---- role transitions ------------------------------------------------------

  private reset(term: number): void {
    if (this.term !== term) {
      this.term = term;
      this.vote = null;
    }
    this.lead = null;
    this.electionElapsed = 0;
    this.heartbeatElapsed = 0;
    this.randomizedElectionTimeout = this.config.electionTicks + this.rng.int(this.config.electionTicks);
    this.leadTransferee = null;
    this.tracker.resetVotes();
    const next = this.log.lastIndex() + 1;
    const selfMatch = this.durableLastIndex();
    for (const [id, pr] of this.tracker.progress) {
      const isLearner = pr.isLearner;
      pr.resetForTerm(next, id === this.id ? selfMatch : 0, isLearner);
    }
    this.pendingConfIndex = 0;
    this.uncommittedSize = 0;
    this.readOnly = new ReadOnlyQueue();
    this.pendingReadIndex = [];
  }

  becomeFollower(term: number, lead: NodeId | null): void {
    this.reset(term);
    this.lead = lead;
    this.role = 'follower';
  }

  becomePreCandidate(): void {
    // Pre-vote changes neither term nor vote (§9.6): a partitioned node stays harmless.
    this.tracker.resetVotes();
    this.lead = null;
    this.role = 'preCandidate';
  }

  becomeCandidate(): void {
    this.reset(this.term + 1);
    this.vote = this.id;
    this.role = 'candidate';
  }

  becomeLeader(): void {
    this.reset(this.term);
    this.lead = this.id;
    this.role = 'leader';
    const self = this.tracker.progress.get(this.id);
    if (self !== undefined) self.becomeReplicate();
    this.appendEntries([{ term: 0, index: 0, type: 'normal', data: new Uint8Array() }]);
    // Conf changes wait until this term's first entry is applied (the single-server
    // membership bug: a change must not start before the leader committed in its term).
    this.pendingConfIndex = this.log.lastIndex();
  }

  campaign(kind: CampaignKind = this.config.preVote ? 'preElection' : 'election'): void {
    if (!this.promotable() || this.role === 'leader') return;
    if (this.hasUnappliedConfChange()) return;
    let term: number;
    if (kind === 'preElection') {
      this.becomePreCandidate();
      term = this.term + 1;
    } else {
      this.becomeCandidate();
      term = this.term;
    }
    this.tracker.recordVote(this.id, true);
    const result = this.tracker.tallyVotes();
    if (result === 'won') {
      if (kind === 'preElection') this.campaign('election');
      else this.becomeLeader();
      return;
    }
    const lastLogIndex = this.log.lastIndex();
    const lastLogTerm = this.log.lastTerm();
    for (const to of [...this.tracker.voters].sort()) {
      if (to === this.id) continue;
      if (kind === 'preElection')
        this.send({ type: 'preVote', from: this.id, to, term, lastLogIndex, lastLogTerm });
      else
        this.send({
          type: 'vote',
          from: this.id,
          to,
          term,
          lastLogIndex,
          lastLogTerm,
          transfer: kind === 'transfer',
        });
    }
  }

  private hasUnappliedConfChange(): boolean {
    if (this.log.committed <= this.log.applied) return false;
    try {
      const ents = this.log.slice(this.log.applied + 1, this.log.committed + 1, 0);
      return ents.some((e) => e.type === 'confChange');
    } catch {
      return false;
    }
  }

  /** The last index our own replica counts for: with asyncLeaderAppend, only what is durable. */
  durableLastIndex(): number {
    if (!this.config.asyncLeaderAppend) return this.log.lastIndex();
    return Math.min(this.log.lastIndex(), this.log.unstable.offset - 1);
  }

  /** Appends entries as the leader; returns false when the uncommitted-size bound refuses them. */
  appendEntries(entries: Entry[]): boolean {
    let last = this.log.lastIndex();
    let size = 0;
    for (const e of entries) if (e.data.byteLength > 0) size += entrySizeBytes(e);
    const max = this.config.maxUncommittedEntriesSize;
    // Bounded uncommitted log: while quorum is lost proposals fail instead of piling up.
    if (max > 0 && size > 0 && this.uncommittedSize > 0 && this.uncommittedSize + size > max) return false;
    this.uncommittedSize += size;
    const stamped = entries.map((e) => ({ ...e, term: this.term, index: ++last }));
    this.log.append(stamped);
    if (!this.config.asyncLeaderAppend) {
      this.tracker.progress.get(this.id)?.maybeUpdate(this.log.lastIndex());
      this.maybeCommit();
    }
    return true;
  }

  maybeCommit(): boolean {
    return this.log.maybeCommit(this.tracker.committed(), this.term);
  }

  committedEntryInCurrentTerm(): boolean {
    return this.log.termOrZero(this.log.committed) === this.term;
  }

  abortLeaderTransfer(): void {
    this.leadTransferee = null;
  }

  // ---- inputs ----------------------------------------------------------------

  tick(): void {
    if (this.role === 'leader') this.tickHeartbeat();
    else this.tickElection();
  }

  private tickElection(): void {
    this.electionElapsed++;
    if (this.promotable() && this.electionElapsed >= this.randomizedElectionTimeout) {
      this.electionElapsed = 0;
      this.campaign();
    }
  }

  private tickHeartbeat(): void {
    this.heartbeatElapsed++;
    this.electionElapsed++;
    if (this.electionElapsed >= this.config.electionTicks) {
      this.electionElapsed = 0;
      if (this.config.checkQuorum) {
        // §6.2: a leader that cannot reach a quorum steps down so clients find the real one.
        if (!this.tracker.quorumActive(this.id)) {
          this.becomeFollower(this.term, null);
          return;
        }
        for (const [id, pr] of this.tracker.progress) if (id !== this.id) pr.recentActive = false;
      }
      // A transfer that did not finish within an election timeout is abandoned.
      if (this.leadTransferee !== null) this.abortLeaderTransfer();
    }
    if (this.heartbeatElapsed >= this.config.heartbeatTicks) {
      this.heartbeatElapsed = 0;
      bcastHeartbeat(this, this.readOnly.lastPendingContext());
    }
  }

  step(message: RaftMessage): void {
    if (validateMessage(message, this.id) !== undefined) return;
    const m = message;
    if ((m.type === 'preVote' || m.type === 'vote') && !this.tracker.voters.has(m.from)) {
      // Only voters campaign. A removed node that missed its removal (or a learner)
      // gets no vote, and its higher term changes nothing here.
      return;
    }
    if (m.term === 0) {
      // Local forwards (propose, readIndex, transferLeader) carry no term.
    } else if (m.term > this.term) {
      if (m.type === 'preVote' || m.type === 'vote') {
        const force = m.type === 'vote' && m.transfer;
        const inLease =
          this.config.checkQuorum && this.lead !== null && this.electionElapsed < this.config.electionTicks;
        // A follower that hears from a live leader ignores disruptive candidates (§4.2.3).
        if (!force && inLease) return;
      }
      if (m.type === 'preVote') {
        // Pre-votes never change our term.
      } else if (m.type === 'preVoteResponse' && !m.reject) {
        // We become candidate at that term when we win the pre-vote.
      } else if (m.type === 'append' || m.type === 'heartbeat' || m.type === 'snapshot') {
        this.becomeFollower(m.term, m.from);
      } else {
        this.becomeFollower(m.term, null);
      }
    } else if (m.term < this.term) {
      if (
        (this.config.checkQuorum || this.config.preVote) &&
        (m.type === 'heartbeat' || m.type === 'append')
      ) {
        // Tell a stale leader our term so it steps down; otherwise a node with a
        // higher term (after pre-vote failed) could never rejoin.
        this.send({
          type: 'appendResponse',
          from: this.id,
          to: m.from,
          term: this.term,
          index: 0,
          reject: false,
          rejectHint: 0,
          logTerm: 0,
        });
      } else if (m.type === 'preVote') {
        this.send({ type: 'preVoteResponse', from: this.id, to: m.from, term: this.term, reject: true });
      }
      return;
    }

    if (m.type === 'preVote' || m.type === 'vote') {
      handleVoteRequest(this, m);
      return;
    }
    switch (this.role) {
      case 'leader':
        stepLeader(this, m);
        break;
      case 'candidate':
      case 'preCandidate':
        stepCandidate(this, m);
        break;
      case 'follower':
        stepFollower(this, m);
        break;
      default:
        assertNever(this.role, 'raft role');
    }
  }

  propose(data: Uint8Array): void {
    this.proposeEntry({ term: 0, index: 0, type: 'normal', data });
  }

  proposeConfChange(change: ConfChange): void {
    checkConfChange(this, change);
    this.proposeEntry({ term: 0, index: 0, type: 'confChange', data: encodeConfChange(change) });
  }

  private proposeEntry(entry: Entry): void {
    if (this.role === 'leader') {
      stepLeader(this, { type: 'propose', from: this.id, to: this.id, term: 0, entries: [entry] }, true);
      return;
    }
    if (this.lead === null) throw new ProposalDroppedError('no leader known');
    if (this.config.disableProposalForwarding)
      throw new ProposalDroppedError('proposal forwarding is disabled');
    if (this.role !== 'follower') throw new ProposalDroppedError(`node is ${this.role}`);
    this.send({ type: 'propose', from: this.id, to: this.lead, term: 0, entries: [entry] });
  }

  readIndex(context: Uint8Array): void {
    if (this.role === 'leader') {
      stepLeader(this, { type: 'readIndex', from: this.id, to: this.id, term: 0, context });
      return;
    }
    if (this.lead === null) throw new ProposalDroppedError('read index: no leader known');
    this.send({ type: 'readIndex', from: this.id, to: this.lead, term: 0, context });
  }

  transferLeader(to: NodeId): void {
    if (this.role === 'leader') {
      stepLeader(this, { type: 'transferLeader', from: this.id, to: this.id, term: 0, target: to });
    } else if (this.lead !== null) {
      this.send({ type: 'transferLeader', from: this.id, to: this.lead, term: 0, target: to });
    }
  }

  reportUnreachable(id: NodeId): void {
    onPeerUnreachable(this, id);
  }

  reportSnapshot(id: NodeId, ok: boolean): void {
    onSnapshotReported(this, id, ok);
  }

  status(): RaftStatus {
    return raftStatus(this);
  }

  // ---- Ready / advance -------------------------------------------------------

  hasReady(): boolean {
    return this.readyTracker.hasReady(this);
  }

  ready(): Ready {
    return this.readyTracker.ready(this);
  }

  advance(): void {
    this.readyTracker.advance(this);
  }
}
