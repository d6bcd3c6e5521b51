import { StoreSnapshot } from '../../src/api/gen/meshd/v1/objects.js';
import { MeshError } from '../../src/common/errors.js';
import type { ConfChange, NodeId } from '../raft/core/types.js';
import type { StateMachine } from '../raft/driver/raft-node.js';
import type { MemoryStore } from '../store/memory-store.js';
import { decodeTransaction } from '../store/transaction.js';

/** Snapshot envelope: magic, then u32 store-snapshot length, the StoreSnapshot bytes, then members as JSON. */
const SNAPSHOT_MAGIC = Buffer.from('MGR1');

/** Outcomes kept for proposers to collect; older ones are dropped (their proposer timed out). */
const MAX_OUTCOMES = 4096;

/**
 * The MemoryStore as Raft's state machine. A transaction the store rejects
 * is rejected identically on every replica (the store is deterministic), so
 * the rejection is an outcome, not a failure: it is kept by Raft index for
 * the local proposer (`takeOutcome`) and the log moves on. Throwing here
 * would stop the Raft node.
 */
export class StoreStateMachine implements StateMachine {
  private readonly outcomes = new Map<number, MeshError | undefined>();
  /**
   * Raft members' addresses as replicated by conf changes (their context is
   * the new member's address). Kept in the snapshot, so a manager that
   * restarts after log compaction still knows where its peers are.
   */
  readonly members = new Map<NodeId, string>();

  constructor(readonly store: MemoryStore) {}

  apply(index: number, payload: Uint8Array): void {
    let outcome: MeshError | undefined;
    try {
      this.store.apply(decodeTransaction(payload));
    } catch (err) {
      outcome =
        err instanceof MeshError
          ? err
          : new MeshError(
              'STORE_REJECTED',
              `store transaction at raft index ${index} was refused: ${String(err)}`,
            );
    }
    this.outcomes.set(index, outcome);
    if (this.outcomes.size > MAX_OUTCOMES) {
      const oldest = this.outcomes.keys().next().value;
      if (oldest !== undefined) this.outcomes.delete(oldest);
    }
  }

  /** The store's verdict on the entry at `index`: undefined when it applied. */
  takeOutcome(index: number): MeshError | undefined {
    const outcome = this.outcomes.get(index);
    this.outcomes.delete(index);
    return outcome;
  }

  onConfChange(change: ConfChange): void {
    if (change.type === 'removeNode') this.members.delete(change.nodeId);
    else if (change.context !== undefined && change.context.byteLength > 0)
      this.members.set(change.nodeId, Buffer.from(change.context).toString('utf8'));
  }

  snapshot(): Uint8Array {
    const store = StoreSnapshot.encode(this.store.snapshot()).finish();
    const members = Buffer.from(JSON.stringify([...this.members].sort()), 'utf8');
    const length = Buffer.alloc(4);
    length.writeUInt32BE(store.byteLength);
    return Buffer.concat([SNAPSHOT_MAGIC, length, store, members]);
  }

  restore(data: Uint8Array): void {
    this.members.clear();
    if (data.byteLength === 0) {
      this.store.restore(StoreSnapshot.fromPartial({}));
      return;
    }
    const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    // Plain StoreSnapshot bytes (no envelope) are accepted too.
    if (buf.byteLength < 8 || !buf.subarray(0, 4).equals(SNAPSHOT_MAGIC)) {
      this.store.restore(StoreSnapshot.decode(data));
      return;
    }
    const storeLength = buf.readUInt32BE(4);
    this.store.restore(StoreSnapshot.decode(buf.subarray(8, 8 + storeLength)));
    const members = JSON.parse(buf.subarray(8 + storeLength).toString('utf8')) as [string, string][];
    for (const [id, address] of members) this.members.set(id, address);
  }
}
