import { StoreSnapshot } from '../../src/api/gen/meshd/v1/objects.js';
import { MeshError } from '../../src/common/errors.js';
import type { StateMachine } from '../raft/driver/raft-node.js';
import type { MemoryStore } from '../store/memory-store.js';
import { decodeTransaction } from '../store/transaction.js';

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

  snapshot(): Uint8Array {
    return StoreSnapshot.encode(this.store.snapshot()).finish();
  }

  restore(data: Uint8Array): void {
    this.store.restore(data.byteLength === 0 ? StoreSnapshot.fromPartial({}) : StoreSnapshot.decode(data));
  }
}
