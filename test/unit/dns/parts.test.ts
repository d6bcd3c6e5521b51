import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AnswerCache } from '../../../dataplane/dns/answer-cache.js';
import { RateLimiter } from '../../../dataplane/dns/ratelimit.js';
import { upstreamsFromResolvConf } from '../../../dataplane/dns/resolvconf.js';
import { RRTYPE } from '../../../dataplane/dns/wire.js';
import { ManualClock } from '../../../src/common/clock.js';
import { queryBytes } from './fixtures.js';

describe('dns resolv.conf upstreams', () => {
  it('takes nameserver lines, skipping loopback ones that would loop back into the sandbox', () => {
    const text = [
      '# comment',
      'search example.org',
      'nameserver 127.0.0.53',
      'nameserver 10.255.255.53',
      'nameserver ::1',
      'nameserver 2001:db8::1 ; trailing comment',
      'options ndots:2',
    ].join('\n');
    const r = upstreamsFromResolvConf(text);
    assert.deepEqual(r.upstreams, [
      { address: '10.255.255.53', port: 53, family: 4 },
      { address: '2001:db8::1', port: 53, family: 6 },
    ]);
    assert.equal(r.skipped.length, 2);
    assert.ok(r.skipped[0]?.includes('loopback'));
  });

  it('reports malformed lines and keeps at most three upstreams', () => {
    const text =
      'nameserver\nnameserver banana\nnameserver 1.1.1.1\nnameserver 1.0.0.1\nnameserver 9.9.9.9\nnameserver 8.8.8.8';
    const r = upstreamsFromResolvConf(text);
    assert.equal(r.upstreams.length, 3);
    assert.equal(r.skipped.length, 3);
    assert.ok(r.skipped.some((s) => s.includes('banana')));
  });
});

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

describe('dns answer cache', () => {
  it('serves a cached answer under the ID of the new query, and only for the same bytes after the ID', () => {
    const cache = new AnswerCache(10);
    const answer = Buffer.from([0x12, 0x34, 0x81, 0x80, 9, 9, 9]);
    cache.set(queryBytes('web', RRTYPE.A, { id: 0x1234 }), answer);
    const hit = cache.get(queryBytes('web', RRTYPE.A, { id: 0xabcd }));
    assert.deepEqual(hit, Buffer.from([0xab, 0xcd, 0x81, 0x80, 9, 9, 9]));
    assert.equal(cache.get(queryBytes('WEB', RRTYPE.A)), undefined, 'question case is part of the key');
    assert.equal(cache.get(queryBytes('web', RRTYPE.AAAA)), undefined);
    assert.equal(cache.get(queryBytes('web', RRTYPE.A, { edns: true })), undefined);
  });

  it('never holds more than its bound', () => {
    const cache = new AnswerCache(4);
    for (let i = 0; i < 50; i++) {
      cache.set(queryBytes(`n${i}`, RRTYPE.A), Buffer.alloc(20));
      assert.ok(cache.size <= 4);
    }
  });
});
