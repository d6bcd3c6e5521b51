import type { SchedNode } from './placement.js';

/**
 * Min-heap of nodes in spread order for one service: nodes where the service
 * failed recently last, then fewest tasks of the service, then fewest tasks
 * overall, then node ID (so the order is total and deterministic).
 */
export class NodeHeap {
  private readonly items: SchedNode[] = [];

  constructor(
    nodes: readonly SchedNode[],
    private readonly serviceId: string,
  ) {
    for (const n of nodes) this.push(n);
  }

  get size(): number {
    return this.items.length;
  }

  peek(): SchedNode | undefined {
    return this.items[0];
  }

  push(n: SchedNode): void {
    const items = this.items;
    items.push(n);
    let i = items.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.less(items[i]!, items[parent]!)) break;
      [items[i], items[parent]] = [items[parent]!, items[i]!];
      i = parent;
    }
  }

  pop(): SchedNode | undefined {
    const items = this.items;
    const top = items[0];
    const last = items.pop();
    if (items.length > 0 && last !== undefined) {
      items[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < items.length && this.less(items[l]!, items[m]!)) m = l;
        if (r < items.length && this.less(items[r]!, items[m]!)) m = r;
        if (m === i) break;
        [items[i], items[m]] = [items[m]!, items[i]!];
        i = m;
      }
    }
    return top;
  }

  private less(a: SchedNode, b: SchedNode): boolean {
    const fa = a.recentFailures.has(this.serviceId) ? 1 : 0;
    const fb = b.recentFailures.has(this.serviceId) ? 1 : 0;
    if (fa !== fb) return fa < fb;
    const sa = a.tasksByService.get(this.serviceId) ?? 0;
    const sb = b.tasksByService.get(this.serviceId) ?? 0;
    if (sa !== sb) return sa < sb;
    if (a.totalTasks !== b.totalTasks) return a.totalTasks < b.totalTasks;
    return a.id < b.id;
  }
}
