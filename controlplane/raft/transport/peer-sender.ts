import type { ClientWritableStream } from '@grpc/grpc-js';
import type {
  RaftServiceClient,
  RaftServiceStreamRequest,
  RaftServiceStreamResponse,
  RaftMessage as WireMessage,
} from '../../../src/api/gen/meshd/v1/raft.js';
import { errorMessage } from '../../../src/common/errors.js';
import { subsystemLogger } from '../../../src/common/logger.js';
import type { NodeId, RaftMessage } from '../core/types.js';
import { toWire } from './wire.js';

/**
 * The send side for one peer: a bounded queue drained into one ordered
 * client stream, batched (everything queued while a write is in flight goes
 * in one request). Overflow is dropped, never queued without bound; a
 * failed stream is reported as unreachable.
 */
export interface PeerSenderOwner {
  opts: { maxQueuedMessages: number; maxQueuedBytes: number; reconnectBackoffMs: number };
  handler: {
    onUnreachable(peer: NodeId): void;
    onSnapshotStatus(peer: NodeId, ok: boolean): void;
  };
}

const MAX_BATCH_MESSAGES = 512;
const MAX_BATCH_BYTES = 4 * 1024 * 1024;
const log = subsystemLogger('raft-transport');

/** A rough size for queue accounting: payload bytes plus a fixed overhead. */
function approxBytes(m: RaftMessage): number {
  switch (m.type) {
    case 'append':
    case 'propose': {
      let n = 64;
      for (const e of m.entries) n += e.data.byteLength + 24;
      return n;
    }
    case 'snapshot':
      return 128 + m.data.byteLength;
    default:
      return 64;
  }
}

interface Queued {
  wire: WireMessage;
  bytes: number;
  snapshotDone: boolean;
}

export class PeerSender {
  private queue: Queued[] = [];
  private queuedBytes = 0;
  private call: ClientWritableStream<RaftServiceStreamRequest> | undefined;
  private waitingDrain = false;
  private pumpScheduled = false;
  private failedUntilMs = 0;
  private snapshotInFlight = false;
  private dropped = 0;
  private closed = false;

  constructor(
    readonly id: NodeId,
    private readonly client: RaftServiceClient,
    private readonly owner: PeerSenderOwner,
  ) {}

  send(m: RaftMessage): void {
    if (this.closed) return;
    const bytes = approxBytes(m);
    const now = Date.now();
    // Snapshot chunks are views into the one snapshot already held in memory,
    // so they bypass the queue caps: a cap here would be a snapshot size cap
    // (swarmkit#2374). The core sends at most one snapshot per peer at a time.
    const isChunk = m.type === 'snapshot';
    const full =
      !isChunk &&
      (this.queue.length >= this.owner.opts.maxQueuedMessages ||
        this.queuedBytes + bytes > this.owner.opts.maxQueuedBytes);
    if (now < this.failedUntilMs || full) {
      this.drop(m);
      return;
    }
    if (isChunk) this.snapshotInFlight = true;
    this.queue.push({ wire: toWire(m), bytes, snapshotDone: isChunk && m.done });
    this.queuedBytes += bytes;
    this.schedulePump();
  }

  private drop(m: RaftMessage): void {
    this.dropped += 1;
    if (this.dropped % 1000 === 1)
      log.debug(
        { peer: this.id, dropped: this.dropped },
        'dropping raft messages to slow or unreachable peer',
      );
    if (m.type === 'snapshot' && this.snapshotInFlight) {
      this.snapshotInFlight = false;
      this.owner.handler.onSnapshotStatus(this.id, false);
    }
  }

  private openCall(): ClientWritableStream<RaftServiceStreamRequest> {
    const call = this.client.stream((err: Error | null, _res?: RaftServiceStreamResponse) => {
      if (this.call === call) this.call = undefined;
      if (err !== null && !this.closed) this.fail(errorMessage(err));
    });
    return call;
  }

  private fail(reason: string): void {
    log.debug({ peer: this.id, reason }, 'raft stream to peer failed');
    this.failedUntilMs = Date.now() + this.owner.opts.reconnectBackoffMs;
    this.queue = [];
    this.queuedBytes = 0;
    this.waitingDrain = false;
    if (this.snapshotInFlight) {
      this.snapshotInFlight = false;
      this.owner.handler.onSnapshotStatus(this.id, false);
    }
    this.owner.handler.onUnreachable(this.id);
  }

  private schedulePump(): void {
    if (this.pumpScheduled) return;
    this.pumpScheduled = true;
    queueMicrotask(() => {
      this.pumpScheduled = false;
      this.pump();
    });
  }

  private pump(): void {
    while (!this.waitingDrain && !this.closed && this.queue.length > 0) {
      if (this.call === undefined) this.call = this.openCall();
      const call = this.call;
      const messages: WireMessage[] = [];
      let bytes = 0;
      let snapshotDone = false;
      while (this.queue.length > 0 && messages.length < MAX_BATCH_MESSAGES && bytes < MAX_BATCH_BYTES) {
        const q = this.queue.shift()!;
        messages.push(q.wire);
        bytes += q.bytes;
        snapshotDone ||= q.snapshotDone;
      }
      this.queuedBytes -= bytes;
      const flushed = call.write({ messages }, () => {
        if (snapshotDone && this.snapshotInFlight) {
          this.snapshotInFlight = false;
          this.owner.handler.onSnapshotStatus(this.id, true);
        }
      });
      // The stream's buffer is full (a slow or stopped peer): wait for
      // 'drain'; meanwhile messages pile up in the bounded queue and the
      // overflow is dropped.
      if (!flushed) {
        this.waitingDrain = true;
        call.once('drain', () => {
          this.waitingDrain = false;
          this.pump();
        });
      }
    }
  }

  stats(): { queued: number; dropped: number } {
    return { queued: this.queue.length, dropped: this.dropped };
  }

  close(): void {
    this.closed = true;
    this.queue = [];
    this.call?.end();
    this.call = undefined;
    this.client.close();
  }
}
