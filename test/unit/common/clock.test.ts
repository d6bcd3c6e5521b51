import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ManualClock } from '../../../src/common/clock.js';

describe('ManualClock', () => {
  it('fires timers in due-time order, then creation order for equal due times', () => {
    const clock = new ManualClock(1000);
    const fired: string[] = [];
    clock.setTimer(20, () => fired.push('b'));
    clock.setTimer(10, () => fired.push('a'));
    clock.setTimer(20, () => fired.push('c'));
    clock.advance(25);
    assert.deepEqual(fired, ['a', 'b', 'c']);
    assert.equal(clock.nowMs(), 1025);
  });

  it('shows each timer its own due time as the current time', () => {
    const clock = new ManualClock(0);
    const seen: number[] = [];
    clock.setTimer(5, () => seen.push(clock.nowMs()));
    clock.setTimer(7, () => seen.push(clock.nowMs()));
    clock.advance(100);
    assert.deepEqual(seen, [5, 7]);
  });

  it('fires a timer set by a firing timer when it falls inside the same step', () => {
    const clock = new ManualClock(0);
    const fired: number[] = [];
    clock.setTimer(10, () => {
      fired.push(clock.nowMs());
      clock.setTimer(10, () => fired.push(clock.nowMs()));
    });
    clock.advance(25);
    assert.deepEqual(fired, [10, 20]);
  });

  it('does not fire a cancelled timer', () => {
    const clock = new ManualClock(0);
    let fired = false;
    const cancel = clock.setTimer(10, () => {
      fired = true;
    });
    cancel();
    clock.advance(50);
    assert.equal(fired, false);
    assert.equal(clock.pendingTimers(), 0);
  });

  it('refuses to move backwards', () => {
    assert.throws(() => new ManualClock(0).advance(-1), /deltaMs must be >= 0/);
  });
});
