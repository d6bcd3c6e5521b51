import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { upstreamsFromResolvConf } from '../../../dataplane/dns/resolvconf.js';

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
