import type { Rng } from '../../../src/common/rng.js';
import { MemoryStorage } from '../core/memory-storage.js';
import { Raft } from '../core/raft.js';
import type {
  ConfState,
  Entry,
  HardState,
  RaftConfig,
  RaftMessage,
  ReadState,
  Ready,
} from '../core/types.js';
import { decodeKvCommand, KvStateMachine } from './kv.js';

/** What a node reports while handling one Ready. */
export interface ReadyHooks {
  /** New entries written to the log, with the term of the entry before the first one. */
  onAppend(node: SimNode, entries: Entry[]): void;
  onApply(node: SimNode, entry: Entry): void;
  onReadState(node: SimNode, readState: ReadState): void;
}

/**
 * One simulated manager: a durable MemoryStorage (what survives a crash), a
 * Raft core and the KV state machine (volatile). Writes that did not need a
 * sync (a commit-index-only hard state) stay in `lazyHardState` and are lost
 * on a crash; a torn crash keeps only a prefix of one Ready's entries.
 */
export class SimNode {
  readonly id: string;
  readonly storage: MemoryStorage;
  raft: Raft | undefined;
  sm = new KvStateMachine();
  incarnation = 0;
  /** Crash at the next Ready that writes entries, keeping a random prefix of them. */
  tornCrashPending = false;
  private lazyHardState: HardState | undefined;
  /** The Ready whose write is in progress, if any. */
  private writing: { rd: Ready; doneAt: number; sentEarly: boolean } | undefined;
  private readonly snapshotEvery: number;
  private appliedSinceSnapshot = 0;

  constructor(id: string, confState: ConfState, snapshotEvery: number) {
    this.id = id;
    this.storage = new MemoryStorage(confState);
    this.snapshotEvery = snapshotEvery;
  }

  get alive(): boolean {
    return this.raft !== undefined;
  }

  start(config: RaftConfig, rng: Rng): void {
    this.raft = new Raft({ ...config, applied: 0 }, this.storage, rng);
    this.sm = KvStateMachine.restore(this.storage.snapshot().data);
    this.incarnation++;
    this.tornCrashPending = false;
    this.appliedSinceSnapshot = 0;
  }

  crash(): void {
    this.raft = undefined;
    this.lazyHardState = undefined;
    this.writing = undefined;
  }

  /**
   * Handles pending Readies; returns the messages to send. A Ready's write takes
   * `diskLatencyMs` of virtual time, during which the core keeps stepping
   * messages (as the driver does while it awaits fdatasync); ready() and
   * advance() strictly alternate.
   */
  handleReadies(now: number, diskLatencyMs: number, rng: Rng, hooks: ReadyHooks): RaftMessage[] {
    const out: RaftMessage[] = [];
    for (let guard = 0; guard < 50 && this.raft !== undefined; guard++) {
      const raft: Raft = this.raft;
      if (this.writing !== undefined) {
        if (now < this.writing.doneAt) break;
        const { rd, sentEarly } = this.writing;
        this.writing = undefined;
        if (!this.completeWrite(raft, rd, sentEarly, rng, hooks, out)) break;
        continue;
      }
      if (!raft.hasReady()) break;
      const rd = raft.ready();
      if (rd.entries.length > 0) hooks.onAppend(this, rd.entries);
      // Thesis §10.2.1: with asyncLeaderAppend the appends leave before the write completes.
      const sentEarly = raft.config.asyncLeaderAppend === true;
      if (sentEarly) out.push(...rd.messages.filter((m) => m.type === 'append'));
      this.writing = { rd, doneAt: now + diskLatencyMs, sentEarly };
    }
    return out;
  }

  /** Finishes one Ready's write; returns false when the node crashed during it (torn write). */
  private completeWrite(
    raft: Raft,
    rd: Ready,
    sentEarly: boolean,
    rng: Rng,
    hooks: ReadyHooks,
    out: RaftMessage[],
  ): boolean {
    if (this.tornCrashPending && rd.entries.length > 0) {
      // A torn write: the WAL's recovery keeps the records that were complete.
      this.storage.append(rd.entries.slice(0, rng.int(rd.entries.length + 1)));
      this.crash();
      return false;
    }
    if (rd.snapshot !== undefined) {
      this.storage.applySnapshot(rd.snapshot);
      this.sm = KvStateMachine.restore(rd.snapshot.data);
    }
    this.storage.append(rd.entries);
    if (rd.mustSync) {
      // An fsync makes every earlier write durable too.
      const hs = rd.hardState ?? this.lazyHardState;
      if (hs !== undefined) this.storage.setHardState(hs);
      this.lazyHardState = undefined;
    } else if (rd.hardState !== undefined) {
      this.lazyHardState = rd.hardState;
    }
    out.push(...(sentEarly ? rd.messages.filter((m) => m.type !== 'append') : rd.messages));
    for (const e of rd.committedEntries) {
      hooks.onApply(this, e);
      const command = e.type === 'normal' ? decodeKvCommand(e.data) : undefined;
      if (command !== undefined) this.sm.apply(command);
    }
    raft.advance();
    for (const rs of rd.readStates) hooks.onReadState(this, rs);
    this.appliedSinceSnapshot += rd.committedEntries.length;
    if (this.appliedSinceSnapshot >= this.snapshotEvery) this.takeSnapshot(raft);
    return true;
  }

  /** Snapshots the state machine at the applied index and compacts, keeping a short tail. */
  private takeSnapshot(raft: Raft): void {
    this.appliedSinceSnapshot = 0;
    const applied = raft.log.applied;
    if (applied <= this.storage.snapshot().metadata.index || applied > this.storage.lastIndex()) return;
    this.storage.createSnapshot(applied, raft.tracker.confState(), this.sm.snapshot());
    const keep = 5;
    if (applied - keep >= this.storage.firstIndex()) this.storage.compact(applied - keep);
  }

  /** Now and then flushes the lazy hard state (a background fsync, about every 100 ms). */
  maybeFlush(rng: Rng): void {
    if (this.lazyHardState !== undefined && rng.next() < 0.01) {
      this.storage.setHardState(this.lazyHardState);
      this.lazyHardState = undefined;
    }
  }
}
