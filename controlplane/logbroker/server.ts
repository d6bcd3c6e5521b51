import * as grpc from '@grpc/grpc-js';
import {
  type ListenSubscriptionsRequest,
  type ListenSubscriptionsResponse,
  type LogBrokerServiceServer,
  LogBrokerServiceService,
  type LogContext,
  type LogsServiceServer,
  LogsServiceService,
  type PublishLogsRequest,
  type PublishLogsResponse,
  type SubscribeLogsRequest,
  type SubscribeLogsResponse,
} from '../../src/api/gen/meshd/v1/logs.js';
import { NodeState, type Task } from '../../src/api/gen/meshd/v1/objects.js';
import { type Clock, systemClock } from '../../src/common/clock.js';
import { errorMessage, MeshError } from '../../src/common/errors.js';
import { newId } from '../../src/common/ids.js';
import { type Logger, subsystemLogger } from '../../src/common/logger.js';
import { callerIdentity, servicePolicy } from '../../src/common/transport/authorization.js';
import { toServiceError } from '../controlapi/grpc-service.js';
import { resolveRef } from '../controlapi/resolve.js';
import type { StoreEvent, StoreView, WatchFilter } from '../store/types.js';
import {
  type BrokerEffect,
  type BrokerLimits,
  DEFAULT_BROKER_LIMITS,
  LogBrokerCore,
  type NodeTarget,
} from './broker-core.js';
import { validatePublishRequest, validateSubscribeRequest } from './validate.js';

/** Agents publish and listen with their node certificate; the broker checks the tasks are theirs. */
export const LOG_BROKER_POLICY = servicePolicy(LogBrokerServiceService, {
  listenSubscriptions: 'node',
  publishLogs: 'node',
});

/** On the mTLS listener, subscribing is for managers (a follower forwarding its local socket's call). */
export const LOGS_POLICY = servicePolicy(LogsServiceService, { subscribeLogs: 'manager' });

export interface LogBrokerStore extends StoreView {
  watch(filter: WatchFilter, fn: (event: StoreEvent) => void): () => void;
}

export interface LogBrokerOptions {
  /** The local replica: tasks, nodes and services of a subscription; nodes going DOWN. */
  store: LogBrokerStore;
  clock?: Clock;
  limits?: BrokerLimits;
  logger?: Logger;
}

interface Subscriber {
  serviceId: string;
  serviceName: string;
  call: grpc.ServerWritableStream<SubscribeLogsRequest, SubscribeLogsResponse>;
  contexts: Map<string, LogContext>;
  /** Resolvers of publishes waiting for their batch to reach the subscriber's transport. */
  waiting: Set<() => void>;
  ended: boolean;
}

/**
 * The shell around LogBrokerCore: gRPC streams, the store, one timer. Runs on
 * every manager; only the leader has listeners (agents listen where their
 * dispatcher session is), so a follower forwards subscriptions (forward.ts).
 * Memory is bounded: a publish answers only once its batch has been handed
 * to the subscriber's HTTP/2 stream, so a slow meshctl slows the agents down
 * (at most one batch per node and subscription is held here).
 */
export class LogBroker {
  private readonly core: LogBrokerCore;
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly listeners = new Map<
    string,
    grpc.ServerWritableStream<ListenSubscriptionsRequest, ListenSubscriptionsResponse>
  >();
  private readonly subscribers = new Map<string, Subscriber>();
  private cancelTimer: (() => void) | undefined;
  private cancelWatch: (() => void) | undefined;

  constructor(private readonly opts: LogBrokerOptions) {
    this.core = new LogBrokerCore(opts.limits ?? DEFAULT_BROKER_LIMITS);
    this.clock = opts.clock ?? systemClock;
    this.log = opts.logger ?? subsystemLogger('logbroker');
  }

  start(): void {
    if (this.cancelWatch !== undefined) return;
    this.cancelWatch = this.opts.store.watch({ kinds: ['node', 'task'] }, (e) => {
      if (e.type !== 'object') return;
      if (e.kind === 'task') {
        if (e.action !== 'delete' && e.object.nodeId !== '' && (e.previous?.nodeId ?? '') === '')
          this.taskPlaced(e.object);
        return;
      }
      if (e.kind !== 'node') return;
      const down = e.action === 'delete' || e.object.state === NodeState.NODE_STATE_DOWN;
      if (down && e.previous?.state !== NodeState.NODE_STATE_DOWN)
        this.apply(this.core.nodeLost(e.object.meta?.id ?? '', 'is down'));
    });
  }

