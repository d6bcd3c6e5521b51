import type { StoreTransaction } from '../../src/api/gen/meshd/v1/objects.js';
import type { MemoryStore } from './memory-store.js';
import { decodeTransaction, encodeTransaction } from './transaction.js';

/**
 * How control-plane components change the store: propose a transaction; the
 * promise settles once it is committed and applied (or rejected by the
 * store's validation, with the store's MeshError). The Raft driver implements
 * this by replicating `encodeTransaction(tx)` and applying it on commit.
 */
export interface Proposer {
  propose(tx: StoreTransaction): Promise<void>;
}

/**
 * A single-replica Proposer for tests and simulations: commits at once.
 * Transactions still round-trip through their byte encoding, so anything
 * that would not survive Raft replication fails here too.
 */
export class InMemoryProposer implements Proposer {
  constructor(private readonly store: MemoryStore) {}

  async propose(tx: StoreTransaction): Promise<void> {
    this.proposeSync(tx);
  }

  /** The same, synchronously: for deterministic simulation loops. */
  proposeSync(tx: StoreTransaction): number {
    return this.store.apply(decodeTransaction(encodeTransaction(tx)));
  }
}
