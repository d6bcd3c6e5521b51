import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AnswerCache } from '../../../dataplane/dns/answer-cache.js';
import { RRTYPE } from '../../../dataplane/dns/wire.js';
import { queryBytes } from './fixtures.js';

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