  stop(): void {
    this.cancelWatch?.();
    this.cancelWatch = undefined;
    this.cancelTimer?.();
    this.cancelTimer = undefined;
    for (const [id, s] of this.subscribers) {
      this.subscribers.delete(id);
      this.finish(s, { code: grpc.status.UNAVAILABLE, details: 'the manager is stopping' });
    }
    for (const call of this.listeners.values()) if (!call.writableEnded) call.end();
    this.listeners.clear();
  }

  get subscriptionCount(): number {
    return this.core.subscriptionCount;
  }

  logsImplementation(): LogsServiceServer {
    return { subscribeLogs: (call) => this.subscribe(call) };
  }

  brokerImplementation(): LogBrokerServiceServer {
    return {
      listenSubscriptions: (call) => this.listen(call),
      publishLogs: (call, cb) => {
        this.publish(call).then(
          (res) => cb(null, res),
          (err: unknown) => cb(asServiceError(err)),
        );
      },
    };
  }

  private subscribe(call: grpc.ServerWritableStream<SubscribeLogsRequest, SubscribeLogsResponse>): void {
    const id = newId();
    try {
      validateSubscribeRequest(call.request);
      const { serviceId, serviceName, targets, contexts } = this.targetsOf(call.request.service);
      const subscriber: Subscriber = {
        serviceId,
        serviceName,
        call,
        contexts,
        waiting: new Set(),
        ended: false,
      };
      this.subscribers.set(id, subscriber);
      const gone = () => {
        if (this.subscribers.get(id) !== subscriber) return;
        this.subscribers.delete(id);
        this.release(subscriber);
        this.apply(this.core.cancel(id));
      };
      call.on('cancelled', gone);
      call.on('close', gone);
      this.apply(
        this.core.subscribe(
          { id, follow: call.request.follow, tail: call.request.tail, nodes: targets },
          this.clock.nowMs(),
        ),
      );
      this.log.debug({ id, service: call.request.service, nodes: targets.length }, 'log subscription');
    } catch (err) {
      this.subscribers.delete(id);
      call.emit('error', toServiceError(err));
    }
  }

  /** The service's tasks grouped by node (every task in the store, running or not: its log may remain). */
  private targetsOf(ref: string): {
    serviceId: string;
    serviceName: string;
    targets: NodeTarget[];
    contexts: Map<string, LogContext>;
  } {
    const store = this.opts.store;
    const service = resolveRef(store, 'service', ref, 'service');
    const serviceId = service.meta?.id ?? '';
    const contexts = new Map<string, LogContext>();
    const byNode = new Map<string, string[]>();
    for (const t of store.find('task', 'service', serviceId)) {
      const taskId = t.meta?.id ?? '';
      if (t.nodeId === '') continue;
      const node = store.get('node', t.nodeId);
      contexts.set(taskId, {
        serviceId,
        serviceName: service.spec?.name ?? serviceId,
        taskId,
        slot: t.slot,
        nodeId: t.nodeId,
        nodeName: node?.hostname || t.nodeId,
      });
      byNode.set(t.nodeId, [...(byNode.get(t.nodeId) ?? []), taskId]);
    }
    const targets = [...byNode].map(([nodeId, taskIds]) => {
      const node = store.get('node', nodeId);
      return {
        nodeId,
        nodeName: node?.hostname || nodeId,
        taskIds,
        down: node === undefined || node.state === NodeState.NODE_STATE_DOWN,
      };
    });
    return { serviceId, serviceName: service.spec?.name ?? serviceId, targets, contexts };
  }

  /** A following subscriber of the task's service also gets the new task's lines. */
  private taskPlaced(task: Task): void {
    const taskId = task.meta?.id ?? '';
    const nodeName = this.opts.store.get('node', task.nodeId)?.hostname || task.nodeId;
    for (const [id, s] of this.subscribers) {
      if (s.serviceId !== task.serviceId || s.contexts.has(taskId)) continue;
      s.contexts.set(taskId, {
        serviceId: s.serviceId,
        serviceName: s.serviceName,
        taskId,
        slot: task.slot,
        nodeId: task.nodeId,
        nodeName,
      });
      this.apply(this.core.addTask(id, task.nodeId, nodeName, taskId, this.clock.nowMs()));
    }
  }

