/**
 * Messages between the daemon and a namespace helper over the Node IPC
 * channel. Requests carry an id; every request gets exactly one reply with the
 * same id. A socket reply carries the socket handle as the IPC message's
 * second argument (SCM_RIGHTS under the hood).
 */
export type SocketKind = 'udp4' | 'tcp4';

export type HelperRequest =
  | { id: number; op: 'ping' }
  | { id: number; op: 'openSocket'; kind: SocketKind; address: string; port: number }
  | { id: number; op: 'sysctl'; key: string; value: string }
  | { id: number; op: 'exec'; argv: string[]; input?: string; timeoutMs?: number }
  | { id: number; op: 'rtnl'; method: string; args: unknown[] };

export type HelperReply =
  | { id: number; ok: true; result?: unknown }
  | { id: number; ok: false; code: string; message: string };

export interface HelperReady {
  ready: true;
  pid: number;
}

/** Port the kernel chose when the request asked for port 0. */
export interface SocketResult {
  address: string;
  port: number;
}

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function isHelperReply(value: unknown): value is HelperReply {
  if (typeof value !== 'object' || value === null) return false;
  const v = value as Record<string, unknown>;
  return typeof v['id'] === 'number' && typeof v['ok'] === 'boolean';
}
