import { NodeState } from '../../src/api/gen/meshd/v1/objects.js';
import { TransactionBuilder } from '../store/transaction.js';
import type { StoreView } from '../store/types.js';
import { sortById } from './context.js';

/**
 * What a new leader proposes first: it has heard from no agent yet, so every
 * node that is not already DOWN becomes UNKNOWN as of now. Their tasks stay
 * for `unknown_grace_ms` (nodes that report in return to READY meanwhile);
 * only the silent ones have their tasks replaced, not the whole cluster.
 */
export function planLeadershipChange(view: StoreView, nowMs: number): TransactionBuilder | undefined {
  const tx = new TransactionBuilder(nowMs);
  for (const n of sortById(view.list('node'))) {
    if (n.state === NodeState.NODE_STATE_DOWN || n.state === NodeState.NODE_STATE_UNKNOWN) continue;
    const next = structuredClone(n);
    next.state = NodeState.NODE_STATE_UNKNOWN;
    next.statusMessage = 'not heard from since the leader changed';
    next.stateChangedAt = { unixMs: nowMs };
    tx.update('node', next);
  }
  return tx.size > 0 ? tx : undefined;
}
