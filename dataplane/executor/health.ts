import type { HealthCheckSpec, HealthStatus } from './types.js';

/**
 * The health-check decision, pure: the same rules users know from Docker.
 * - status starts as `starting`;
 * - one passing probe makes it `healthy` (also during the start period);
 * - a failing probe during the start period does not count (slow starters are
 *   not killed for booting);
 * - `retries` consecutive failures after it make it `unhealthy`.
 */
export interface HealthState {
  status: HealthStatus;
  failingStreak: number;
  startedAtMs: number;
}

export function initialHealth(startedAtMs: number): HealthState {
  return { status: 'starting', failingStreak: 0, startedAtMs };
}

export function applyProbeResult(
  state: HealthState,
  spec: Pick<HealthCheckSpec, 'retries' | 'startPeriodMs'>,
  passed: boolean,
  atMs: number,
): HealthState {
  if (passed) return { ...state, status: 'healthy', failingStreak: 0 };
  const inStartPeriod = state.status === 'starting' && atMs - state.startedAtMs < spec.startPeriodMs;
  if (inStartPeriod) return state;
  const failingStreak = state.failingStreak + 1;
  const status: HealthStatus = failingStreak >= Math.max(1, spec.retries) ? 'unhealthy' : state.status;
  return { ...state, status, failingStreak };
}
