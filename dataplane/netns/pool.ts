import { randomInt } from 'node:crypto';
import { type Clock, systemClock } from '../../src/common/clock.js';
import { type Rng, SeededRng } from '../../src/common/rng.js';
import {
  DEFAULT_HELPER_START_POLICY,
  type HelperStartPolicy,
  helperRetryDelayMs,
  helperStartTimeoutMs,
} from './backoff.js';
import { NetnsHelper } from './helper.js';
import { netnsIdentity } from './netns.js';

/** What the pool needs of a helper (NetnsHelper; a fake in the unit tests of the pool's rules). */
export interface PooledHelper {
  readonly alive: boolean;
  stop(): Promise<void>;
}

export interface HelperPoolOptions<H extends PooledHelper> {
  /** Starts a helper in `netns`, ready within `startTimeoutMs` or rejected. */
  start: (netns: string, startTimeoutMs: number) => Promise<H>;
  /** Which namespace the name stands for now (device:inode); undefined when there is none. */
  identify?: (netns: string) => string | undefined;
  clock?: Clock;
  rng?: Rng;
  policy?: HelperStartPolicy;
}

interface Entry<H> {
  helper: Promise<H>;
  /** The namespace (identity) the helper was started in. */
  identity: string | undefined;
}

interface Failures {
  count: number;
  identity: string | undefined;
  notBeforeMs: number;
}

/**
 * One long-lived helper per namespace, started on first use (see README.md for
 * the cost). On each use the helper is checked: one that died, or that runs in
 * a namespace since replaced under the same name, is replaced. A failed start
 * is retried on a later use after a jittered, growing delay and with a longer
 * start timeout (see backoff.ts).
 */
export class HelperPool<H extends PooledHelper> {
  private readonly entries = new Map<string, Entry<H>>();
  private readonly failures = new Map<string, Failures>();
  private readonly clock: Clock;
  private readonly rng: Rng;
  private readonly policy: HelperStartPolicy;
  private readonly identify: (netns: string) => string | undefined;

  constructor(private readonly options: HelperPoolOptions<H>) {
    this.clock = options.clock ?? systemClock;
    this.rng = options.rng ?? new SeededRng(randomInt(2 ** 32));
    this.policy = options.policy ?? DEFAULT_HELPER_START_POLICY;
    this.identify = options.identify ?? netnsIdentity;
  }

  async get(netns: string): Promise<H> {
    const identity = this.identify(netns);
    const cached = this.entries.get(netns);
    if (cached !== undefined) {
      const helper = await cached.helper.catch(() => null);
      if (helper?.alive === true && cached.identity === identity) return helper;
      // Another caller may have replaced it meanwhile; only drop the one we saw.
      if (this.entries.get(netns) !== cached) return this.get(netns);
      this.entries.delete(netns);
      // Its namespace was replaced: it would act, unseen, in the old one its process holds.
      if (helper?.alive === true) void helper.stop().catch(() => {});
    }
    const started = this.startAfterBackoff(netns, identity);
    const entry = { helper: started, identity };
    // A failed start must not be cached: the next use retries (after the backoff).
    started.catch(() => {
      if (this.entries.get(netns) === entry) this.entries.delete(netns);
    });
    this.entries.set(netns, entry);
    return started;
  }

  /** Consecutive failed starts in `netns` (0 after a success, a stop, or a replaced namespace). */
  failedStarts(netns: string): number {
    return this.failures.get(netns)?.count ?? 0;
  }

  private async startAfterBackoff(netns: string, identity: string | undefined): Promise<H> {
    let failed = this.failures.get(netns);
    // A namespace made anew starts with a clean record.
    if (failed !== undefined && failed.identity !== identity) {
      this.failures.delete(netns);
      failed = undefined;
    }
    const waitMs = failed === undefined ? 0 : failed.notBeforeMs - this.clock.nowMs();
    if (waitMs > 0) await new Promise<void>((resolve) => this.clock.setTimer(waitMs, resolve));
    const count = failed?.count ?? 0;
    try {
      const helper = await this.options.start(netns, helperStartTimeoutMs(count, this.policy));
      this.failures.delete(netns);
      return helper;
    } catch (err) {
      this.failures.set(netns, {
        count: count + 1,
        identity,
        notBeforeMs: this.clock.nowMs() + helperRetryDelayMs(count + 1, this.policy, this.rng),
      });
      throw err;
    }
  }

  async stop(netns: string): Promise<void> {
    const entry = this.entries.get(netns);
    this.entries.delete(netns);
    this.failures.delete(netns);
    if (entry !== undefined) await (await entry.helper.catch(() => null))?.stop();
  }

  async stopAll(): Promise<void> {
    for (const netns of [...this.entries.keys()]) await this.stop(netns);
  }
}

/** The pool of NetnsHelpers the overlay and sandbox programmers share. */
export class NetnsHelperPool extends HelperPool<NetnsHelper> {
  /** `command`: how helpers start (see NetnsHelper.start); default node + tsx. */
  constructor(command?: string[], options: Omit<HelperPoolOptions<NetnsHelper>, 'start'> = {}) {
    super({
      ...options,
      start: (netns, startTimeoutMs) => NetnsHelper.start(netns, command, startTimeoutMs),
    });
  }
}
