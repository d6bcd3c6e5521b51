import type { Rng } from '../../../src/common/rng.js';
import { Raft } from './raft.js';
import type { RaftConfig, RaftCore, Storage } from './types.js';

export { decodeConfChange, encodeConfChange } from './conf-change.js';
export { learnersReadyToPromote, type PromotionView } from './membership.js';
export { entrySizeBytes, MemoryStorage } from './memory-storage.js';
export * from './types.js';
export { validateMessage } from './validate.js';

/** Builds the pure Raft core; state comes from `storage`, randomness from `rng`. */
export function createRaftCore(config: RaftConfig, storage: Storage, rng: Rng): RaftCore {
  return new Raft(config, storage, rng);
}
