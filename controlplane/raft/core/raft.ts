import { assertNever, ValidationError } from '../../../src/common/errors.js';
import type { Rng } from '../../../src/common/rng.js';
import { decodeConfChange, encodeConfChange } from './conf-change.js';
import { RaftLog } from './log.js';
import { entrySizeBytes } from './memory-storage.js';
import { quorumSize } from './quorum.js';
import { ReadOnlyQueue } from './read-only.js';
import { bcastAppend, bcastHeartbeat, maybeSendAppend, type SnapshotAssembly } from './replication.js';
import { stepCandidate, stepFollower, stepLeader } from './roles.js';
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
  private prevHardState: HardState;
  private prevSoftState: SoftState;
  private readyApplyingTo = 0;
  private readyUnstable: { index: number; term: number } | undefined;
  private readySnapshotIndex: number | undefined;
  private readyConfEntries: Entry[] = [];

  constructor(config: RaftConfig, storage: Storage, rng: Rng) {
    validateConfig(config);
    this.id = config.id;
    this.config = config;
    this.rng = rng;
    this.log = new RaftLog(storage, config.applied);
    const { hardState, confState } = storage.initialState();
    this.tracker = new ProgressTracker(config.maxInflightMsgs, config.maxInflightBytes);
    this.tracker.setConfState(confState, this.log.lastIndex() + 1);
    if (hardState.commit > 0) this.log.commitTo(Math.min(hardState.commit, this.log.lastIndex()));
    this.term = hardState.term;
    this.vote = hardState.vote;
    this.prevHardState = this.hardState();
    this.becomeFollower(this.term, null);
    this.prevSoftState = this.softState();
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
    for (const [id, pr] of this.tracker.progress) {
      const isLearner = pr.isLearner;
      pr.resetForTerm(next, id === this.id ? this.log.lastIndex() : 0, isLearner);
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
    this.tracker.progress.get(this.id)?.maybeUpdate(this.log.lastIndex());
    this.maybeCommit();
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
      this.handleVoteRequest(m);
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

  private handleVoteRequest(m: Extract<RaftMessage, { type: 'preVote' | 'vote' }>): void {
    // §5.2 one vote per term; a pre-vote for a future term may be granted freely.
    const canVote =
      this.vote === m.from ||
      (this.vote === null && this.lead === null) ||
      (m.type === 'preVote' && m.term > this.term);
    // §5.4.1 election restriction: only a candidate with an up-to-date log.
    if (canVote && this.log.isUpToDate(m.lastLogIndex, m.lastLogTerm)) {
      if (m.type === 'preVote') {
        this.send({ type: 'preVoteResponse', from: this.id, to: m.from, term: m.term, reject: false });
      } else {
        this.electionElapsed = 0;
        this.vote = m.from;
        this.send({ type: 'voteResponse', from: this.id, to: m.from, term: m.term, reject: false });
      }
    } else if (m.type === 'preVote') {
      this.send({ type: 'preVoteResponse', from: this.id, to: m.from, term: this.term, reject: true });
    } else {
      this.send({ type: 'voteResponse', from: this.id, to: m.from, term: this.term, reject: true });
    }
  }

  propose(data: Uint8Array): void {
    this.proposeEntry({ term: 0, index: 0, type: 'normal', data });
  }

  proposeConfChange(change: ConfChange): void {
    this.checkConfChange(change);
    this.proposeEntry({ term: 0, index: 0, type: 'confChange', data: encodeConfChange(change) });
  }

  /** Refuses a change that would leave the new configuration without a reachable quorum. */
  checkConfChange(change: ConfChange): void {
    if (change.nodeId.length === 0)
      throw new ValidationError('confChange.nodeId', 'raft conf change: nodeId must not be empty');
    if (this.role !== 'leader') return;
    const voters = this.tracker.votersAfter(change);
    if (voters.size === 0) {
      throw new ValidationError(
        'confChange.nodeId',
        `raft conf change: removing ${change.nodeId} would leave no voters`,
      );
    }
    if (change.type === 'removeNode') {
      let active = 0;
      for (const id of voters) if (id === this.id || this.tracker.progress.get(id)?.recentActive) active++;
      if (active < quorumSize(voters.size)) {
        throw new ValidationError(
          'confChange.nodeId',
          `raft conf change: removing ${change.nodeId} would leave ${active} reachable of ${voters.size} voters, below quorum ${quorumSize(voters.size)}`,
        );
      }
    }
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
    const pr = this.tracker.progress.get(id);
    if (this.role !== 'leader' || pr === undefined) return;
    // An unreachable follower in replicate probably lost appends: probe again.
    if (pr.state === 'replicate') pr.becomeProbe();
  }

  reportSnapshot(id: NodeId, ok: boolean): void {
    const pr = this.tracker.progress.get(id);
    if (this.role !== 'leader' || pr === undefined || pr.state !== 'snapshot') return;
    if (!ok) pr.pendingSnapshot = 0;
    pr.becomeProbe();
    // Wait for the next heartbeat response before probing (the follower may still be restoring).
    pr.msgAppFlowPaused = true;
  }

  // ---- Ready / advance -------------------------------------------------------

  hasReady(): boolean {
    const ss = this.softState();
    if (ss.lead !== this.prevSoftState.lead || ss.role !== this.prevSoftState.role) return true;
    if (!hardStateEqual(this.hardState(), this.prevHardState)) return true;
    if (this.log.unstable.snapshot !== undefined || this.log.unstable.entries.length > 0) return true;
    return this.messages.length > 0 || this.readStates.length > 0 || this.log.hasNextCommittedEntries();
  }

  ready(): Ready {
    const entries = this.log.unstable.entries.slice();
    const snapshot = this.log.unstable.snapshot;
    const committedEntries = this.log.nextCommittedEntries(this.config.maxCommittedSizePerReady);
    const hs = this.hardState();
    const ss = this.softState();
    const rd: Ready = {
      entries,
      committedEntries,
      messages: this.messages,
      readStates: this.readStates,
      mustSync:
        entries.length > 0 ||
        snapshot !== undefined ||
        hs.term !== this.prevHardState.term ||
        hs.vote !== this.prevHardState.vote,
    };
    if (ss.lead !== this.prevSoftState.lead || ss.role !== this.prevSoftState.role) rd.softState = ss;
    if (!hardStateEqual(hs, this.prevHardState)) rd.hardState = hs;
    if (snapshot !== undefined) rd.snapshot = snapshot;
    this.prevHardState = hs;
    this.prevSoftState = ss;
    this.messages = [];
    this.readStates = [];
    const lastEntry = entries[entries.length - 1];
    this.readyUnstable =
      lastEntry === undefined ? undefined : { index: lastEntry.index, term: lastEntry.term };
    this.readySnapshotIndex = snapshot?.metadata.index;
    const lastCommitted = committedEntries[committedEntries.length - 1];
    if (lastCommitted !== undefined) {
      this.log.applying = lastCommitted.index;
      this.readyApplyingTo = lastCommitted.index;
      if (this.role === 'leader') {
        let size = 0;
        for (const e of committedEntries) if (e.data.byteLength > 0) size += entrySizeBytes(e);
        this.uncommittedSize = Math.max(0, this.uncommittedSize - size);
      }
    }
    this.readyConfEntries = committedEntries.filter((e) => e.type === 'confChange');
    return rd;
  }

  advance(): void {
    if (this.readySnapshotIndex !== undefined) {
      this.log.unstable.stableSnapTo(this.readySnapshotIndex);
      this.log.appliedTo(this.readySnapshotIndex);
      this.readySnapshotIndex = undefined;
    }
    if (this.readyUnstable !== undefined) {
      this.log.unstable.stableTo(this.readyUnstable.index, this.readyUnstable.term);
      this.readyUnstable = undefined;
    }
    if (this.readyApplyingTo > 0) {
      this.log.appliedTo(this.readyApplyingTo);
      this.readyApplyingTo = 0;
    }
    for (const e of this.readyConfEntries) this.applyConfChangeEntry(e);
    this.readyConfEntries = [];
  }

  private applyConfChangeEntry(entry: Entry): void {
    let change: ConfChange;
    try {
      change = decodeConfChange(entry.data);
    } catch {
      return; // Validated when proposed; an undecodable entry is a no-op on every member alike.
    }
    this.tracker.applyConfChange(change, this.log.lastIndex() + 1);
    if (this.role !== 'leader') return;
    if (!this.tracker.voters.has(this.id)) {
      // A removed leader tells the others the commit index, then steps down.
      bcastAppend(this);
      this.becomeFollower(this.term, null);
      return;
    }
    if (this.maybeCommit()) bcastAppend(this);
    else for (const id of this.tracker.progress.keys()) if (id !== this.id) maybeSendAppend(this, id, false);
    if (this.leadTransferee !== null && !this.tracker.voters.has(this.leadTransferee))
      this.abortLeaderTransfer();
  }

  status(): RaftStatus {
    const status: RaftStatus = {
      id: this.id,
      hardState: this.hardState(),
      softState: this.softState(),
      applied: this.log.applied,
      confState: this.tracker.confState(),
      leadTransferee: this.leadTransferee,
    };
    if (this.role === 'leader') {
      status.progress = {};
      for (const [id, pr] of this.tracker.progress) status.progress[id] = pr.status();
    }
    return status;
  }
}

function hardStateEqual(a: HardState, b: HardState): boolean {
  return a.term === b.term && a.vote === b.vote && a.commit === b.commit;
}

function validateConfig(config: RaftConfig): void {
  const positive = (field: keyof RaftConfig, value: number) => {
    if (!Number.isInteger(value) || value <= 0) {
      throw new ValidationError(
        `raft.${field}`,
        `raft config: ${field} must be a positive integer, got ${value}`,
      );
    }
  };
  if (config.id.length === 0) throw new ValidationError('raft.id', 'raft config: id must not be empty');
  positive('electionTicks', config.electionTicks);
  positive('heartbeatTicks', config.heartbeatTicks);
  positive('maxInflightMsgs', config.maxInflightMsgs);
  positive('maxSizePerMsg', config.maxSizePerMsg);
  positive('snapshotChunkBytes', config.snapshotChunkBytes);
  if (config.heartbeatTicks >= config.electionTicks) {
    throw new ValidationError(
      'raft.heartbeatTicks',
      `raft config: heartbeatTicks (${config.heartbeatTicks}) must be less than electionTicks (${config.electionTicks})`,
    );
  }
}
