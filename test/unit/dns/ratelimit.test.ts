import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RateLimiter } from '../../../dataplane/dns/ratelimit.js';
import { ManualClock } from '../../../src/common/clock.js';

describe('dns log rate limit', () => {
  it('lets `burst` lines per key through per window, then reports how many were suppressed', () => {
    const clock = new ManualClock();
    const limiter = new RateLimiter(clock, { windowMs: 1000, burst: 2 });
    assert.equal(limiter.admit('a'), 0);
    assert.equal(limiter.admit('a'), 0);
    assert.equal(limiter.admit('a'), undefined);
    assert.equal(limiter.admit('a'), undefined);
    assert.equal(limiter.admit('b'), 0, 'keys are limited independently');
    clock.advance(1000);
    assert.equal(limiter.admit('a'), 2);
    assert.equal(limiter.admit('a'), 0);
  });
});
