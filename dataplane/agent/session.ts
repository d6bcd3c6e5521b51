import * as grpc from '@grpc/grpc-js';
import {
  type AssignmentsResponse,
  DispatcherServiceClient,
  type SessionRequest,
  type SessionResponse,
  type TaskStatusUpdate,
} from '../../src/api/gen/meshd/v1/dispatcher.js';
import type { Clock } from '../../src/common/clock.js';
import { errorMessage, MeshError } from '../../src/common/errors.js';
import type { Logger } from '../../src/common/logger.js';
import type { Rng } from '../../src/common/rng.js';
import { SECURE_CHANNEL_OPTIONS } from '../../src/common/transport/credentials.js';

export interface AgentSessionOptions {
  /** Manager addresses (`host:port`) to try in turn; the managers' own list is added as sessions open. */
  managers: readonly string[];
  /** mTLS client credentials (createChannelCredentials); called per connection, so renewals apply. */
  credentials: () => grpc.ChannelCredentials;
  /** What the node tells the manager when a session opens. */
  describe: () => SessionRequest;
  clock: Clock;
  rng: Rng;
  log: Logger;
  /** Handles one assignments message; a throw ends the session (the next one starts COMPLETE). */
  onAssignments: (msg: AssignmentsResponse) => Promise<void>;
  onConnected?: (info: { manager: string; nodeId: string; sessionId: string }) => void;
  onDisconnected?: (why: string) => void;
  /** Reconnect backoff: doubles from `minMs` to `maxMs` while every manager fails. */
  reconnectMinMs?: number;
  reconnectMaxMs?: number;
  /** How long to wait for a manager to open a session. */
  connectTimeoutMs?: number;
}

interface Live {
  manager: string;
  client: DispatcherServiceClient;
  sessionId: string;
  end: (why: string) => void;
}

/**
 * The worker's side of one dispatcher session at a time, with failover: a
 * session that ends for any reason (manager gone, heartbeat refused, leader
 * changed) is reopened on the next manager after a bounded, jittered backoff.
 */
export class AgentSession {
  private readonly managers: string[];
  private live: Live | undefined;
  /** A leader a follower named: tried next, at once. */
  private leaderHint: string | undefined;
  private stopped = true;
  private cancelSleep: (() => void) | undefined;
  private wake: (() => void) | undefined;
  private loop: Promise<void> | undefined;

  constructor(private readonly opts: AgentSessionOptions) {
    if (opts.managers.length === 0)
      throw new MeshError(
        'INVALID_ARGUMENT',
        'agent: managers must list at least one manager address (host:port)',
      );
    this.managers = [...new Set(opts.managers)];
  }

  get connected(): { manager: string; sessionId: string } | undefined {
    return this.live === undefined
      ? undefined
      : { manager: this.live.manager, sessionId: this.live.sessionId };
  }

  get knownManagers(): readonly string[] {
    return this.managers;
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.cancelSleep?.();
    this.wake?.();
    this.live?.end('agent stopping');
    await this.loop;
  }

  /** Sends status reports on the current session; rejects when there is none or the call fails. */
  reportStatus(updates: TaskStatusUpdate[]): Promise<void> {
    const live = this.live;
    if (live === undefined) return Promise.reject(new MeshError('NOT_CONNECTED', 'no dispatcher session'));
    return new Promise((resolve, reject) =>
      live.client.updateTaskStatus(
        { sessionId: live.sessionId, updates },
        new grpc.Metadata(),
        { deadline: Date.now() + 10_000 },
        (err) => (err ? reject(err) : resolve()),
      ),
    );
  }

