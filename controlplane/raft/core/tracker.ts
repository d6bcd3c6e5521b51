import { Progress } from './progress.js';
import { majorityCommittedIndex, type VoteResult, voteResult } from './quorum.js';
import type { ConfChange, ConfState, NodeId } from './types.js';

/** Membership plus the leader's per-member progress and the current election's votes. */
export class ProgressTracker {
  voters = new Set<NodeId>();
  learners = new Set<NodeId>();
  progress = new Map<NodeId, Progress>();
  votes = new Map<NodeId, boolean>();

  constructor(
    private readonly maxInflightMsgs: number,
    private readonly maxInflightBytes: number,
  ) {}

  setConfState(confState: ConfState, nextIndex: number): void {
    this.voters = new Set(confState.voters);
    this.learners = new Set(confState.learners.filter((id) => !this.voters.has(id)));
    this.progress = new Map();
    for (const id of this.voters) this.progress.set(id, this.newProgress(nextIndex, false));
    for (const id of this.learners) this.progress.set(id, this.newProgress(nextIndex, true));
  }

  confState(): ConfState {
    return { voters: [...this.voters].sort(), learners: [...this.learners].sort() };
  }

  private newProgress(next: number, isLearner: boolean): Progress {
    return new Progress(next, this.maxInflightMsgs, this.maxInflightBytes, isLearner);
  }

  /** Applies a single-server change; a new member starts probing at `nextIndex`. */
  applyConfChange(change: ConfChange, nextIndex: number): void {
    const id = change.nodeId;
    switch (change.type) {
      case 'addVoter': {
        this.learners.delete(id);
        this.voters.add(id);
        const pr = this.progress.get(id);
        if (pr === undefined) this.progress.set(id, this.newProgress(nextIndex, false));
        else pr.isLearner = false;
        break;
      }
      case 'addLearner': {
        // Demoting a voter to learner is not a single-server change we support.
        if (this.voters.has(id)) return;
        this.learners.add(id);
        if (!this.progress.has(id)) this.progress.set(id, this.newProgress(nextIndex, true));
        break;
      }
      case 'removeNode':
        this.voters.delete(id);
        this.learners.delete(id);
        this.progress.delete(id);
        this.votes.delete(id);
        break;
    }
  }

  /** The voters' configuration after `change`, without applying it. */
  votersAfter(change: ConfChange): Set<NodeId> {
    const voters = new Set(this.voters);
    if (change.type === 'addVoter') voters.add(change.nodeId);
    if (change.type === 'removeNode') voters.delete(change.nodeId);
    return voters;
  }

  committed(): number {
    return majorityCommittedIndex(this.voters, (id) => this.progress.get(id)?.match ?? 0);
  }

  isSingleton(): boolean {
    return this.voters.size === 1;
  }

  resetVotes(): void {
    this.votes = new Map();
  }

  recordVote(id: NodeId, granted: boolean): void {
    if (!this.votes.has(id)) this.votes.set(id, granted);
  }

  tallyVotes(): VoteResult {
    return voteResult(this.voters, this.votes);
  }

  /** §6.2 check-quorum: a majority of voters was heard from recently. */
  quorumActive(self: NodeId): boolean {
    const active = new Map<NodeId, boolean>();
    for (const id of this.voters)
      active.set(id, id === self || (this.progress.get(id)?.recentActive ?? false));
    return voteResult(this.voters, active) === 'won';
  }
}
