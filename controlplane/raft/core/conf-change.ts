import { ValidationError } from '../../../src/common/errors.js';
import type { ConfChange, ConfChangeType } from './types.js';

const TYPES: readonly ConfChangeType[] = ['addVoter', 'addLearner', 'removeNode'];
const MAX_NODE_ID_LENGTH = 256;

/** Encodes a ConfChange as the data of a `confChange` log entry (JSON, context as base64). */
export function encodeConfChange(change: ConfChange): Uint8Array {
  const wire: Record<string, string> = { type: change.type, nodeId: change.nodeId };
  if (change.context !== undefined) wire['context'] = Buffer.from(change.context).toString('base64');
  return new TextEncoder().encode(JSON.stringify(wire));
}

/** Decodes a `confChange` entry's data; throws ValidationError naming the bad field. */
export function decodeConfChange(data: Uint8Array): ConfChange {
  let wire: unknown;
  try {
    wire = JSON.parse(new TextDecoder().decode(data));
  } catch {
    throw new ValidationError('confChange', 'raft conf change entry: data is not valid JSON');
  }
  if (typeof wire !== 'object' || wire === null) {
    throw new ValidationError('confChange', 'raft conf change entry: expected an object');
  }
  const record = wire as Record<string, unknown>;
  const type = record['type'];
  if (typeof type !== 'string' || !TYPES.includes(type as ConfChangeType)) {
    throw new ValidationError(
      'confChange.type',
      `raft conf change: type must be one of ${TYPES.join(', ')}, got ${JSON.stringify(type)}`,
    );
  }
  const nodeId = record['nodeId'];
  if (typeof nodeId !== 'string' || nodeId.length === 0 || nodeId.length > MAX_NODE_ID_LENGTH) {
    throw new ValidationError(
      'confChange.nodeId',
      `raft conf change: nodeId must be a non-empty string of at most ${MAX_NODE_ID_LENGTH} characters, got ${JSON.stringify(nodeId)}`,
    );
  }
  const change: ConfChange = { type: type as ConfChangeType, nodeId };
  const context = record['context'];
  if (context !== undefined) {
    if (typeof context !== 'string') {
      throw new ValidationError('confChange.context', 'raft conf change: context must be a base64 string');
    }
    change.context = new Uint8Array(Buffer.from(context, 'base64'));
  }
  return change;
}
