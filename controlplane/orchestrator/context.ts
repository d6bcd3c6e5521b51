import { type Node, NodeAvailability, NodeState, type Task } from '../../src/api/gen/meshd/v1/objects.js';
import type { StoreView } from '../store/types.js';
import { slotKey } from '../store/types.js';

export interface OrchestratorContext {
  nowMs: number;
  newId: () => string;
}

export const DEFAULT_UNKNOWN_GRACE_MS = 30_000;

export function unknownGraceMs(view: StoreView): number {
  return view.list('cluster')[0]?.spec?.unknownGraceMs || DEFAULT_UNKNOWN_GRACE_MS;
}

/**
 * Whether a node's tasks must be replaced elsewhere. DOWN: yes. UNKNOWN or
 * DISCONNECTED (after a leader change, nobody has heard from it yet): only
 * once the grace has passed, so a manager failover does not reschedule the
 * whole cluster. A removed node: yes.
 */
export function nodeIsGone(node: Node | undefined, nowMs: number, graceMs: number): boolean {
  if (node === undefined) return true;
  switch (node.state) {
    case NodeState.NODE_STATE_DOWN:
      return true;
    case NodeState.NODE_STATE_UNKNOWN:
    case NodeState.NODE_STATE_DISCONNECTED:
      return nowMs - (node.stateChangedAt?.unixMs ?? 0) >= graceMs;
    default:
      return false;
  }
}

export function isDrained(node: Node | undefined): boolean {
  return node?.availability === NodeAvailability.NODE_AVAILABILITY_DRAIN;
}

export function bySlot(tasks: readonly Task[]): Map<string, Task[]> {
  const out = new Map<string, Task[]>();
  for (const t of tasks) {
    const key = slotKey(t);
    const list = out.get(key) ?? [];
    list.push(t);
    out.set(key, list);
  }
  return out;
}

export function sortById<T extends { meta?: { id: string } | undefined }>(rows: readonly T[]): T[] {
  return [...rows].sort((a, b) => ((a.meta?.id ?? '') < (b.meta?.id ?? '') ? -1 : 1));
}
