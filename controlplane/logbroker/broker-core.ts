import type { ListenSubscriptionsResponse } from '../../src/api/gen/meshd/v1/logs.js';
import { MeshError } from '../../src/common/errors.js';

/** One node a subscription needs lines from: its tasks of the service, from the store. */
export interface NodeTarget {
  nodeId: string;
  /** Hostname, for warnings people read. */
  nodeName: string;
  taskIds: readonly string[];
  /** The store says DOWN: warned at once instead of waited for. */
  down: boolean;
}

export interface SubscriptionSpec {
  id: string;
  follow: boolean;
  tail: number | undefined;
  nodes: readonly NodeTarget[];
}

export interface BrokerLimits {
  /**
   * A node must answer (publish, even an empty batch) within this after it is
   * asked, and, when not following, keep publishing at least this often until
   * it closes; otherwise it is named in a warning and the rest goes on.
   */
  answerTimeoutMs: number;
  maxSubscriptions: number;
}

export const DEFAULT_BROKER_LIMITS: BrokerLimits = { answerTimeoutMs: 5000, maxSubscriptions: 64 };

export type BrokerEffect =
  | { type: 'send'; nodeId: string; message: ListenSubscriptionsResponse }
  | { type: 'warn'; subscriptionId: string; text: string }
  | { type: 'end'; subscriptionId: string };

export type PublishDecision =
  | { type: 'accept'; effects: BrokerEffect[] }
  /** The node may not publish this (not its task, not its subscription). */
  | { type: 'refuse'; reason: string }
  /** The subscription is over: the node stops publishing for it. */
  | { type: 'stop' };

/**
 * waiting: asked (or to be asked when it listens), no answer yet;
 * streaming: answered; done: closed (sent everything); failed: warned about.
 */
type NodePhase = 'waiting' | 'streaming' | 'done' | 'failed';

interface NodeState {
  target: NodeTarget;
  taskIds: Set<string>;
  phase: NodePhase;
  deadlineMs: number | undefined;
}

interface Subscription {
  spec: SubscriptionSpec;
  nodes: Map<string, NodeState>;
}

/**
 * The log broker's decisions, without I/O or timers (the shell in server.ts
 * feeds it events and the time, and carries out the effects it returns).
 * Swarm's rule: managers never dial nodes; a node is asked over the stream it
 * opened (`listen`), and a node that does not answer within a bound is named
 * in a warning instead of holding the subscriber for ever.
 */
export class LogBrokerCore {
  private readonly subscriptions = new Map<string, Subscription>();
  private readonly listening = new Set<string>();

  constructor(private readonly limits: BrokerLimits = DEFAULT_BROKER_LIMITS) {}

  get subscriptionCount(): number {
    return this.subscriptions.size;
  }

  subscribe(spec: SubscriptionSpec, nowMs: number): BrokerEffect[] {
    if (this.subscriptions.has(spec.id))
      throw new MeshError('ALREADY_EXISTS', `log subscription ${spec.id} already exists`);
    if (this.subscriptions.size >= this.limits.maxSubscriptions)
      throw new MeshError(
        'TOO_MANY_SUBSCRIPTIONS',
        `this manager already serves ${this.limits.maxSubscriptions} log subscriptions; end one (a --follow) or retry later`,
      );
    const sub: Subscription = { spec, nodes: new Map() };
    this.subscriptions.set(spec.id, sub);
    const effects: BrokerEffect[] = [];
    for (const target of spec.nodes) {
      const node: NodeState = {
        target,
        taskIds: new Set(target.taskIds),
        phase: 'waiting',
        deadlineMs: nowMs + this.limits.answerTimeoutMs,
      };
      sub.nodes.set(target.nodeId, node);
      if (target.down) this.fail(sub, node, 'is down', effects);
      else if (this.listening.has(target.nodeId)) effects.push(this.ask(sub, node, spec.tail));
    }
    this.endIfComplete(sub, effects);
    return effects;
  }

  /** A node opened its subscriptions stream: it is asked for every subscription waiting on it. */
  listen(nodeId: string, nowMs: number): BrokerEffect[] {
    this.listening.add(nodeId);
    const effects: BrokerEffect[] = [];
    for (const sub of this.subscriptions.values()) {
      const node = sub.nodes.get(nodeId);
      if (node === undefined) continue;
      if (node.phase === 'waiting') effects.push(this.ask(sub, node, sub.spec.tail));
      else if (node.phase === 'failed' && sub.spec.follow) {
        // A node back after its stream broke resumes following from now on:
        // asking for its tail again would print lines the subscriber has.
        node.phase = 'waiting';
        node.deadlineMs = nowMs + this.limits.answerTimeoutMs;
        effects.push(this.ask(sub, node, 0));
      }
    }
    return effects;
  }

  /** A node's stream ended or the store marked it DOWN: whatever waited on it gets a warning. */
  nodeLost(nodeId: string, why: string): BrokerEffect[] {
    this.listening.delete(nodeId);
    const effects: BrokerEffect[] = [];
    for (const sub of [...this.subscriptions.values()]) {
      const node = sub.nodes.get(nodeId);
      if (node === undefined || node.phase === 'done' || node.phase === 'failed') continue;
      this.fail(sub, node, why, effects);
      this.endIfComplete(sub, effects);
    }
    return effects;
  }

