import { assert } from '../../../src/common/errors.js';
import { limitEntriesSize } from './memory-storage.js';
import type { Entry, Snapshot, Storage } from './types.js';
import { Unstable } from './unstable.js';

/**
 * The Raft log as the core sees it: durable entries in Storage followed by
 * unstable ones. `committed` never decreases; `applying` ≥ `applied` marks
 * entries handed out in a Ready but not yet acknowledged by advance().
 */
export class RaftLog {
  readonly storage: Storage;
  readonly unstable: Unstable;
  committed: number;
  applied: number;
  applying: number;

  constructor(storage: Storage) {
    this.storage = storage;
    const first = storage.firstIndex();
    this.unstable = new Unstable(storage.lastIndex() + 1);
    this.committed = first - 1;
    this.applied = first - 1;
    this.applying = first - 1;
  }

  firstIndex(): number {
    return this.unstable.maybeFirstIndex() ?? this.storage.firstIndex();
  }

  lastIndex(): number {
    return this.unstable.maybeLastIndex() ?? this.storage.lastIndex();
  }

  /** Term of entry `index`, or undefined when it is compacted or beyond the log. */
  term(index: number): number | undefined {
    const dummy = this.firstIndex() - 1;
    if (index < dummy || index > this.lastIndex()) return undefined;
    const unstableTerm = this.unstable.maybeTerm(index);
    if (unstableTerm !== undefined) return unstableTerm;
    try {
      return this.storage.term(index);
    } catch {
      return undefined;
    }
  }

  termOrZero(index: number): number {
    return this.term(index) ?? 0;
  }

  lastTerm(): number {
    return this.termOrZero(this.lastIndex());
  }

  matchTerm(index: number, term: number): boolean {
    const t = this.term(index);
    return t !== undefined && t === term;
  }

  /** §5.4.1: a candidate's log is at least as up to date as ours. */
  isUpToDate(lastIndex: number, lastTerm: number): boolean {
    const ourTerm = this.lastTerm();
    return lastTerm > ourTerm || (lastTerm === ourTerm && lastIndex >= this.lastIndex());
  }

  /**
   * §5.3 consistency check: appends `entries` after (prevIndex, prevTerm) when
   * that entry matches, truncating only a conflicting suffix. Returns the last
   * new index, or undefined on mismatch.
   */
  maybeAppend(prevIndex: number, prevTerm: number, committed: number, entries: Entry[]): number | undefined {
    if (!this.matchTerm(prevIndex, prevTerm)) return undefined;
    const lastNewIndex = prevIndex + entries.length;
    const conflict = this.findConflict(entries);
    if (conflict !== 0) {
      assert(
        conflict > this.committed,
        `raft log: entry ${conflict} conflicts with committed ${this.committed}`,
      );
      this.append(entries.slice(conflict - (prevIndex + 1)));
    }
    this.commitTo(Math.min(committed, lastNewIndex));
    return lastNewIndex;
  }

  /** Index of the first entry whose term differs from ours (or is new), 0 when all match. */
  findConflict(entries: Entry[]): number {
    for (const e of entries) if (!this.matchTerm(e.index, e.term)) return e.index;
    return 0;
  }

  /**
   * Fast back-tracking: the largest index ≤ `index` whose term is ≤ `term`,
   * with its term. Entries above it cannot match a log whose entry at `index`
   * has `term`.
   */
  findConflictByTerm(index: number, term: number): { index: number; term: number } {
    for (let i = Math.min(index, this.lastIndex()); i > 0; i--) {
      const t = this.term(i);
      if (t === undefined) return { index: i, term: 0 };
      if (t <= term) return { index: i, term: t };
    }
    return { index: 0, term: 0 };
  }

  append(entries: Entry[]): number {
    const first = entries[0];
    if (first === undefined) return this.lastIndex();
    assert(
      first.index - 1 >= this.committed,
      `raft log: append after ${first.index - 1} is below commit ${this.committed}`,
    );
    this.unstable.truncateAndAppend(entries);
    return this.lastIndex();
  }

  commitTo(index: number): void {
    if (index <= this.committed) return;
    assert(index <= this.lastIndex(), `raft log: commit ${index} is beyond last index ${this.lastIndex()}`);
    this.committed = index;
  }

  /** §5.4.2 (Figure 8): only an entry of the current term is committed by counting replicas. */
  maybeCommit(index: number, term: number): boolean {
    if (index > this.committed && this.termOrZero(index) === term) {
      this.commitTo(index);
      return true;
    }
    return false;
  }

  appliedTo(index: number): void {
    if (index <= this.applied) return;
    assert(index <= this.committed, `raft log: applied ${index} is beyond commit ${this.committed}`);
    this.applied = index;
    if (this.applying < index) this.applying = index;
  }

  hasNextCommittedEntries(): boolean {
    if (this.unstable.snapshot !== undefined) return false;
    return this.committed > Math.max(this.applying, this.firstIndex() - 1);
  }

  nextCommittedEntries(maxBytes: number): Entry[] {
    if (!this.hasNextCommittedEntries()) return [];
    const lo = Math.max(this.applying, this.firstIndex() - 1) + 1;
    return this.slice(lo, this.committed + 1, maxBytes);
  }

  /** Entries from `index` to the end, at most maxBytes (at least one). Throws when compacted. */
  entriesFrom(index: number, maxBytes: number): Entry[] {
    if (index > this.lastIndex()) return [];
    return this.slice(index, this.lastIndex() + 1, maxBytes);
  }

  /** Entries in [lo, hi). Throws LogCompactedError when lo is compacted. */
  slice(lo: number, hi: number, maxBytes: number): Entry[] {
    if (lo >= hi) return [];
    let out: Entry[] = [];
    const offset = this.unstable.offset;
    if (lo < offset) {
      const stored = this.storage.entries(lo, Math.min(hi, offset), maxBytes);
      if (stored.length < Math.min(hi, offset) - lo) return stored;
      out = stored;
    }
    if (hi > offset) out = out.concat(this.unstable.slice(Math.max(lo, offset), hi));
    return limitEntriesSize(out, maxBytes);
  }

  snapshot(): Snapshot {
    return this.unstable.snapshot ?? this.storage.snapshot();
  }

  restore(snapshot: Snapshot): void {
    this.committed = snapshot.metadata.index;
    this.unstable.restore(snapshot);
  }
}
