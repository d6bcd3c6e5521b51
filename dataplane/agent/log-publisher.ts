import * as grpc from '@grpc/grpc-js';
import {
  type ListenSubscriptionsResponse,
  LogBrokerServiceClient,
  type LogLine,
  LogStream,
  type PublishLogsResponse,
} from '../../src/api/gen/meshd/v1/logs.js';
import type { Clock } from '../../src/common/clock.js';
import { errorMessage } from '../../src/common/errors.js';
import type { Logger } from '../../src/common/logger.js';
import { SECURE_CHANNEL_OPTIONS } from '../../src/common/transport/credentials.js';
import { LogFileFollower, type LogStreamName, readTail, taskLogPath } from '../executor/log-reader.js';

export interface LogPublisherOptions {
  logDir: string;
  credentials: () => grpc.ChannelCredentials;
  clock: Clock;
  log: Logger;
  /** How often a followed file is checked for new lines. */
  followPollMs?: number;
}

/** One PublishLogs request carries at most this (the broker refuses more: controlplane/logbroker/validate.ts). */
const MAX_BATCH_LINES = 500;
const MAX_BATCH_BYTES = 512 * 1024;
const PUBLISH_TIMEOUT_MS = 60_000;
/** Subscriptions served at once; the broker bounds its own side too. */
const MAX_RUNNING = 64;

const STREAMS: [LogStreamName, LogStream][] = [
  ['stdout', LogStream.LOG_STREAM_STDOUT],
  ['stderr', LogStream.LOG_STREAM_STDERR],
];

interface Followed {
  taskId: string;
  stream: LogStream;
  follower: LogFileFollower;
}

interface Running {
  stopped: boolean;
  wake: (() => void) | undefined;
  /** Files followed; a following subscription's later message adds new tasks here. */
  followers: Followed[];
}

/**
 * The node's side of `service logs`: while the agent has a dispatcher
 * session it keeps a ListenSubscriptions stream open to the same manager
 * (managers never dial nodes), and for each subscription publishes the
 * asked tasks' lines from the executor's log files in bounded batches, one
 * request at a time (the broker answers once the subscriber took the batch,
 * so a slow reader slows this down instead of filling memory).
 */
export class LogPublisher {
  private client: LogBrokerServiceClient | undefined;
  private stream: grpc.ClientReadableStream<ListenSubscriptionsResponse> | undefined;
  private readonly running = new Map<string, Running>();

  constructor(private readonly opts: LogPublisherOptions) {}

  connect(manager: string, sessionId: string): void {
    this.disconnect();
    const client = new LogBrokerServiceClient(manager, this.opts.credentials(), SECURE_CHANNEL_OPTIONS);
    const stream = client.listenSubscriptions({ sessionId });
    this.client = client;
    this.stream = stream;
    stream.on('data', (msg: ListenSubscriptionsResponse) => this.onSubscription(client, msg));
    stream.on('error', (err: grpc.ServiceError) => {
      if (err.code !== grpc.status.CANCELLED)
        this.opts.log.info({ manager, err: err.details || err.message }, 'log subscriptions stream ended');
      if (this.client === client) this.disconnect();
    });
    stream.on('end', () => {
      if (this.client === client) this.disconnect();
    });
  }

  /** The session ended: every subscription stops (the broker warns its subscribers). */
  disconnect(): void {
    for (const r of this.running.values()) this.halt(r);
    this.running.clear();
    this.stream?.cancel();
    this.client?.close();
    this.stream = undefined;
    this.client = undefined;
  }

  get activeSubscriptions(): number {
    return this.running.size;
  }

  private halt(r: Running): void {
    r.stopped = true;
    r.wake?.();
  }

  private onSubscription(client: LogBrokerServiceClient, msg: ListenSubscriptionsResponse): void {
    const existing = this.running.get(msg.id);
    if (msg.close) {
      if (existing !== undefined) this.halt(existing);
      this.running.delete(msg.id);
      return;
    }
    if (existing !== undefined) {
      // A task placed on this node after the subscription started: followed from its first line.
      if (msg.follow)
        for (const taskId of msg.taskIds)
          if (!existing.followers.some((f) => f.taskId === taskId))
            for (const [name, stream] of STREAMS)
              existing.followers.push({
                taskId,
                stream,
                follower: new LogFileFollower(taskLogPath(this.opts.logDir, taskId, name), 0),
              });
      return;
    }
    if (this.running.size >= MAX_RUNNING) return;
    const r: Running = { stopped: false, wake: undefined, followers: [] };
    this.running.set(msg.id, r);
    this.serve(client, msg, r)
      .catch((err: unknown) =>
        this.opts.log.info({ subscription: msg.id, err: errorMessage(err) }, 'log subscription stopped'),
      )
      .finally(() => {
        if (this.running.get(msg.id) === r) this.running.delete(msg.id);
      });
  }

  private async serve(
    client: LogBrokerServiceClient,
    msg: ListenSubscriptionsResponse,
    r: Running,
  ): Promise<void> {
    const followers = r.followers;
    let lines: LogLine[] = [];
    for (const taskId of msg.taskIds)
      for (const [name, stream] of STREAMS) {
        const path = taskLogPath(this.opts.logDir, taskId, name);
        const tail = readTail(path, msg.tail);
        for (const data of tail.lines) lines.push({ taskId, stream, data });
        if (msg.follow)
          followers.push({ taskId, stream, follower: new LogFileFollower(path, tail.followFrom) });
      }
    // The first request answers the broker even when there is nothing to send.
    if (!(await this.publishAll(client, msg.id, lines, !msg.follow, r))) return;
    if (!msg.follow) return;
    const pollMs = this.opts.followPollMs ?? 250;
    while (!r.stopped) {
      await new Promise<void>((resolve) => {
        const cancel = this.opts.clock.setTimer(pollMs, () => {
          r.wake = undefined;
          resolve();
        });
        r.wake = () => {
          cancel();
          resolve();
        };
      });
      if (r.stopped) return;
      lines = [];
      for (const f of followers)
        for (const data of f.follower.poll()) lines.push({ taskId: f.taskId, stream: f.stream, data });
      if (lines.length > 0 && !(await this.publishAll(client, msg.id, lines, false, r))) return;
    }
  }

  /** Sends `lines` in bounded batches (at least one request); false when the broker said stop. */
  private async publishAll(
    client: LogBrokerServiceClient,
    subscriptionId: string,
    lines: LogLine[],
    close: boolean,
    r: Running,
  ): Promise<boolean> {
    let i = 0;
    do {
      let bytes = 0;
      const batch: LogLine[] = [];
      while (i < lines.length && batch.length < MAX_BATCH_LINES) {
        const line = lines[i]!;
        if (batch.length > 0 && bytes + line.data.length > MAX_BATCH_BYTES) break;
        batch.push(line);
        bytes += line.data.length;
        i++;
      }
      if (r.stopped) return false;
      const res = await this.publishOne(client, {
        subscriptionId,
        lines: batch,
        close: close && i >= lines.length,
      });
      if (res.stop) return false;
    } while (i < lines.length);
    return true;
  }

  private publishOne(
    client: LogBrokerServiceClient,
    req: { subscriptionId: string; lines: LogLine[]; close: boolean },
  ): Promise<PublishLogsResponse> {
    return new Promise((resolve, reject) =>
      client.publishLogs(
        req,
        new grpc.Metadata(),
        { deadline: Date.now() + PUBLISH_TIMEOUT_MS },
        (err, res) => (err === null ? resolve(res) : reject(err)),
      ),
    );
  }
}
