/**
 * Forwards non-cluster queries to the host's upstream resolvers.
 *
 * - One shared UDP socket per upstream; each forwarded query gets a fresh
 *   random ID on that socket and the reply is matched by ID *and* question,
 *   then given back the client's ID (a socket per query costs a descriptor
 *   and an ephemeral port each, and swarm's resolver ran out of both).
 * - Each attempt has a timeout; attempts move on to the next upstream, and
 *   the total is bounded (attempts × timeout), so a dead upstream costs the
 *   client a SERVFAIL within that bound, never a 10–20 s stall (moby#22185).
 * - A bound on queries in flight: past it the client gets SERVFAIL at once.
 * - A truncated UDP answer is fetched again over TCP from the same upstream.
 */
import { randomInt } from 'node:crypto';
import dgram from 'node:dgram';
import net from 'node:net';
import type { Clock } from '../../src/common/clock.js';
import type { Rng } from '../../src/common/rng.js';
import type { DnsMetrics, UpstreamErrorReason } from './metrics.js';
import type { RateLimitedLog } from './ratelimit.js';
import type { Upstream } from './resolvconf.js';
import { isResponse, isTruncated, messageId, type Query, sameQuestion, withId } from './wire.js';

export interface ForwarderLimits {
  attemptTimeoutMs: number;
  /** Attempts in total, across upstreams in turn. */
  maxAttempts: number;
  maxInFlight: number;
  /** TCP answers larger than this are refused (a DNS message is at most 65535 bytes). */
  maxTcpResponseBytes: number;
}

export const DEFAULT_FORWARDER_LIMITS: ForwarderLimits = {
  attemptTimeoutMs: 1000,
  maxAttempts: 3,
  maxInFlight: 1024,
  maxTcpResponseBytes: 65535,
};

/**
 * Upstream query IDs must be unguessable (RFC 5452: an off-path attacker who
 * can predict them can forge answers), so by default they come from
 * node:crypto; tests may inject a SeededRng.
 */
export const cryptoIdRng: Rng = {
  next: () => randomInt(0x1_0000_0000) / 0x1_0000_0000,
  int: (bound) => randomInt(bound),
  intBetween: (min, max) => randomInt(min, max + 1),
  fork: () => cryptoIdRng,
};

export type ForwardResult =
  | { kind: 'answer'; bytes: Buffer }
  | { kind: 'servfail'; reason: UpstreamErrorReason };

interface Pending {
  upstreamId: number;
  queryBytes: Buffer;
  questionEnd: number;
  onReply: (reply: Buffer) => void;
}

class UpstreamChannel {
  private socket: dgram.Socket | undefined;
  readonly pending = new Map<number, Pending>();

  constructor(
    readonly upstream: Upstream,
    private readonly onStray: () => void,
  ) {}

  private open(): dgram.Socket {
    if (this.socket !== undefined) return this.socket;
    const socket = dgram.createSocket(this.upstream.family === 6 ? 'udp6' : 'udp4');
    socket.on('message', (msg, rinfo) => {
      // Replies from anywhere but the upstream are spoofing attempts or noise.
      if (rinfo.port !== this.upstream.port || rinfo.address !== this.upstream.address) return this.onStray();
      if (!isResponse(msg)) return this.onStray();
      const p = this.pending.get(messageId(msg));
      if (p === undefined || !sameQuestion(msg, p.queryBytes, p.questionEnd)) return this.onStray();
      p.onReply(msg);
    });
    socket.on('error', () => {
      // The socket is unusable; the next query opens a fresh one. Pending
      // queries run into their timeouts and move on to the next upstream.
      this.socket = undefined;
      socket.close();
    });
    this.socket = socket;
    return socket;
  }

  /** A random ID not in use on this socket (random IDs resist off-path spoofing, RFC 5452). */
  allocateId(rng: Rng): number | undefined {
    if (this.pending.size >= 0xffff) return undefined;
    for (;;) {
      const id = rng.int(0x10000);
      if (!this.pending.has(id)) return id;
    }
  }

  send(bytes: Buffer, onError: () => void): void {
    const socket = this.open();
    socket.send(bytes, this.upstream.port, this.upstream.address, (err) => {
      if (err) onError();
    });
  }

  close(): void {
    this.socket?.close();
    this.socket = undefined;
  }
}

export class Forwarder {
  private readonly channels: UpstreamChannel[];
  private inFlight = 0;
  /** Upstream to try first: the last one that answered. */
  private preferred = 0;

  constructor(
    upstreams: readonly Upstream[],
    private readonly clock: Clock,
    private readonly rng: Rng,
    private readonly metrics: DnsMetrics,
    private readonly log: RateLimitedLog,
    private readonly limits: ForwarderLimits = DEFAULT_FORWARDER_LIMITS,
  ) {
    this.channels = upstreams.map((u) => new UpstreamChannel(u, () => metrics.upstreamError('mismatch')));
  }

  get queriesInFlight(): number {
    return this.inFlight;
  }

