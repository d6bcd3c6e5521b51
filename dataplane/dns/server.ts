/**
 * The resolver's shell: one DnsServer per meshd serves every sandbox. Each
 * sandbox contributes a UDP socket and a listening TCP server bound to
 * 127.0.0.11:53 inside its namespace (opened there by the namespace helper and
 * handed over, see dataplane/netns); the sandbox a query came from decides its
 * scope. No process per task.
 *
 * Hot path: cluster answers are cached as encoded bytes keyed by the query
 * minus its ID, per scope, and cleared whenever the desired state changes, so
 * a repeated query costs one parse, one map lookup and one copy.
 */
import { randomBytes } from 'node:crypto';
import type dgram from 'node:dgram';
import type net from 'node:net';
import type { Registry } from 'prom-client';
import type { DesiredState } from '../../src/api/gen/meshd/v1/dataplane.js';
import { type Clock, systemClock } from '../../src/common/clock.js';
import { errorMessage } from '../../src/common/errors.js';
import { type Logger, subsystemLogger } from '../../src/common/logger.js';
import { type Rng, SeededRng } from '../../src/common/rng.js';
import { AnswerCache } from './answer-cache.js';
import { decide } from './answerer.js';
import { encodeHeaderError, encodeResponse, encodeServfail, encodeTruncated } from './encode.js';
import { cryptoIdRng, DEFAULT_FORWARDER_LIMITS, Forwarder, type ForwarderLimits } from './forwarder.js';
import { DnsMetrics, type Transport } from './metrics.js';
import { DEFAULT_LOG_RATE, RateLimitedLog, type RateLimitOptions } from './ratelimit.js';
import { buildIndex, type DnsIndex, emptyIndex } from './records.js';
import type { Upstream } from './resolvconf.js';
import { parseQuery, type Query, responseRcode, udpLimitBytes } from './wire.js';

export interface ServerLimits {
  /** Encoded answers kept per scope; the cache is dropped whole when full. */
  answerCacheEntries: number;
  maxTcpConnectionsPerSandbox: number;
  tcpIdleTimeoutMs: number;
  /** A query frame larger than this closes the connection (real queries are a few hundred bytes). */
  maxTcpFrameBytes: number;
  /** Queries being answered on one TCP connection; past it the connection is closed. */
  maxTcpQueriesInFlight: number;
  /** Forwarded queries in flight from one sandbox: one noisy task cannot take the whole upstream budget. */
  maxForwardedPerSandbox: number;
  /** Answers queued for a TCP client that does not read; past it the connection is closed. */
  maxTcpUnsentBytes: number;
  /** UDP answers queued in the process (the kernel buffer is full); past it answers are dropped. */
  maxUdpSendQueue: number;
}

export const DEFAULT_SERVER_LIMITS: ServerLimits = {
  answerCacheEntries: 2048,
  maxTcpConnectionsPerSandbox: 64,
  tcpIdleTimeoutMs: 10_000,
  maxTcpFrameBytes: 4096,
  maxTcpQueriesInFlight: 16,
  maxForwardedPerSandbox: 256,
  maxTcpUnsentBytes: 64 * 1024,
  maxUdpSendQueue: 1024,
};

export interface DnsServerOptions {
  registry: Registry;
  upstreams: readonly Upstream[];
  clock?: Clock;
  /** Shuffles dnsrr answers. */
  rng?: Rng;
  /** Upstream query IDs; node:crypto unless a test injects one. */
  upstreamIdRng?: Rng;
  logger?: Logger;
  limits?: Partial<ServerLimits>;
  forwarderLimits?: Partial<ForwarderLimits>;
  logRate?: RateLimitOptions;
}

export interface SandboxSockets {
  udp?: dgram.Socket;
  tcp?: net.Server;
}

interface Scope {
  networks: readonly string[];
  /** UDP answers only: a TCP answer may be larger than the same query's UDP one. */
  answers: AnswerCache;
}

interface Binding {
  taskId: string;
  sockets: SandboxSockets;
  connections: Set<net.Socket>;
}

export class DnsServer {
  private index: DnsIndex = emptyIndex();
  private scopes = new Map<string, Scope>();
  private readonly bindings = new Map<string, Binding>();
  /** Task ID → forwarded queries in flight (entries removed at zero, so bounded by sandboxes). */
  private readonly forwardingBySandbox = new Map<string, number>();
  private readonly metrics: DnsMetrics;
  private readonly forwarder: Forwarder;
  private readonly limits: ServerLimits;
  private readonly rng: Rng;
  private readonly log: Logger;
  private readonly limitedLog: RateLimitedLog;