  /**
   * A task of a following subscription's service was placed on a node after
   * it started (a scale-up, a replacement): that node is asked for the task
   * too, from its first line. Subscriptions that do not follow ignore it.
   */
  addTask(
    subscriptionId: string,
    nodeId: string,
    nodeName: string,
    taskId: string,
    nowMs: number,
  ): BrokerEffect[] {
    const sub = this.subscriptions.get(subscriptionId);
    if (sub === undefined || !sub.spec.follow) return [];
    const node = sub.nodes.get(nodeId);
    if (node === undefined) {
      const added: NodeState = {
        target: { nodeId, nodeName, taskIds: [taskId], down: false },
        taskIds: new Set([taskId]),
        phase: 'waiting',
        deadlineMs: nowMs + this.limits.answerTimeoutMs,
      };
      sub.nodes.set(nodeId, added);
      return this.listening.has(nodeId) ? [this.ask(sub, added, undefined)] : [];
    }
    if (node.taskIds.has(taskId)) return [];
    node.taskIds.add(taskId);
    // A node that is not streaming gets the whole list when it is asked (again) on listen.
    if (node.phase !== 'streaming' && node.phase !== 'waiting') return [];
    if (!this.listening.has(nodeId)) return [];
    return [
      {
        type: 'send',
        nodeId,
        message: { id: subscriptionId, taskIds: [taskId], follow: true, tail: undefined, close: false },
      },
    ];
  }

  /** Checks that `nodeId` may publish lines of `taskIds` for the subscription, and records its progress. */
  publish(
    nodeId: string,
    subscriptionId: string,
    taskIds: readonly string[],
    close: boolean,
  ): PublishDecision {
    const sub = this.subscriptions.get(subscriptionId);
    if (sub === undefined) return { type: 'stop' };
    const node = sub.nodes.get(nodeId);
    if (node === undefined)
      return { type: 'refuse', reason: `node ${nodeId} was not asked for subscription ${subscriptionId}` };
    for (const taskId of taskIds)
      if (!node.taskIds.has(taskId))
        return {
          type: 'refuse',
          reason: `task ${taskId} is not a task of node ${nodeId} in this subscription`,
        };
    if (node.phase === 'done') return { type: 'stop' };
    const effects: BrokerEffect[] = [];
    // A node already named in a warning may still send late lines; they are
    // better shown than dropped, and its phase moves on like any other.
    node.phase = close ? 'done' : 'streaming';
    // No deadline while the batch waits for the subscriber: a slow reader is
    // not a silent node. `delivered` starts the next one.
    node.deadlineMs = undefined;
    this.endIfComplete(sub, effects);
    return { type: 'accept', effects };
  }

  /** The node's accepted batch reached the subscriber: without follow, its next one is due within the bound. */
  delivered(nodeId: string, subscriptionId: string, nowMs: number): void {
    const sub = this.subscriptions.get(subscriptionId);
    const node = sub?.nodes.get(nodeId);
    if (sub === undefined || node === undefined || sub.spec.follow || node.phase !== 'streaming') return;
    node.deadlineMs = nowMs + this.limits.answerTimeoutMs;
  }

  /** The subscriber went away: the nodes still sending are told to stop. */
  cancel(subscriptionId: string): BrokerEffect[] {
    const sub = this.subscriptions.get(subscriptionId);
    if (sub === undefined) return [];
    this.subscriptions.delete(subscriptionId);
    const effects: BrokerEffect[] = [];
    for (const node of sub.nodes.values())
      if ((node.phase === 'waiting' || node.phase === 'streaming') && this.listening.has(node.target.nodeId))
        effects.push({
          type: 'send',
          nodeId: node.target.nodeId,
          message: { id: subscriptionId, taskIds: [], follow: false, tail: undefined, close: true },
        });
    return effects;
  }

  /** Nodes past their answer deadline are named in a warning. */
  tick(nowMs: number): BrokerEffect[] {
    const effects: BrokerEffect[] = [];
    for (const sub of [...this.subscriptions.values()]) {
      for (const node of sub.nodes.values()) {
        if (node.deadlineMs === undefined || node.deadlineMs > nowMs) continue;
        if (node.phase !== 'waiting' && node.phase !== 'streaming') continue;
        const seconds = this.limits.answerTimeoutMs / 1000;
        this.fail(
          sub,
          node,
          node.phase === 'waiting'
            ? `did not answer within ${seconds} s`
            : `stopped sending for ${seconds} s`,
          effects,
        );
      }
      this.endIfComplete(sub, effects);
    }
    return effects;
  }

  /** When `tick` next has something to do. */
  nextDeadlineMs(): number | undefined {
    let next: number | undefined;
    for (const sub of this.subscriptions.values())
      for (const node of sub.nodes.values())
        if (
          node.deadlineMs !== undefined &&
          (node.phase === 'waiting' || node.phase === 'streaming') &&
          (next === undefined || node.deadlineMs < next)
        )
          next = node.deadlineMs;
    return next;
  }

  private ask(sub: Subscription, node: NodeState, tail: number | undefined): BrokerEffect {
    return {
      type: 'send',
      nodeId: node.target.nodeId,
      message: {
        id: sub.spec.id,
        taskIds: [...node.taskIds],
        follow: sub.spec.follow,
        tail,
        close: false,
      },
    };
  }

  private fail(sub: Subscription, node: NodeState, why: string, effects: BrokerEffect[]): void {
    node.phase = 'failed';
    node.deadlineMs = undefined;
    const n = node.taskIds.size;
    effects.push({
      type: 'warn',
      subscriptionId: sub.spec.id,
      text: `node ${node.target.nodeName} (${node.target.nodeId.slice(0, 12)}) ${why}: logs of its ${n} task${n === 1 ? '' : 's'} are missing`,
    });
  }

  private endIfComplete(sub: Subscription, effects: BrokerEffect[]): void {
    if (sub.spec.follow || !this.subscriptions.has(sub.spec.id)) return;
    for (const node of sub.nodes.values()) if (node.phase === 'waiting' || node.phase === 'streaming') return;
    this.subscriptions.delete(sub.spec.id);
    effects.push({ type: 'end', subscriptionId: sub.spec.id });
  }
}
