import type { Rng } from '../../../src/common/rng.js';
import type { NodeId, RaftMessage } from '../core/types.js';

/** Messages in one delivery: a single message, or a whole snapshot stream (chunks stay in order). */
export interface Envelope {
  deliverAt: number;
  seq: number;
  from: NodeId;
  to: NodeId;
  messages: RaftMessage[];
  isSnapshotStream: boolean;
}

export interface NetworkFaults {
  dropProbability: number;
  duplicateProbability: number;
  minDelay: number;
  maxDelay: number;
}

/**
 * A lossy network in virtual time: random delays (which reorder), drops,
 * duplicates and partitions. A snapshot stream travels as one envelope, the
 * way a gRPC stream delivers its chunks in order or fails as a whole.
 */
export class SimNetwork {
  private queue: Envelope[] = [];
  private seq = 0;
  /** Directed links that are cut: "a->b". */
  readonly cut = new Set<string>();
  faults: NetworkFaults;

  constructor(
    private readonly rng: Rng,
    faults: NetworkFaults,
  ) {
    this.faults = faults;
  }

  get size(): number {
    return this.queue.length;
  }

  isCut(from: NodeId, to: NodeId): boolean {
    return this.cut.has(`${from}->${to}`);
  }

  /** Queues a node's outgoing messages; returns envelopes dropped at once (for reporting). */
  send(now: number, messages: RaftMessage[]): Envelope[] {
    const dropped: Envelope[] = [];
    let i = 0;
    while (i < messages.length) {
      const m = messages[i]!;
      const batch = [m];
      i++;
      if (m.type === 'snapshot') {
        while (
          i < messages.length &&
          messages[i]!.type === 'snapshot' &&
          messages[i]!.to === m.to &&
          !batchDone(batch)
        ) {
          batch.push(messages[i]!);
          i++;
        }
      }
      const envelope: Envelope = {
        deliverAt: now + this.rng.intBetween(this.faults.minDelay, this.faults.maxDelay),
        seq: this.seq++,
        from: m.from,
        to: m.to,
        messages: batch,
        isSnapshotStream: m.type === 'snapshot',
      };
      if (this.rng.next() < this.faults.dropProbability) {
        dropped.push(envelope);
        continue;
      }
      this.queue.push(envelope);
      if (!envelope.isSnapshotStream && this.rng.next() < this.faults.duplicateProbability) {
        this.queue.push({
          ...envelope,
          seq: this.seq++,
          deliverAt: envelope.deliverAt + this.rng.intBetween(1, 20),
        });
      }
    }
    return dropped;
  }

  /** Removes and returns the envelopes due at `now`, in (time, seq) order. */
  due(now: number): Envelope[] {
    const ready: Envelope[] = [];
    const rest: Envelope[] = [];
    for (const e of this.queue) (e.deliverAt <= now ? ready : rest).push(e);
    this.queue = rest;
    return ready.sort((a, b) => a.deliverAt - b.deliverAt || a.seq - b.seq);
  }

  partition(groups: NodeId[][]): void {
    this.cut.clear();
    for (const a of groups) {
      for (const b of groups) {
        if (a === b) continue;
        for (const x of a) for (const y of b) this.cut.add(`${x}->${y}`);
      }
    }
  }

  heal(): void {
    this.cut.clear();
  }
}

function batchDone(batch: RaftMessage[]): boolean {
  const last = batch[batch.length - 1];
  return last !== undefined && last.type === 'snapshot' && last.done;
}
