import { applyConfChangeEntry } from './membership.js';
import { entrySizeBytes } from './memory-storage.js';
import type { Raft } from './raft.js';
import { leaderCommitted } from './roles.js';
import type { Entry, HardState, Ready, SoftState } from './types.js';

/**
 * The Ready/advance handshake: what the caller has already seen (to report
 * only changes) and what the last Ready handed out (acknowledged by advance).
 */
export class ReadyTracker {
  private prevHardState: HardState;
  private prevSoftState: SoftState;
  private readyApplyingTo = 0;
  private readyUnstable: { index: number; term: number } | undefined;
  private readySnapshotIndex: number | undefined;
  private readyConfEntries: Entry[] = [];

  constructor(hardState: HardState, softState: SoftState) {
    this.prevHardState = hardState;
    this.prevSoftState = softState;
  }

  hasReady(r: Raft): boolean {
    const ss = r.softState();
    if (ss.lead !== this.prevSoftState.lead || ss.role !== this.prevSoftState.role) return true;
    if (!hardStateEqual(r.hardState(), this.prevHardState)) return true;
    if (r.log.unstable.snapshot !== undefined || r.log.unstable.entries.length > 0) return true;
    return r.messages.length > 0 || r.readStates.length > 0 || r.log.hasNextCommittedEntries();
  }

  ready(r: Raft): Ready {
    const entries = r.log.unstable.entries.slice();
    const snapshot = r.log.unstable.snapshot;
    const committedEntries = r.log.nextCommittedEntries(r.config.maxCommittedSizePerReady);
    const hs = r.hardState();
    const ss = r.softState();
    const rd: Ready = {
      entries,
      committedEntries,
      messages: r.messages,
      readStates: r.readStates,
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
    r.messages = [];
    r.readStates = [];
    // A caller that calls ready() twice before advance() acknowledges both at once:
    // keep the latest unstable tail and snapshot, and every conf change handed out.
    const lastEntry = entries[entries.length - 1];
    if (lastEntry !== undefined) this.readyUnstable = { index: lastEntry.index, term: lastEntry.term };
    if (snapshot !== undefined) this.readySnapshotIndex = snapshot.metadata.index;
    const lastCommitted = committedEntries[committedEntries.length - 1];
    if (lastCommitted !== undefined) {
      r.log.applying = lastCommitted.index;
      this.readyApplyingTo = lastCommitted.index;
      if (r.role === 'leader') {
        let size = 0;
        for (const e of committedEntries) if (e.data.byteLength > 0) size += entrySizeBytes(e);
        r.uncommittedSize = Math.max(0, r.uncommittedSize - size);
      }
    }
    for (const e of committedEntries) if (e.type === 'confChange') this.readyConfEntries.push(e);
    return rd;
  }

  advance(r: Raft): void {
    if (this.readySnapshotIndex !== undefined) {
      r.log.unstable.stableSnapTo(this.readySnapshotIndex);
      r.log.appliedTo(this.readySnapshotIndex);
      this.readySnapshotIndex = undefined;
    }
    if (this.readyUnstable !== undefined) {
      const { index, term } = this.readyUnstable;
      r.log.unstable.stableTo(index, term);
      this.readyUnstable = undefined;
      // §10.2.1: the leader's own write is durable now, so its replica finally counts.
      if (r.config.asyncLeaderAppend && r.role === 'leader' && r.log.term(index) === term) {
        if (r.tracker.progress.get(r.id)?.maybeUpdate(index) && r.maybeCommit()) leaderCommitted(r);
      }
    }
    if (this.readyApplyingTo > 0) {
      r.log.appliedTo(this.readyApplyingTo);
      this.readyApplyingTo = 0;
    }
    for (const e of this.readyConfEntries) applyConfChangeEntry(r, e);
    this.readyConfEntries = [];
  }
}

export function hardStateEqual(a: HardState, b: HardState): boolean {
  return a.term === b.term && a.vote === b.vote && a.commit === b.commit;
}
