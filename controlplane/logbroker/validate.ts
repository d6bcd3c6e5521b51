import type { PublishLogsRequest, SubscribeLogsRequest } from '../../src/api/gen/meshd/v1/logs.js';
import { LogStream } from '../../src/api/gen/meshd/v1/logs.js';
import { ValidationError } from '../../src/common/errors.js';

/** Bounds of one PublishLogs batch (the agent cuts its batches to fit). */
export const MAX_PUBLISH_LINES = 1000;
export const MAX_PUBLISH_BYTES = 1024 * 1024;
/** A longer line is cut by the agent; the broker refuses one past it. */
export const MAX_LINE_BYTES = 16 * 1024;
/** `--tail` beyond this is as good as "all" (a task's log files are bounded anyway). */
export const MAX_TAIL_LINES = 1_000_000;

export function validateSubscribeRequest(req: SubscribeLogsRequest): void {
  if (req.service === '')
    throw new ValidationError('service', 'service must name a service (ID, ID prefix or name), got ""');
  if (req.tail !== undefined && (!Number.isInteger(req.tail) || req.tail < 0 || req.tail > MAX_TAIL_LINES))
    throw new ValidationError('tail', `tail must be an integer 0..${MAX_TAIL_LINES}, got ${req.tail}`);
}

/** Peer input: a node's batch is checked before anything of it is relayed. */
export function validatePublishRequest(req: PublishLogsRequest): void {
  if (req.subscriptionId === '')
    throw new ValidationError('subscription_id', 'subscription_id must be set, got ""');
  if (req.lines.length > MAX_PUBLISH_LINES)
    throw new ValidationError(
      'lines',
      `lines must hold at most ${MAX_PUBLISH_LINES} lines per request, got ${req.lines.length}`,
    );
  let bytes = 0;
  for (const [i, line] of req.lines.entries()) {
    if (line.taskId === '')
      throw new ValidationError(`lines[${i}].task_id`, `lines[${i}].task_id must be set`);
    if (line.stream !== LogStream.LOG_STREAM_STDOUT && line.stream !== LogStream.LOG_STREAM_STDERR)
      throw new ValidationError(
        `lines[${i}].stream`,
        `lines[${i}].stream must be LOG_STREAM_STDOUT or LOG_STREAM_STDERR, got ${line.stream}`,
      );
    if (line.data.length > MAX_LINE_BYTES)
      throw new ValidationError(
        `lines[${i}].data`,
        `lines[${i}].data must be at most ${MAX_LINE_BYTES} bytes, got ${line.data.length}`,
      );
    bytes += line.data.length;
  }
  if (bytes > MAX_PUBLISH_BYTES)
    throw new ValidationError(
      'lines',
      `lines must carry at most ${MAX_PUBLISH_BYTES} bytes per request, got ${bytes}`,
    );
}
