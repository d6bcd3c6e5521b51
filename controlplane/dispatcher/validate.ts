import type { SessionRequest, UpdateTaskStatusRequest } from '../../src/api/gen/meshd/v1/dispatcher.js';
import { ValidationError } from '../../src/common/errors.js';

export const MAX_STATUS_UPDATES_PER_REQUEST = 1000;
const MAX_ADDRESSES = 16;
const MAX_LABELS = 64;
const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

/**
 * A node's session request goes into the Node object and from there into
 * every other node's data plane (its first address is a VTEP): a bad value
 * here would make every node's desired state invalid, so it is refused at
 * the door with the field named.
 */
export function validateSessionRequest(req: SessionRequest): void {
  if (req.hostname.length > 253)
    throw new ValidationError(
      'hostname',
      `hostname must be at most 253 characters, got ${req.hostname.length}`,
    );
  if (req.addresses.length > MAX_ADDRESSES)
    throw new ValidationError(
      'addresses',
      `addresses must list at most ${MAX_ADDRESSES} entries, got ${req.addresses.length}`,
    );
  req.addresses.forEach((a, i) => {
    if (!IPV4.test(a))
      throw new ValidationError(
        `addresses[${i}]`,
        `addresses[${i}] must be an IPv4 address like 192.168.1.10, got ${JSON.stringify(a.slice(0, 64))}`,
      );
  });
  const labels = Object.keys(req.labels);
  if (labels.length > MAX_LABELS)
    throw new ValidationError(
      'labels',
      `labels must have at most ${MAX_LABELS} entries, got ${labels.length}`,
    );
}

export function validateStatusRequest(req: UpdateTaskStatusRequest): void {
  if (req.updates.length > MAX_STATUS_UPDATES_PER_REQUEST)
    throw new ValidationError(
      'updates',
      `updates must carry at most ${MAX_STATUS_UPDATES_PER_REQUEST} task statuses per request, got ${req.updates.length}; send them in batches`,
    );
  req.updates.forEach((u, i) => {
    if (u.taskId === '')
      throw new ValidationError(`updates[${i}].task_id`, `updates[${i}].task_id must not be empty`);
    if ((u.status?.message.length ?? 0) + (u.status?.err.length ?? 0) > 4096)
      throw new ValidationError(
        `updates[${i}].status`,
        `updates[${i}].status message and err must total at most 4096 characters`,
      );
  });
}
