import { MeshError } from '../../src/common/errors.js';
import type { MemoryStore } from './memory-store.js';
import type { StoreEvent, WatchFilter } from './types.js';

/**
 * A bounded buffer of store events for a consumer that reads at its own pace
 * (a dispatcher session, a reconciler loop). A consumer that falls more than
 * `maxQueued` events behind is closed rather than allowed to grow memory
 * without bound; it must re-read the store and watch again.
 */
export class WatchQueue {
  private readonly events: StoreEvent[] = [];
  private readonly cancel: () => void;
  private closedReason: MeshError | undefined;

  constructor(
    store: MemoryStore,
    filter: WatchFilter,
    private readonly maxQueued = 10_000,
  ) {
    this.cancel = store.watch(filter, (e) => this.push(e));
  }

  /** Events queued since the last drain, oldest first; throws when the queue overflowed. */
  drain(): StoreEvent[] {
    if (this.closedReason !== undefined) throw this.closedReason;
    return this.events.splice(0, this.events.length);
  }

  get closed(): boolean {
    return this.closedReason !== undefined;
  }

  close(): void {
    this.cancel();
    this.closedReason ??= new MeshError('WATCH_CLOSED', 'store watch was closed by its consumer');
  }

  private push(event: StoreEvent): void {
    if (this.closedReason !== undefined) return;
    if (this.events.length >= this.maxQueued) {
      this.cancel();
      this.events.length = 0;
      this.closedReason = new MeshError(
        'WATCH_OVERFLOW',
        `store watch fell more than ${this.maxQueued} events behind and was closed; re-read the store and watch again`,
      );
      return;
    }
    this.events.push(event);
  }
}
