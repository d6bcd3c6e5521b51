import { NodeRole } from '../../src/api/gen/meshd/v1/objects.js';
import { decodeConfChange } from '../raft/core/conf-change.js';
import { unwrap } from '../raft/driver/envelope.js';
import { DiskStorage } from '../raft/storage/disk-storage.js';
import { MemoryStore } from '../store/memory-store.js';
import { StoreStateMachine } from './store-state-machine.js';

/** Committed entries replayed per read (bounds memory for a long log). */
const REPLAY_BATCH_BYTES = 8 * 1024 * 1024;

/**
 * This manager's replica as of its last commit, read from its Raft data
 * directory while meshd is stopped (`meshd leave` looks up the other
 * managers there). Opening the WAL starts an empty segment; nothing else
 * is written.
 */
export async function readReplicaOffline(dataDir: string): Promise<StoreStateMachine> {
  const storage = await DiskStorage.open(dataDir);
  try {
    const machine = new StoreStateMachine(new MemoryStore());
    const snapshot = storage.snapshot();
    machine.restore(snapshot.data);
    const commit = storage.initialState().hardState.commit;
    let next = Math.max(storage.firstIndex(), snapshot.metadata.index + 1);
    while (next <= commit) {
      const entries = storage.entries(next, commit + 1, REPLAY_BATCH_BYTES);
      if (entries.length === 0) break;
      for (const e of entries) {
        if (e.type === 'confChange') machine.onConfChange(decodeConfChange(e.data));
        else {
          // Proposals travel in the driver's envelope; an empty entry (a new leader's) has none.
          const unwrapped = unwrap(e.data);
          if (unwrapped !== undefined) machine.apply(e.index, unwrapped.payload);
        }
        next = e.index + 1;
      }
    }
    return machine;
  } finally {
    await storage.close();
  }
}

/** First address of every manager's Node object but `selfId`'s: where their cluster gRPC listens. */
export function otherManagerHosts(machine: StoreStateMachine, selfId: string): string[] {
  return machine.store
    .list('node')
    .filter((n) => n.role === NodeRole.NODE_ROLE_MANAGER && n.meta?.id !== selfId && n.addresses[0])
    .map((n) => n.addresses[0]!);
}