  constructor(options: DnsServerOptions) {
    const clock = options.clock ?? systemClock;
    this.rng = options.rng ?? new SeededRng(randomBytes(4).readUInt32BE(0));
    this.log = options.logger ?? subsystemLogger('dns');
    this.limitedLog = new RateLimitedLog(this.log, clock, options.logRate ?? DEFAULT_LOG_RATE);
    this.metrics = new DnsMetrics(options.registry);
    this.limits = { ...DEFAULT_SERVER_LIMITS, ...options.limits };
    this.forwarder = new Forwarder(
      options.upstreams,
      clock,
      options.upstreamIdRng ?? cryptoIdRng,
      this.metrics,
      this.limitedLog,
      {
        ...DEFAULT_FORWARDER_LIMITS,
        ...options.forwarderLimits,
      },
    );
  }

  /** Replaces the records; the next query sees the new state. */
  update(state: DesiredState): void {
    this.index = buildIndex(state);
    this.scopes = new Map();
    if (this.index.skipped.length > 0)
      this.log.warn(
        {
          version: state.version,
          skipped: this.index.skipped.slice(0, 20),
          count: this.index.skipped.length,
        },
        'some DNS records were left out of the desired state',
      );
  }

  get stateVersion(): number {
    return this.index.version;
  }

  /** Serves the sockets of sandbox `taskId`; its networks come from the desired state. */
  attach(taskId: string, sockets: SandboxSockets): void {
    this.detach(taskId);
    const binding: Binding = { taskId, sockets, connections: new Set() };
    this.bindings.set(taskId, binding);
    sockets.udp?.on('message', (msg, rinfo) => this.onUdp(binding, msg, rinfo));
    sockets.udp?.on('error', (err) =>
      this.limitedLog.warn('handler_error', { taskId, err: errorMessage(err) }, 'DNS UDP socket error'),
    );
    if (sockets.tcp !== undefined) {
      sockets.tcp.maxConnections = this.limits.maxTcpConnectionsPerSandbox;
      sockets.tcp.on('connection', (conn) => this.onTcpConnection(binding, conn));
      sockets.tcp.on('drop', () => this.metrics.drop('too_many_connections'));
      sockets.tcp.on('error', (err) =>
        this.limitedLog.warn('handler_error', { taskId, err: errorMessage(err) }, 'DNS TCP server error'),
      );
    }
  }

  /** Stops serving sandbox `taskId` and closes its sockets. */
  detach(taskId: string): void {
    const binding = this.bindings.get(taskId);
    if (binding === undefined) return;
    this.bindings.delete(taskId);
    binding.sockets.udp?.close();
    binding.sockets.tcp?.close();
    for (const c of binding.connections) c.destroy();
  }

  close(): void {
    for (const taskId of [...this.bindings.keys()]) this.detach(taskId);
    this.forwarder.close();
  }

  private scopeOf(taskId: string): Scope {
    const networks = this.index.sandboxScopes.get(taskId) ?? [];
    const key = networks.join(',');
    let scope = this.scopes.get(key);
    if (scope === undefined) {
      scope = { networks, answers: new AnswerCache(this.limits.answerCacheEntries) };
      this.scopes.set(key, scope);
    }
    return scope;
  }

  private onUdp(binding: Binding, msg: Buffer, rinfo: dgram.RemoteInfo): void {
    try {
      const result = this.answer(binding.taskId, msg, 'udp');
      if (result instanceof Promise)
        result.then(
          (bytes) => this.sendUdp(binding, bytes, rinfo),
          (err) => this.handlerError(err),
        );
      else this.sendUdp(binding, result, rinfo);
    } catch (err) {
      this.handlerError(err);
    }
  }

  private sendUdp(binding: Binding, bytes: Buffer | undefined, rinfo: dgram.RemoteInfo): void {
    const socket = binding.sockets.udp;
    // A forwarded answer may come back after the sandbox went away.
    if (bytes === undefined || socket === undefined || this.bindings.get(binding.taskId) !== binding) return;
    // libuv queues a datagram in memory when the kernel buffer is full: bound that queue.
    if (socket.getSendQueueSize() >= this.limits.maxUdpSendQueue) {
      this.metrics.drop('overload');
      return;
    }
    this.metrics.response(responseRcode(bytes));
    // No callback: a send error surfaces as the socket's 'error' event (rate-limited log).
    socket.send(bytes, rinfo.port, rinfo.address);
  }

  private handlerError(err: unknown): void {
    this.limitedLog.warn('handler_error', { err: errorMessage(err) }, 'DNS query handler failed');
  }

