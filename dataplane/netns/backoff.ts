import type { Rng } from '../../src/common/rng.js';

/**
 * How a namespace helper that failed to start is retried. Under CPU
 * saturation (2 cores, a loaded VM lab) a start can take longer than any fixed
 * timeout: killing it and starting again at once wasted the work done and
 * never got a helper up. So each retry waits longer (bounded exponential,
 * jittered so helpers of many namespaces do not restart in step) and is
 * given a longer start timeout.
 */
export interface HelperStartPolicy {
  /** Wait before the first retry; doubles per consecutive failure. */
  baseRetryDelayMs: number;
  maxRetryDelayMs: number;
  /** Start timeout of a first attempt; doubles per consecutive failure. */
  baseStartTimeoutMs: number;
  maxStartTimeoutMs: number;
}

export const DEFAULT_HELPER_START_POLICY: HelperStartPolicy = {
  baseRetryDelayMs: 500,
  maxRetryDelayMs: 30_000,
  // Node starts in ~1 s on a host, tens of seconds in an emulated VM under load.
  baseStartTimeoutMs: 60_000,
  maxStartTimeoutMs: 240_000,
};

/** Start timeout after `failures` consecutive failed starts. */
export function helperStartTimeoutMs(failures: number, policy: HelperStartPolicy): number {
  return Math.min(policy.maxStartTimeoutMs, policy.baseStartTimeoutMs * 2 ** Math.min(failures, 30));
}

/**
 * Wait before the next start after `failures` consecutive failed starts (0:
 * none): half of the doubled delay fixed, the other half uniformly jittered.
 */
export function helperRetryDelayMs(failures: number, policy: HelperStartPolicy, rng: Rng): number {
  if (failures <= 0) return 0;
  const capped = Math.min(policy.maxRetryDelayMs, policy.baseRetryDelayMs * 2 ** Math.min(failures - 1, 30));
  const half = Math.floor(capped / 2);
  return half + rng.int(capped - half + 1);
}
