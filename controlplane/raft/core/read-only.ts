import type { NodeId } from './types.js';

export interface ReadIndexRequest {
  /** The commit index when the request arrived: the read is safe once applied ≥ index. */
  index: number;
  from: NodeId;
  context: Uint8Array;
  acks: Set<NodeId>;
}

export function contextKey(context: Uint8Array): string {
  return Buffer.from(context).toString('hex');
}

/**
 * §6.4 ReadIndex requests waiting for a quorum of heartbeat acks. Requests
 * complete in arrival order: an ack for a later request confirms every
 * earlier one too (leadership was confirmed after they all arrived).
 */
export class ReadOnlyQueue {
  private readonly pending = new Map<string, ReadIndexRequest>();
  private queue: string[] = [];

  get size(): number {
    return this.queue.length;
  }

  addRequest(index: number, from: NodeId, context: Uint8Array): void {
    const key = contextKey(context);
    if (this.pending.has(key)) return;
    this.pending.set(key, { index, from, context, acks: new Set() });
    this.queue.push(key);
  }

  /** Records an ack; returns the acks so far, or undefined for an unknown context. */
  recvAck(from: NodeId, context: Uint8Array): Set<NodeId> | undefined {
    const request = this.pending.get(contextKey(context));
    if (request === undefined) return undefined;
    request.acks.add(from);
    return request.acks;
  }

  /** Completes the request with `context` and every request queued before it. */
  advance(context: Uint8Array): ReadIndexRequest[] {
    const key = contextKey(context);
    const at = this.queue.indexOf(key);
    if (at < 0) return [];
    const done = this.queue.slice(0, at + 1);
    this.queue = this.queue.slice(at + 1);
    const out: ReadIndexRequest[] = [];
    for (const k of done) {
      const r = this.pending.get(k);
      this.pending.delete(k);
      if (r !== undefined) out.push(r);
    }
    return out;
  }

  lastPendingContext(): Uint8Array {
    const key = this.queue[this.queue.length - 1];
    return key === undefined ? new Uint8Array() : (this.pending.get(key)?.context ?? new Uint8Array());
  }
}