  /**
   * Answers one query from sandbox `taskId`: bytes to send back, undefined to
   * stay silent, or a promise of either when the query goes upstream.
   */
  answer(
    taskId: string,
    bytes: Buffer,
    transport: Transport,
  ): Buffer | undefined | Promise<Buffer | undefined> {
    this.metrics.query(transport);
    const scope = this.scopeOf(taskId);
    const useCache = transport === 'udp';
    if (useCache) {
      const cached = scope.answers.get(bytes);
      if (cached !== undefined) {
        this.metrics.cacheHit();
        return cached;
      }
    }
    const parsed = parseQuery(bytes);
    if (parsed.kind === 'drop') {
      this.metrics.drop('malformed');
      return undefined;
    }
    if (parsed.kind === 'error') {
      this.limitedLog.warn('malformed', { taskId, reason: parsed.reason }, 'malformed DNS query');
      return encodeHeaderError(parsed.id, parsed.flags, parsed.rcode);
    }
    const query = parsed.query;
    const maxBytes = transport === 'udp' ? udpLimitBytes(query) : 65535;
    const decision = decide(this.index, scope.networks, query, this.rng);
    if (decision.kind === 'answer') {
      const out = encodeResponse(bytes, query, {
        rcode: decision.rcode,
        authoritative: true,
        answers: decision.answers,
        additionals: decision.additionals,
        maxBytes,
      });
      if (useCache && decision.cacheable) scope.answers.set(bytes, out);
      return out;
    }
    const forwarding = this.forwardingBySandbox.get(taskId) ?? 0;
    if (forwarding >= this.limits.maxForwardedPerSandbox) {
      this.metrics.drop('overload');
      this.limitedLog.warn(
        'overload',
        { taskId, forwarding },
        'sandbox has too many forwarded queries in flight',
      );
      return encodeServfail(bytes, query);
    }
    return this.forward(taskId, bytes, query, maxBytes);
  }

  private async forward(taskId: string, bytes: Buffer, query: Query, maxBytes: number): Promise<Buffer> {
    this.forwardingBySandbox.set(taskId, (this.forwardingBySandbox.get(taskId) ?? 0) + 1);
    try {
      const result = await this.forwarder.forward(bytes, query);
      if (result.kind === 'servfail') return encodeServfail(bytes, query);
      if (result.bytes.length > maxBytes) return encodeTruncated(bytes, query, responseRcode(result.bytes));
      return result.bytes;
    } finally {
      const left = (this.forwardingBySandbox.get(taskId) ?? 1) - 1;
      if (left <= 0) this.forwardingBySandbox.delete(taskId);
      else this.forwardingBySandbox.set(taskId, left);
    }
  }

  private onTcpConnection(binding: Binding, conn: net.Socket): void {
    binding.connections.add(conn);
    conn.setTimeout(this.limits.tcpIdleTimeoutMs, () => conn.destroy());
    conn.on('close', () => binding.connections.delete(conn));
    conn.on('error', () => conn.destroy());
    let buffered: Buffer = Buffer.alloc(0);
    let inFlight = 0;
    const send = (bytes: Buffer | undefined): void => {
      inFlight--;
      if (bytes === undefined || conn.destroyed) return;
      this.metrics.response(responseRcode(bytes));
      const frame = Buffer.allocUnsafe(2 + bytes.length);
      frame.writeUInt16BE(bytes.length, 0);
      bytes.copy(frame, 2);
      conn.write(frame);
      // A client that sends queries but never reads would make us buffer answers without end.
      if (conn.writableLength > this.limits.maxTcpUnsentBytes) {
        this.metrics.drop('overload');
        conn.destroy();
      }
    };
    conn.on('data', (chunk: Buffer) => {
      buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
      while (buffered.length >= 2) {
        const length = buffered.readUInt16BE(0);
        if (length === 0 || length > this.limits.maxTcpFrameBytes) {
          this.metrics.drop('oversized_frame');
          this.limitedLog.warn('tcp_frame', { taskId: binding.taskId, length }, 'bad DNS TCP frame length');
          conn.destroy();
          return;
        }
        if (buffered.length < 2 + length) return;
        const frame = Buffer.from(buffered.subarray(2, 2 + length));
        buffered = buffered.subarray(2 + length);
        if (inFlight >= this.limits.maxTcpQueriesInFlight) {
          this.metrics.drop('overload');
          conn.destroy();
          return;
        }
        inFlight++;
        try {
          const result = this.answer(binding.taskId, frame, 'tcp');
          if (result instanceof Promise)
            result.then(send, (err) => {
              inFlight--;
              this.handlerError(err);
            });
          else send(result);
        } catch (err) {
          inFlight--;
          this.handlerError(err);
        }
      }
    });
  }
}
