import { type ChildProcess, spawn } from 'node:child_process';
import type dgram from 'node:dgram';
import type net from 'node:net';
import { fileURLToPath } from 'node:url';
import { MeshError } from '../../src/common/errors.js';
import { subsystemLogger } from '../../src/common/logger.js';
import { DEFAULT_HELPER_START_POLICY } from './backoff.js';
import { NetnsError, netnsExists, validateNetnsName } from './netns.js';
import {
  type ExecResult,
  type HelperReady,
  type HelperRequest,
  isHelperReply,
  type SocketKind,
  type SocketResult,
} from './protocol.js';

const log = subsystemLogger('netns');
const HELPER_MAIN = fileURLToPath(new URL('./helper-main.ts', import.meta.url));
const SOCKET_OPENER = fileURLToPath(new URL('./socket-opener.mjs', import.meta.url));
const PROJECT_ROOT = fileURLToPath(new URL('../../', import.meta.url));
// Generous: node starts in ~1 s on a host, but takes tens of seconds in an emulated VM under load.
const START_TIMEOUT_MS = DEFAULT_HELPER_START_POLICY.baseStartTimeoutMs;

/**
 * How a helper starts: node + tsx on helper-main.ts, as meshd itself runs
 * from a checkout; or plain node on a prebuilt bundle of it named by
 * MESHD_NETNS_HELPER_MAIN (`meshd run` in the VM lab, where tsx costs ~10 s
 * per start under emulation). Callers may also pass a command of their own.
 */
export function defaultNetnsHelperCommand(): string[] {
  const bundle = process.env['MESHD_NETNS_HELPER_MAIN'];
  if (bundle !== undefined && bundle !== '') return [process.execPath, bundle];
  return [process.execPath, '--import', 'tsx', HELPER_MAIN];
}
const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;

type DistributiveOmit<T, K extends keyof never> = T extends unknown ? Omit<T, K> : never;
type RequestBody = DistributiveOmit<HelperRequest, 'id'>;

interface Pending {
  resolve: (value: { result: unknown; handle: unknown }) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

/**
 * A long-lived Node process inside one named namespace (see README.md for why
 * and what it costs). The daemon asks it to open sockets there (handed back
 * over IPC), write net.* sysctls, run commands (nft) and rtnetlink operations.
 * It exits by itself when this side closes the channel or dies.
 */
export class NetnsHelper {
  readonly netns: string;
  readonly pid: number;
  private readonly child: ChildProcess;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private exited = false;

  private constructor(netns: string, child: ChildProcess, pid: number) {
    this.netns = netns;
    this.child = child;
    this.pid = pid;
    child.on('message', (msg: unknown, handle: unknown) => this.onMessage(msg, handle));
    child.on('exit', (code, signal) => {
      this.exited = true;
      const err = new NetnsError('helper', netns, `helper exited (code ${code}, signal ${signal})`);
      for (const p of this.pending.values()) {
        clearTimeout(p.timer);
        p.reject(err);
      }
      this.pending.clear();
    });
  }

