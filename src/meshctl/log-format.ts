import type { LogContext, LogMessage } from '../api/gen/meshd/v1/logs.js';
import { shortId } from './format.js';

export interface LogFormatOptions {
  /** Leave the task ID out of the prefix (`web.2@node3`). */
  noTaskIds: boolean;
  /** No prefix at all: the task's own bytes only. */
  raw: boolean;
}

/**
 * Swarm's prefix: `SERVICE.SLOT.TASKID@NODE` (a global service's tasks have
 * no slot: `SERVICE.NODEID.TASKID@NODE`).
 */
export function logPrefix(ctx: LogContext | undefined, opts: LogFormatOptions): string {
  if (ctx === undefined) return '?';
  const slot = ctx.slot > 0 ? String(ctx.slot) : shortId(ctx.nodeId);
  const task = opts.noTaskIds ? '' : `.${shortId(ctx.taskId)}`;
  return `${ctx.serviceName}.${slot}${task}@${ctx.nodeName}`;
}

/** One output line: `web.2.abc123def456@node3 | the line` (the line's bytes as UTF-8). */
export function formatLogLine(msg: LogMessage, opts: LogFormatOptions): string {
  const text = Buffer.from(msg.data).toString('utf8');
  return opts.raw ? text : `${logPrefix(msg.context, opts)} | ${text}`;
}
