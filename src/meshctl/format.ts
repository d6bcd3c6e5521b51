import { status as GrpcStatus, type ServiceError } from '@grpc/grpc-js';
import { errorMessage, MeshError } from '../common/errors.js';

/** Output formats every listing and inspect command accepts. */
export type Format = 'table' | 'json';

/** Where a command writes: injected so tests read what a person would see. */
export interface Output {
  out(line: string): void;
  err(line: string): void;
}

/** Columns padded to their widest cell, two spaces apart, like swarm's listings. */
export function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  return [line(headers), ...rows.map(line)].join('\n');
}

/** `NODE_STATE_READY` → `ready`: enum JSON names without their prefix, for people. */
export function enumWord(jsonName: string, prefix: string): string {
  const word = jsonName.startsWith(prefix) ? jsonName.slice(prefix.length) : jsonName;
  return word.toLowerCase().replaceAll('_', '-');
}

/** First 12 characters of an ID, as swarm shows them in listings. */
export function shortId(id: string): string {
  return id.slice(0, 12);
}

/** `5 minutes ago`-style age of a unix-ms time relative to `nowMs`. */
export function age(unixMs: number, nowMs: number): string {
  if (unixMs <= 0) return '';
  const s = Math.max(0, Math.round((nowMs - unixMs) / 1000));
  if (s < 60) return `${s} seconds ago`;
  if (s < 3600) return `${Math.round(s / 60)} minutes ago`;
  if (s < 86400) return `${Math.round(s / 3600)} hours ago`;
  return `${Math.round(s / 86400)} days ago`;
}

function isServiceError(err: unknown): err is ServiceError {
  return (
    err instanceof Error &&
    typeof (err as Partial<ServiceError>).code === 'number' &&
    typeof (err as Partial<ServiceError>).details === 'string'
  );
}

/** What the failed command was about, so the error can say where to look next. */
export interface ErrorContext {
  socketPath: string;
  /** e.g. `meshctl service ls`, suggested when something is not found. */
  listCommand?: string;
}

/**
 * One line a person can act on, for any error meshctl meets: local flag
 * mistakes (ValidationError names the flag), gRPC statuses from meshd (the
 * control API's message names the field), and a socket that is missing or
 * closed to the caller.
 */
export function describeError(err: unknown, ctx: ErrorContext): string {
  return oneLine(describe(err, ctx));
}

function describe(err: unknown, ctx: ErrorContext): string {
  if (err instanceof MeshError) return err.message;
  if (!isServiceError(err)) return errorMessage(err);
  const details = err.details.trim() || err.message;
  switch (err.code) {
    case GrpcStatus.UNAVAILABLE:
      if (/EACCES|EPERM/.test(details))
        return `permission denied on ${ctx.socketPath}: run as root or as a member of group meshd`;
      if (/ENOENT|ECONNREFUSED|No connection established|connect/i.test(details))
        return `cannot reach meshd at ${ctx.socketPath}: start it with "meshd run" (or point --socket at its socket)`;
      return `meshd is unavailable: ${details}; the cluster may have lost its leader, retry in a few seconds`;
    case GrpcStatus.DEADLINE_EXCEEDED:
      return `meshd did not answer in time: check "meshctl node ls" for down managers (quorum needs a majority) and retry`;
    case GrpcStatus.NOT_FOUND:
      return ctx.listCommand === undefined || details.includes('meshctl')
        ? details
        : `${details}; see "${ctx.listCommand}" for what exists`;
    case GrpcStatus.ALREADY_EXISTS:
      return `${details}; choose another name or remove the existing one first`;
    case GrpcStatus.ABORTED:
      return `${details}; it changed meanwhile, run the command again`;
    case GrpcStatus.PERMISSION_DENIED:
    case GrpcStatus.UNAUTHENTICATED:
      return `${details}; run meshctl on a manager node as root or a member of group meshd`;
    case GrpcStatus.UNIMPLEMENTED:
      return `this meshd does not offer that yet (${details}); upgrade meshd on this node`;
    default:
      return details;
  }
}

function oneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, ' ').trim();
}
