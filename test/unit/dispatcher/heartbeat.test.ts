import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  DEFAULT_HEARTBEAT_POLICY,
  heartbeatPeriodMs,
  jitteredPeriodMs,
  LivenessTracker,
} from '../../../controlplane/dispatcher/heartbeat.js';
import { SeededRng } from '../../../src/common/rng.js';

describe('heartbeats and node liveness', () => {
  it('a dead node on a small cluster is declared down within 6 s of its last heartbeat', () => {
    const period = heartbeatPeriodMs(3);
    const tracker = new LivenessTracker();
    tracker.heartbeat('n1', 0, period);
    assert.deepEqual(tracker.takeExpired(period * DEFAULT_HEARTBEAT_POLICY.graceMultiplier - 1), []);
    const downAt = period * DEFAULT_HEARTBEAT_POLICY.graceMultiplier;
    assert.ok(downAt <= 6000, `declared down after ${downAt} ms`);
    assert.deepEqual(tracker.takeExpired(downAt), ['n1']);
  });

  it('the period stretches with cluster size so the leader handles a bounded heartbeat rate', () => {
    for (const nodes of [1, 100, 1000, 10_000]) {
      const period = heartbeatPeriodMs(nodes);
      assert.ok((nodes * 1000) / period <= DEFAULT_HEARTBEAT_POLICY.maxHeartbeatsPerSecond);
    }
    assert.equal(heartbeatPeriodMs(10), DEFAULT_HEARTBEAT_POLICY.basePeriodMs);
  });

  it('jitter only shortens a period, by at most the jitter fraction', () => {
    const rng = new SeededRng(1);
    for (let i = 0; i < 1000; i++) {
      const p = jitteredPeriodMs(1000, rng);
      assert.ok(p <= 1000 && p >= 750, String(p));
    }
  });

  it('after a leader change every node is UNKNOWN and keeps its tasks for the grace period', () => {
    const tracker = new LivenessTracker();
    tracker.startLeadership(['n1', 'n2'], 1000);
    assert.equal(tracker.liveness('n1'), 'unknown');
    tracker.heartbeat('n1', 2000, 1500);
    assert.equal(tracker.liveness('n1'), 'ready');
    for (let t = 5000; t < 11_000; t += 3000) {
      assert.deepEqual(tracker.takeExpired(t), []);
      tracker.heartbeat('n1', t, 1500);
    }
    assert.deepEqual(tracker.takeExpired(1000 + DEFAULT_HEARTBEAT_POLICY.unknownGraceMs - 1), []);
    assert.deepEqual(tracker.takeExpired(1000 + DEFAULT_HEARTBEAT_POLICY.unknownGraceMs), ['n2']);
  });

  it('a heartbeat pushes the deadline out; a forgotten node never expires', () => {
    const tracker = new LivenessTracker();
    tracker.heartbeat('n1', 0, 1000);
    tracker.heartbeat('n1', 2500, 1000);
    assert.deepEqual(tracker.takeExpired(3000), []);
    assert.equal(tracker.nextDeadlineMs(), 5500);
    tracker.forget('n1');
    assert.deepEqual(tracker.takeExpired(1e9), []);
  });
});
