/**
 * Rate-limited logging: at most `burst` lines per key per window, then one
 * summary of how many were suppressed. A service that is down must not flood
 * the journal with one line per failed query (moby#47716).
 */
import type { Clock } from '../../src/common/clock.js';
import type { Logger } from '../../src/common/logger.js';

interface Window {
  startMs: number;
  emitted: number;
  suppressed: number;
}

export interface RateLimitOptions {
  windowMs: number;
  burst: number;
}

export const DEFAULT_LOG_RATE: RateLimitOptions = { windowMs: 10_000, burst: 5 };

/** The pure decision: may a line with this key be written now, and how many were held back before it. */
export class RateLimiter {
  private readonly windows = new Map<string, Window>();

  constructor(
    private readonly clock: Clock,
    private readonly options: RateLimitOptions = DEFAULT_LOG_RATE,
  ) {}

  /** Returns undefined to suppress, or the number of lines suppressed since the last one let through. */
  admit(key: string): number | undefined {
    const now = this.clock.nowMs();
    let w = this.windows.get(key);
    if (w === undefined || now - w.startMs >= this.options.windowMs) {
      const suppressedBefore = w?.suppressed ?? 0;
      w = { startMs: now, emitted: 1, suppressed: 0 };
      this.windows.set(key, w);
      return suppressedBefore;
    }
    if (w.emitted < this.options.burst) {
      w.emitted++;
      return 0;
    }
    w.suppressed++;
    return undefined;
  }
}

/** Keys are a fixed set chosen in code (never text from packets), so the map stays small. */
export type LogKey =
  | 'malformed'
  | 'handler_error'
  | 'upstream_timeout'
  | 'upstream_error'
  | 'no_upstream'
  | 'overload'
  | 'tcp_frame';

export class RateLimitedLog {
  private readonly limiter: RateLimiter;

  constructor(
    private readonly log: Logger,
    clock: Clock,
    options: RateLimitOptions = DEFAULT_LOG_RATE,
  ) {
    this.limiter = new RateLimiter(clock, options);
  }

  warn(key: LogKey, fields: Record<string, unknown>, message: string): void {
    const suppressed = this.limiter.admit(key);
    if (suppressed === undefined) return;
    if (suppressed > 0)
      this.log.warn({ ...fields, logKey: key, suppressed }, `${message} (${suppressed} similar suppressed)`);
    else this.log.warn({ ...fields, logKey: key }, message);
  }
}
