import { type Node, TaskState } from '../../src/api/gen/meshd/v1/objects.js';
import { constraintHolds, parseConstraints } from '../scheduler/constraints.js';
import { TransactionBuilder } from '../store/transaction.js';
import type { StoreView } from '../store/types.js';
import { isDrained, nodeIsGone, type OrchestratorContext, sortById, unknownGraceMs } from './context.js';
import { isRunnable, withDesired } from './task-model.js';

/** The constraint enforcer: a label change can make a running task's node stop matching. */
function constraintsStillHold(node: Node | undefined, texts: string[]): boolean {
  if (node === undefined || texts.length === 0) return true;
  try {
    return parseConstraints(texts).every((c) => constraintHolds(node, c));
  } catch {
    return true;
  }
}

/**
 * Tasks on a node that is down (or UNKNOWN past the grace after a leader
 * change), removed, drained, or no longer matching the task's constraints
 * are asked to shut down; the reconcilers then put replacements in their
 * slots. Node failure is not the task's failure:
 * no restart delay, no restart attempt counted.
 */
export function planNodeFailures(view: StoreView, ctx: OrchestratorContext): TransactionBuilder | undefined {
  const graceMs = unknownGraceMs(view);
  const tx = new TransactionBuilder(ctx.nowMs);
  for (const t of sortById(view.list('task'))) {
    if (t.nodeId === '' || !isRunnable(t)) continue;
    const node = view.get('node', t.nodeId);
    const gone = nodeIsGone(node, ctx.nowMs, graceMs) || isDrained(node);
    if (gone || !constraintsStillHold(node, t.spec?.placement?.constraints ?? []))
      tx.update('task', withDesired(t, TaskState.TASK_STATE_SHUTDOWN));
  }
  return tx.size > 0 ? tx : undefined;
}
