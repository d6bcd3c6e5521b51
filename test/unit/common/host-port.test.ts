import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { joinHostPort, splitHostPort } from '../../../src/common/host-port.js';

test('IPv6 hosts are joined in brackets, IPv4 hosts and names as they are', () => {
  assert.equal(joinHostPort('2001:db8::1', 4242), '[2001:db8::1]:4242');
  assert.equal(joinHostPort('[2001:db8::1]', '4242'), '[2001:db8::1]:4242');
  assert.equal(joinHostPort('192.0.2.10', 4242), '192.0.2.10:4242');
  assert.equal(joinHostPort('manager-1', 4242), 'manager-1:4242');
});

test('split gives the host without brackets and the port', () => {
  assert.deepEqual(splitHostPort('[2001:db8::1]:4242'), { host: '2001:db8::1', port: '4242' });
  assert.deepEqual(splitHostPort('192.0.2.10:4242'), { host: '192.0.2.10', port: '4242' });
  assert.deepEqual(splitHostPort('2001:db8::1'), { host: '2001:db8::1', port: '' });
  assert.deepEqual(splitHostPort('[::1]'), { host: '::1', port: '' });
  assert.deepEqual(splitHostPort('10.0.0.1'), { host: '10.0.0.1', port: '' });
});

test('split undoes join for every IPv4 and IPv6 address and port', () => {
  fc.assert(
    fc.property(fc.oneof(fc.ipV4(), fc.ipV6()), fc.integer({ min: 0, max: 65535 }), (host, port) => {
      assert.deepEqual(splitHostPort(joinHostPort(host, port)), { host, port: String(port) });
    }),
  );
});