  /** Forwards `queryBytes` (a parsed, valid query); resolves with the answer under the client's ID. */
  async forward(queryBytes: Buffer, query: Query): Promise<ForwardResult> {
    if (this.channels.length === 0) {
      this.metrics.upstreamError('no_upstream');
      this.log.warn('no_upstream', {}, 'no upstream resolver configured; answering SERVFAIL');
      return { kind: 'servfail', reason: 'no_upstream' };
    }
    if (this.inFlight >= this.limits.maxInFlight) {
      this.metrics.upstreamError('overload');
      this.log.warn('overload', { inFlight: this.inFlight }, 'too many forwarded queries in flight');
      return { kind: 'servfail', reason: 'overload' };
    }
    this.inFlight++;
    this.metrics.forward();
    try {
      let lastReason: UpstreamErrorReason = 'timeout';
      for (let attempt = 0; attempt < this.limits.maxAttempts; attempt++) {
        const index = (this.preferred + attempt) % this.channels.length;
        const channel = this.channels[index]!;
        const startMs = this.clock.nowMs();
        const outcome = await this.attemptUdp(channel, queryBytes, query);
        if (outcome.kind === 'reply') {
          let reply = outcome.reply;
          if (isTruncated(reply)) {
            const full = await this.exchangeTcp(channel.upstream, queryBytes, query).catch(() => undefined);
            if (full === undefined) this.metrics.upstreamError('tcp');
            else reply = full;
          }
          this.metrics.upstreamLatencyMs(this.clock.nowMs() - startMs);
          this.preferred = index;
          return { kind: 'answer', bytes: withId(reply, query.id) };
        }
        lastReason = outcome.reason;
        this.metrics.upstreamError(outcome.reason);
        this.log.warn(
          outcome.reason === 'timeout' ? 'upstream_timeout' : 'upstream_error',
          { upstream: channel.upstream.address, reason: outcome.reason },
          'upstream resolver did not answer; trying the next one',
        );
      }
      return { kind: 'servfail', reason: lastReason };
    } finally {
      this.inFlight--;
    }
  }

  private attemptUdp(
    channel: UpstreamChannel,
    queryBytes: Buffer,
    query: Query,
  ): Promise<{ kind: 'reply'; reply: Buffer } | { kind: 'failed'; reason: UpstreamErrorReason }> {
    const upstreamId = channel.allocateId(this.rng);
    if (upstreamId === undefined) return Promise.resolve({ kind: 'failed', reason: 'overload' });
    const outgoing = withId(queryBytes, upstreamId);
    return new Promise((resolve) => {
      let done = false;
      const finish = (
        result: { kind: 'reply'; reply: Buffer } | { kind: 'failed'; reason: UpstreamErrorReason },
      ): void => {
        if (done) return;
        done = true;
        cancelTimer();
        channel.pending.delete(upstreamId);
        resolve(result);
      };
      const cancelTimer = this.clock.setTimer(this.limits.attemptTimeoutMs, () =>
        finish({ kind: 'failed', reason: 'timeout' }),
      );
      channel.pending.set(upstreamId, {
        upstreamId,
        queryBytes: outgoing,
        questionEnd: query.questionEnd,
        onReply: (reply) => finish({ kind: 'reply', reply }),
      });
      channel.send(outgoing, () => finish({ kind: 'failed', reason: 'send' }));
    });
  }

  /** One query over a fresh TCP connection (RFC 7766 framing), bounded in time and size. */
  private exchangeTcp(upstream: Upstream, queryBytes: Buffer, query: Query): Promise<Buffer> {
    const tcpId = this.rng.int(0x10000);
    const outgoing = withId(queryBytes, tcpId);
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host: upstream.address, port: upstream.port });
      let received: Buffer = Buffer.alloc(0);
      const cancelTimer = this.clock.setTimer(this.limits.attemptTimeoutMs, () =>
        fail(new Error('tcp timeout')),
      );
      const fail = (err: Error): void => {
        cancelTimer();
        socket.destroy();
        reject(err);
      };
      socket.on('connect', () => {
        const frame = Buffer.allocUnsafe(2 + outgoing.length);
        frame.writeUInt16BE(outgoing.length, 0);
        outgoing.copy(frame, 2);
        socket.write(frame);
      });
      socket.on('data', (chunk) => {
        received = Buffer.concat([received, chunk]);
        if (received.length < 2) return;
        const length = received.readUInt16BE(0);
        if (length > this.limits.maxTcpResponseBytes) return fail(new Error('tcp answer too large'));
        if (received.length < 2 + length) return;
        const reply = received.subarray(2, 2 + length);
        if (
          !isResponse(reply) ||
          messageId(reply) !== tcpId ||
          !sameQuestion(reply, outgoing, query.questionEnd)
        )
          return fail(new Error('tcp answer does not match the query'));
        cancelTimer();
        socket.destroy();
        resolve(Buffer.from(reply));
      });
      socket.on('error', (err) => fail(err));
      socket.on('close', () => fail(new Error('tcp connection closed before the answer')));
    });
  }

  close(): void {
    for (const c of this.channels) c.close();
  }
}