  /**
   * Starts the helper inside `netns` (with `command`, default node + tsx) and
   * waits until it is ready, at most `startTimeoutMs` (then it is killed).
   */
  static async start(
    netns: string,
    command: string[] = defaultNetnsHelperCommand(),
    startTimeoutMs = START_TIMEOUT_MS,
  ): Promise<NetnsHelper> {
    validateNetnsName(netns);
    if (!netnsExists(netns)) throw new NetnsError('helper start', netns, 'namespace does not exist');
    const child = spawn('ip', ['netns', 'exec', netns, ...command], {
      cwd: PROJECT_ROOT,
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      env: { ...process.env, MESHD_NETNS_HELPER: netns },
    });
    const pid = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new NetnsError('helper start', netns, `not ready within ${startTimeoutMs} ms`));
      }, startTimeoutMs);
      child.once('message', (msg: HelperReady) => {
        clearTimeout(timer);
        resolve(msg.pid);
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new NetnsError('helper start', netns, `helper exited with code ${code} before ready`));
      });
      child.once('error', (err) => {
        clearTimeout(timer);
        reject(new NetnsError('helper start', netns, err.message, err));
      });
    });
    log.debug({ netns, pid }, 'namespace helper ready');
    // An idle helper must not keep a one-shot command (`meshd dataplane apply`) alive:
    // pending requests hold a timer, and the helper exits when our end disconnects.
    child.unref();
    (child.channel as { unref?: () => void } | undefined)?.unref?.();
    return new NetnsHelper(netns, child, pid);
  }

  private onMessage(msg: unknown, handle: unknown): void {
    if (!isHelperReply(msg)) return;
    const p = this.pending.get(msg.id);
    if (p === undefined) return;
    this.pending.delete(msg.id);
    clearTimeout(p.timer);
    if (msg.ok) p.resolve({ result: msg.result, handle });
    else p.reject(new MeshError(msg.code, `netns "${this.netns}": ${msg.message}`));
  }

  private request(body: RequestBody, timeoutMs = DEFAULT_REQUEST_TIMEOUT_MS) {
    if (this.exited) return Promise.reject(new NetnsError('request', this.netns, 'helper has exited'));
    const id = this.nextId++;
    return new Promise<{ result: unknown; handle: unknown }>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new NetnsError(body.op, this.netns, `no reply within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer });
      this.child.send({ id, ...body } as HelperRequest, (err) => {
        if (err === null) return;
        this.pending.delete(id);
        clearTimeout(timer);
        reject(new NetnsError(body.op, this.netns, err.message, err));
      });
    });
  }

  /** False once the helper process has exited (then every request fails; start a new one). */
  get alive(): boolean {
    return !this.exited;
  }

  async ping(): Promise<void> {
    await this.request({ op: 'ping' });
  }

  /**
   * A UDP socket bound inside the namespace, served from this process
   * (e.g. the embedded DNS on 127.0.0.11:53 of a task namespace).
   */
  async openUdpSocket(address: string, port: number): Promise<{ socket: dgram.Socket; bound: SocketResult }> {
    const r = await this.openSocket('udp4', address, port);
    return { socket: r.handle as dgram.Socket, bound: r.bound };
  }

  /** A listening TCP server inside the namespace; attach 'connection' listeners here. */
  async openTcpServer(address: string, port: number): Promise<{ server: net.Server; bound: SocketResult }> {
    const r = await this.openSocket('tcp4', address, port);
    return { server: r.handle as net.Server, bound: r.bound };
  }

  private async openSocket(kind: SocketKind, address: string, port: number) {
    const { result, handle } = await this.request({ op: 'openSocket', kind, address, port });
    if (handle === undefined || handle === null) {
      throw new NetnsError('openSocket', this.netns, `helper replied without a ${kind} handle`);
    }
    return { handle, bound: result as SocketResult };
  }

  /** Writes a net.* sysctl inside the namespace. */
  async sysctl(key: string, value: string): Promise<void> {
    await this.request({ op: 'sysctl', key, value });
  }

  /** Runs a command inside the namespace (no shell); resolves with its exit code and output. */
  async exec(argv: string[], options: { input?: string; timeoutMs?: number } = {}): Promise<ExecResult> {
    const timeoutMs = options.timeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
    const body: RequestBody =
      options.input === undefined
        ? { op: 'exec', argv, timeoutMs }
        : { op: 'exec', argv, input: options.input, timeoutMs };
    const { result } = await this.request(body, timeoutMs + 5_000);
    return result as ExecResult;
  }

  /** Runs one rtnetlink method of the netlink layer inside the namespace. */
  async rtnl(method: string, args: unknown[]): Promise<unknown> {
    const { result } = await this.request({ op: 'rtnl', method, args });
    return result;
  }

  /** Closes the channel; the helper exits on disconnect. Resolves when it has exited. */
  async stop(): Promise<void> {
    if (this.exited) return;
    const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 3_000);
    if (this.child.connected) this.child.disconnect();
    else this.child.kill('SIGTERM');
    await exited;
    clearTimeout(timer);
  }
}

export type SocketRequest = { kind: 'udp4' | 'tcp4'; address: string; port: number };
export type OpenedSocket =
  | { kind: 'udp4'; socket: dgram.Socket; bound: SocketResult }
  | { kind: 'tcp4'; server: net.Server; bound: SocketResult };

/**
 * Opens sockets inside `netns` with a short-lived opener process (plain
 * JavaScript, no TypeScript loader: a task sandbox must not cost a second of
 * CPU) and returns them; the opener exits and the sockets keep working in this
 * process. For namespaces that need sockets once (the embedded DNS on
 * 127.0.0.11:53 of a task sandbox) but no long-lived helper.
 */
export async function openSocketsInNetns(
  netns: string,
  requests: readonly SocketRequest[],
): Promise<OpenedSocket[]> {
  validateNetnsName(netns);
  if (!netnsExists(netns)) throw new NetnsError('open sockets', netns, 'namespace does not exist');
  for (const r of requests) validateSocketRequest(netns, r);
  if (requests.length === 0) return [];
  const child = spawn(
    'nsenter',
    [`--net=/run/netns/${netns}`, process.execPath, SOCKET_OPENER, JSON.stringify(requests)],
    { stdio: ['ignore', 'ignore', 'pipe', 'ipc'] },
  );
  const opened: OpenedSocket[] = [];
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    if (stderr.length < 4096) stderr += chunk.toString();
  });
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new NetnsError('open sockets', netns, `opener did not finish within ${START_TIMEOUT_MS} ms`));
      }, START_TIMEOUT_MS);
      const fail = (err: Error) => {
        clearTimeout(timer);
        reject(err);
      };
      child.on('message', (msg: OpenerMessage, handle: unknown) => {
        if ('opened' in msg && handle !== undefined && handle !== null) {
          const bound = { address: msg.opened.address, port: msg.opened.port };
          opened.push(
            msg.opened.kind === 'udp4'
              ? { kind: 'udp4', socket: handle as dgram.Socket, bound }
              : { kind: 'tcp4', server: handle as net.Server, bound },
          );
          if (opened.length === requests.length) {
            clearTimeout(timer);
            resolve();
          }
        } else if ('error' in msg) {
          fail(new MeshError(msg.error.code, `netns "${netns}": ${msg.error.message}`));
        }
      });
      child.once('error', (err) => fail(new NetnsError('open sockets', netns, err.message, err)));
      // 'close', not 'exit': it comes after the IPC channel is drained, so every
      // handed-over socket has been seen by then.
      child.once('close', (code) =>
        fail(new NetnsError('open sockets', netns, `opener exited with code ${code}: ${stderr.trim()}`)),
      );
    });
    if (opened.length !== requests.length)
      throw new NetnsError(
        'open sockets',
        netns,
        `opener handed over ${opened.length} of ${requests.length} sockets`,
      );
    return opened;
  } catch (err) {
    for (const o of opened) (o.kind === 'udp4' ? o.socket : o.server).close();
    throw err;
  } finally {
    // The opener exits when its channel closes; a stuck one is killed.
    if (child.connected) child.disconnect();
    const killer = setTimeout(() => child.kill('SIGKILL'), 3_000);
    killer.unref();
    child.once('exit', () => clearTimeout(killer));
  }
}

type OpenerMessage =
  | { opened: { kind: SocketKind; address: string; port: number } }
  | { error: { code: string; message: string } };

const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

function validateSocketRequest(netns: string, r: SocketRequest): void {
  const octets = IPV4.exec(r.address);
  if (r.kind !== 'udp4' && r.kind !== 'tcp4')
    throw new NetnsError('open sockets', netns, `kind must be udp4 or tcp4, got "${String(r.kind)}"`);
  if (octets === null || octets.slice(1).some((o) => Number(o) > 255))
    throw new NetnsError('open sockets', netns, `address must be an IPv4 address, got "${r.address}"`);
  if (!Number.isInteger(r.port) || r.port < 0 || r.port > 65535)
    throw new NetnsError('open sockets', netns, `port must be an integer 0..65535, got ${r.port}`);
}