  private async run(): Promise<void> {
    let next = 0;
    let failures = 0;
    while (!this.stopped) {
      const hinted = this.leaderHint;
      this.leaderHint = undefined;
      const manager = hinted ?? this.managers[next % this.managers.length]!;
      const opened = await this.runOne(manager).catch((err: unknown) => {
        this.opts.log.info({ manager, err: errorMessage(err) }, 'dispatcher session failed');
        return false;
      });
      if (this.stopped) break;
      failures = opened ? 1 : failures + 1;
      if (hinted === undefined) next++;
      if (this.leaderHint !== undefined && !opened && hinted === undefined) continue;
      // The first retry goes to the next manager almost at once; while every
      // manager fails, the delay doubles up to the bound (with jitter, so a
      // cluster of agents does not reconnect in lockstep after a leader change).
      const minMs = this.opts.reconnectMinMs ?? 100;
      const maxMs = this.opts.reconnectMaxMs ?? 5000;
      const base = Math.min(maxMs, minMs * 2 ** Math.min(16, Math.max(0, failures - 1)));
      await this.sleep(Math.round(base * (0.5 + 0.5 * this.opts.rng.next())));
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      this.wake = resolve;
      this.cancelSleep = this.opts.clock.setTimer(ms, resolve);
    });
  }

  /** One session on one manager; resolves when it ends, true if it was opened. */
  private runOne(manager: string): Promise<boolean> {
    const { opts } = this;
    const client = new DispatcherServiceClient(manager, opts.credentials(), SECURE_CHANNEL_OPTIONS);
    return new Promise<boolean>((resolve) => {
      let opened = false;
      let ended = false;
      let cancelHeartbeat: (() => void) | undefined;
      let assignments: grpc.ClientReadableStream<AssignmentsResponse> | undefined;
      const session = client.session(opts.describe());
      const cancelConnect = opts.clock.setTimer(opts.connectTimeoutMs ?? 5000, () =>
        end(`no session from ${manager} within ${opts.connectTimeoutMs ?? 5000} ms`),
      );
      const end = (why: string) => {
        if (ended) return;
        ended = true;
        cancelConnect();
        cancelHeartbeat?.();
        if (this.live?.client === client) this.live = undefined;
        session.cancel();
        assignments?.cancel();
        client.close();
        if (opened) {
          opts.log.info({ manager, why }, 'dispatcher session ended');
          opts.onDisconnected?.(why);
        }
        resolve(opened);
      };
      session.on('error', (err: grpc.ServiceError) => {
        // A follower names the leader (controlplane/dispatcher LEADER_METADATA_KEY).
        const leader = err.metadata?.get('meshd-leader')[0];
        if (typeof leader === 'string' && leader !== '' && leader !== manager) {
          if (!this.managers.includes(leader)) this.managers.push(leader);
          this.leaderHint = leader;
        }
        end(err.details || err.message);
      });
      session.on('end', () => end('the manager closed the session'));
      session.on('data', (msg: SessionResponse) => {
        for (const m of msg.managers)
          if (m.address !== '' && !this.managers.includes(m.address)) this.managers.push(m.address);
        if (opened) return;
        opened = true;
        cancelConnect();
        this.live = { manager, client, sessionId: msg.sessionId, end };
        opts.onConnected?.({ manager, nodeId: msg.nodeId, sessionId: msg.sessionId });
        const beat = (periodMs: number) => {
          cancelHeartbeat = opts.clock.setTimer(periodMs, () =>
            client.heartbeat(
              { sessionId: msg.sessionId },
              new grpc.Metadata(),
              { deadline: Date.now() + Math.max(1000, periodMs * 2) },
              (err, res) => {
                if (ended) return;
                if (err) end(`heartbeat refused: ${err.details || err.message}`);
                else beat(Number(res.periodMs) || periodMs);
              },
            ),
          );
        };
        beat(Number(msg.heartbeatPeriodMs) || 1000);
        assignments = client.assignments({ sessionId: msg.sessionId });
        // One message at a time; while one is handled the stream is paused, so
        // HTTP/2 flow control pushes back to the manager, which closes a
        // session that falls too far behind (bounded memory on both sides).
        const stream = assignments;
        stream.on('data', (a: AssignmentsResponse) => {
          if (ended) return;
          stream.pause();
          opts.onAssignments(a).then(
            () => stream.resume(),
            (err: unknown) => end(`assignments: ${errorMessage(err)}`),
          );
        });
        assignments.on('error', (err: grpc.ServiceError) =>
          end(`assignments stream: ${err.details || err.message}`),
        );
        assignments.on('end', () => end('the manager closed the assignments stream'));
      });
    });
  }
}
