import type { StoreTransaction } from '../../src/api/gen/meshd/v1/objects.js';
import { planAllocation } from '../allocator/allocator.js';
import { planScheduling } from '../scheduler/scheduler.js';
import type { Proposer } from '../store/proposer.js';
import type { TransactionBuilder } from '../store/transaction.js';
import type { StoreView } from '../store/types.js';
import type { OrchestratorContext } from './context.js';
import { planGlobal } from './global.js';
import { planNodeFailures } from './node-failures.js';
import { planReaper } from './reaper.js';
import { planRebalance } from './rebalance.js';
import { planReplicated } from './replicated.js';
import { planRestarts } from './restart.js';
import { planUpdates } from './updater.js';

export type Planner = (view: StoreView, ctx: OrchestratorContext) => TransactionBuilder | undefined;

/** Every manager decision, in the order one round runs them; each sees the previous one's result. */
export const PLANNERS: readonly { name: string; plan: Planner }[] = [
  { name: 'reaper', plan: planReaper },
  { name: 'node-failures', plan: planNodeFailures },
  { name: 'restart', plan: planRestarts },
  { name: 'updater', plan: planUpdates },
  { name: 'replicated', plan: planReplicated },
  { name: 'global', plan: planGlobal },
  { name: 'rebalance', plan: planRebalance },
  { name: 'allocator', plan: (view, ctx) => planAllocation(view, ctx.nowMs) },
  { name: 'scheduler', plan: (view, ctx) => planScheduling(view, ctx.nowMs) },
];

export interface LoopResult {
  rounds: number;
  transactions: number;
  /** False when `maxRounds` passed before nothing was left to do (a bug or a livelock). */
  settled: boolean;
}

/**
 * Runs the planners until none has anything to change (bounded by
 * `maxRounds`). `apply` commits synchronously (a store, or a single-replica
 * proposer); simulations use this.
 */
export function runToFixpoint(
  view: StoreView,
  apply: (tx: StoreTransaction) => void,
  ctx: OrchestratorContext,
  maxRounds = 50,
): LoopResult {
  let transactions = 0;
  for (let round = 1; round <= maxRounds; round++) {
    let changed = false;
    for (const p of PLANNERS) {
      const tx = p.plan(view, ctx);
      if (tx === undefined) continue;
      apply(tx.build());
      transactions++;
      changed = true;
    }
    if (!changed) return { rounds: round, transactions, settled: true };
  }
  return { rounds: maxRounds, transactions, settled: false };
}

/** The same through a Proposer (Raft): each transaction is committed before the next planner reads. */
export async function runToFixpointAsync(
  view: StoreView,
  proposer: Proposer,
  ctx: OrchestratorContext,
  maxRounds = 50,
): Promise<LoopResult> {
  let transactions = 0;
  for (let round = 1; round <= maxRounds; round++) {
    let changed = false;
    for (const p of PLANNERS) {
      const tx = p.plan(view, ctx);
      if (tx === undefined) continue;
      await proposer.propose(tx.build());
      transactions++;
      changed = true;
    }
    if (!changed) return { rounds: round, transactions, settled: true };
  }
  return { rounds: maxRounds, transactions, settled: false };
}
