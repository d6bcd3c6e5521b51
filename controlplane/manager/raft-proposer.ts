import type { StoreTransaction } from '../../src/api/gen/meshd/v1/objects.js';
import { MeshError } from '../../src/common/errors.js';
import type { RaftNode } from '../raft/driver/raft-node.js';
import type { Proposer } from '../store/proposer.js';
import { encodeTransaction } from '../store/transaction.js';
import type { StoreStateMachine } from './store-state-machine.js';

/**
 * The store's Proposer over Raft: replicate the transaction's bytes and
 * settle once it is committed and applied on this manager. A follower's
 * proposal is forwarded to the leader by the Raft driver. The store's own
 * rejection (version conflict, duplicate name, limits) comes back as the
 * store's MeshError, as with InMemoryProposer.
 */
export class RaftProposer implements Proposer {
  constructor(
    private readonly raft: RaftNode,
    private readonly stateMachine: StoreStateMachine,
    private readonly maxTransactionBytes: number,
  ) {}

  async propose(tx: StoreTransaction): Promise<void> {
    await this.proposeIndexed(tx);
  }

  /** The same, resolving with the Raft index the transaction was applied at. */
  async proposeIndexed(tx: StoreTransaction): Promise<number> {
    const bytes = encodeTransaction(tx);
    // Refuse before replicating: an oversized entry would be refused by every
    // replica anyway, after costing a disk write on each.
    if (bytes.byteLength > this.maxTransactionBytes) {
      throw new MeshError(
        'TRANSACTION_TOO_LARGE',
        `store transaction is ${bytes.byteLength} bytes; the limit is ${this.maxTransactionBytes}`,
      );
    }
    const { index } = await this.raft.propose(bytes);
    const outcome = this.stateMachine.takeOutcome(index);
    if (outcome !== undefined) throw outcome;
    return index;
  }
}