  private listen(
    call: grpc.ServerWritableStream<ListenSubscriptionsRequest, ListenSubscriptionsResponse>,
  ): void {
    const who = callerIdentity(call);
    if (who === undefined) {
      call.emit(
        'error',
        serviceError(grpc.status.UNAUTHENTICATED, 'ListenSubscriptions: no node certificate'),
      );
      return;
    }
    const previous = this.listeners.get(who.nodeId);
    this.listeners.set(who.nodeId, call);
    if (previous !== undefined && !previous.writableEnded) previous.end();
    const gone = () => {
      if (this.listeners.get(who.nodeId) !== call) return;
      this.listeners.delete(who.nodeId);
      this.apply(this.core.nodeLost(who.nodeId, 'ended its log stream (meshd stopped or restarted?)'));
    };
    call.on('cancelled', gone);
    call.on('close', gone);
    call.on('error', gone);
    this.apply(this.core.listen(who.nodeId, this.clock.nowMs()));
  }

  private async publish(
    call: grpc.ServerUnaryCall<PublishLogsRequest, PublishLogsResponse>,
  ): Promise<PublishLogsResponse> {
    const who = callerIdentity(call);
    if (who === undefined)
      throw serviceError(grpc.status.UNAUTHENTICATED, 'PublishLogs: no node certificate');
    const req = call.request;
    validatePublishRequest(req);
    const decision = this.core.publish(
      who.nodeId,
      req.subscriptionId,
      [...new Set(req.lines.map((l) => l.taskId))],
      req.close,
    );
    if (decision.type === 'stop') return { stop: true };
    if (decision.type === 'refuse') {
      this.log.warn({ nodeId: who.nodeId, reason: decision.reason }, 'log publish refused');
      throw serviceError(grpc.status.PERMISSION_DENIED, `PublishLogs: ${decision.reason}`);
    }
    const subscriber = this.subscribers.get(req.subscriptionId);
    if (subscriber !== undefined && req.lines.length > 0)
      await this.write(subscriber, {
        messages: req.lines.map((l) => ({
          context: subscriber.contexts.get(l.taskId),
          stream: l.stream,
          data: l.data,
        })),
        warnings: [],
      });
    this.core.delivered(who.nodeId, req.subscriptionId, this.clock.nowMs());
    this.apply(decision.effects);
    return { stop: subscriber === undefined || subscriber.ended };
  }

  /** Resolves when the batch reached the subscriber's stream (or the subscriber is gone). */
  private write(s: Subscriber, msg: SubscribeLogsResponse): Promise<void> {
    if (s.ended || s.call.writableEnded) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        s.waiting.delete(done);
        resolve();
      };
      s.waiting.add(done);
      s.call.write(msg, done);
    });
  }

  private release(s: Subscriber): void {
    s.ended = true;
    for (const done of [...s.waiting]) done();
  }

  private finish(s: Subscriber, err?: Partial<grpc.ServiceError>): void {
    this.release(s);
    if (s.call.writableEnded) return;
    if (err === undefined) s.call.end();
    else s.call.emit('error', err);
  }

  private apply(effects: BrokerEffect[]): void {
    for (const e of effects) {
      switch (e.type) {
        case 'send': {
          const call = this.listeners.get(e.nodeId);
          if (call !== undefined && !call.writableEnded) call.write(e.message);
          break;
        }
        case 'warn': {
          const s = this.subscribers.get(e.subscriptionId);
          if (s !== undefined && !s.call.writableEnded) s.call.write({ messages: [], warnings: [e.text] });
          this.log.info({ subscription: e.subscriptionId, warning: e.text }, 'log subscription warning');
          break;
        }
        case 'end': {
          const s = this.subscribers.get(e.subscriptionId);
          this.subscribers.delete(e.subscriptionId);
          if (s !== undefined) this.finish(s);
          break;
        }
        default: {
          const never: never = e;
          throw new Error(`unknown broker effect ${JSON.stringify(never)}`);
        }
      }
    }
    this.armTimer();
  }

  private armTimer(): void {
    this.cancelTimer?.();
    this.cancelTimer = undefined;
    const next = this.core.nextDeadlineMs();
    if (next === undefined) return;
    this.cancelTimer = this.clock.setTimer(Math.max(0, next - this.clock.nowMs()), () => {
      this.cancelTimer = undefined;
      this.apply(this.core.tick(this.clock.nowMs()));
    });
  }
}

function serviceError(code: grpc.status, details: string): grpc.ServiceError {
  return Object.assign(new Error(details), { code, details, metadata: new grpc.Metadata() });
}

function asServiceError(err: unknown): Partial<grpc.ServiceError> {
  if (err instanceof Error && 'code' in err && typeof (err as { code: unknown }).code === 'number')
    return err as grpc.ServiceError;
  if (err instanceof MeshError) return toServiceError(err);
  return serviceError(grpc.status.INTERNAL, errorMessage(err));
}
