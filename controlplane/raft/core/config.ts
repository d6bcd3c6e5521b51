import { ValidationError } from '../../../src/common/errors.js';
import type { RaftConfig } from './types.js';

/** Refuses a configuration the core cannot run with, naming the field. */
export function validateConfig(config: RaftConfig): void {
  const positive = (field: keyof RaftConfig, value: number) => {
    if (!Number.isInteger(value) || value <= 0) {
      throw new ValidationError(
        `raft.${field}`,
        `raft config: ${field} must be a positive integer, got ${value}`,
      );
    }
  };
  if (config.id.length === 0) throw new ValidationError('raft.id', 'raft config: id must not be empty');
  positive('electionTicks', config.electionTicks);
  positive('heartbeatTicks', config.heartbeatTicks);
  positive('maxInflightMsgs', config.maxInflightMsgs);
  positive('maxSizePerMsg', config.maxSizePerMsg);
  positive('snapshotChunkBytes', config.snapshotChunkBytes);
  if (config.heartbeatTicks >= config.electionTicks) {
    throw new ValidationError(
      'raft.heartbeatTicks',
      `raft config: heartbeatTicks (${config.heartbeatTicks}) must be less than electionTicks (${config.electionTicks})`,
    );
  }
}
