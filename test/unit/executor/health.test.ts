import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { applyProbeResult, initialHealth } from '../../../dataplane/executor/health.js';

const spec = { retries: 3, startPeriodMs: 1000 };

describe('health checks (Docker semantics)', () => {
  it('a task starts in status starting', () => {
    assert.equal(initialHealth(0).status, 'starting');
  });

  it('one passing probe makes a task healthy, even inside the start period', () => {
    assert.equal(applyProbeResult(initialHealth(0), spec, true, 10).status, 'healthy');
  });

  it('failures inside the start period do not count', () => {
    let s = initialHealth(0);
    for (let t = 100; t < 1000; t += 100) s = applyProbeResult(s, spec, false, t);
    assert.equal(s.status, 'starting');
    assert.equal(s.failingStreak, 0);
  });

  it('`retries` consecutive failures after the start period make it unhealthy', () => {
    let s = initialHealth(0);
    s = applyProbeResult(s, spec, false, 1000);
    s = applyProbeResult(s, spec, false, 1100);
    assert.equal(s.status, 'starting');
    s = applyProbeResult(s, spec, false, 1200);
    assert.equal(s.status, 'unhealthy');
  });

  it('a pass resets the failing streak', () => {
    let s = applyProbeResult(initialHealth(0), spec, true, 10);
    s = applyProbeResult(s, spec, false, 2000);
    s = applyProbeResult(s, spec, false, 2100);
    s = applyProbeResult(s, spec, true, 2200);
    s = applyProbeResult(s, spec, false, 2300);
    s = applyProbeResult(s, spec, false, 2400);
    assert.equal(s.status, 'healthy');
    assert.equal(s.failingStreak, 2);
  });

  it('an unhealthy task becomes healthy again on one pass', () => {
    let s = { status: 'unhealthy' as const, failingStreak: 5, startedAtMs: 0 };
    s = applyProbeResult(s, spec, true, 5000) as typeof s;
    assert.equal(s.status, 'healthy');
  });
});
