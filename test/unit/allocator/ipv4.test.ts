import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AddressSpace, formatPrefix, overlaps, parsePrefix } from '../../../controlplane/allocator/ipv4.js';

describe('ipv4 prefixes', () => {
  it('refuses a CIDR with host bits set and suggests the network address', () => {
    assert.throws(() => parsePrefix('10.0.0.5/24', 'subnet'), /did you mean 10\.0\.0\.0\/24/);
  });

  it('refuses text that is not a CIDR, naming the field', () => {
    for (const bad of ['10.0.0.0', '10.0.0.0/33', '300.0.0.0/8', 'x/8', '10.0.0.0/8/1'])
      assert.throws(() => parsePrefix(bad, 'subnet'), /subnet must be an IPv4/);
  });

  it('detects overlap in both directions', () => {
    const a = parsePrefix('10.0.0.0/16', 's');
    const b = parsePrefix('10.0.3.0/24', 's');
    assert.ok(overlaps(a, b) && overlaps(b, a));
    assert.ok(!overlaps(b, parsePrefix('10.0.4.0/24', 's')));
    assert.equal(formatPrefix(b), '10.0.3.0/24');
  });

  it('never hands out the network or broadcast address', () => {
    const space = new AddressSpace(parsePrefix('10.0.0.0/30', 's'));
    const got = [space.allocate(), space.allocate(), space.allocate()];
    assert.deepEqual(got, [0x0a000001, 0x0a000002, undefined]);
  });
});
