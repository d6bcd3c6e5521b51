import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  attr,
  bufferToMac,
  decodeVxlanData,
  encodeVxlanData,
  ipv4ToBuffer,
  macToBuffer,
  parseAttrs,
  parseCidr,
} from '../../../dataplane/netlink/codec.js';
import { errnoOf } from '../../../dataplane/netlink/errors.js';
import { decodeLink } from '../../../dataplane/netlink/rtnl.js';

test('an attribute is length, type, payload, padded to four bytes', () => {
  const a = attr(3, Buffer.from('eth0\0'));
  assert.equal(a.length, 12);
  assert.equal(a.readUInt16LE(0), 9);
  assert.equal(a.readUInt16LE(2), 3);
  assert.deepEqual([...parseAttrs(Buffer.concat([a, attr(4, Buffer.from([1, 0, 0, 0]))])).keys()], [3, 4]);
});

test('parseAttrs stops at a truncated attribute instead of reading past the buffer', () => {
  const good = attr(1, Buffer.from([1, 2, 3, 4]));
  const truncated = Buffer.from([200, 0, 2, 0, 9]);
  assert.deepEqual([...parseAttrs(Buffer.concat([good, truncated])).keys()], [1]);
});

test('vxlan data round-trips VNI, port (big-endian), local and learning off by default', () => {
  const data = encodeVxlanData({ vni: 4097, local: '10.99.0.11' });
  assert.deepEqual(decodeVxlanData(data), {
    vni: 4097,
    port: 4789,
    local: '10.99.0.11',
    learning: false,
    arpProxy: false,
  });
  assert.throws(() => encodeVxlanData({ vni: 0 }), /vxlan\.vni must be an integer 1\.\.16777215, got 0/);
  assert.throws(() => encodeVxlanData({ vni: 5, port: 70000 }), /vxlan\.port must be an integer 1\.\.65535/);
});

test('addresses, MACs and CIDRs are validated with the field named', () => {
  assert.deepEqual([...ipv4ToBuffer('10.0.0.1')], [10, 0, 0, 1]);
  assert.throws(() => ipv4ToBuffer('10.0.0.256', 'gateway'), /gateway: expected an IPv4 address/);
  assert.equal(bufferToMac(macToBuffer('02:42:AC:11:00:02')), '02:42:ac:11:00:02');
  assert.throws(() => macToBuffer('02:42', 'mac'), /mac: expected a MAC/);
  assert.deepEqual(parseCidr('10.1.0.0/16'), ['10.1.0.0', 16]);
  assert.deepEqual(parseCidr('default'), ['0.0.0.0', 0]);
  assert.throws(() => parseCidr('10.1.0.0/33'), /dst: expected CIDR/);
});

test('the errno name is taken from the netlink package rejection text', () => {
  assert.equal(errnoOf(new Error('Request rejected: EEXIST')), 'EEXIST');
  assert.equal(errnoOf(new Error('something else')), undefined);
});

test('a link reply without index or name is rejected, a vxlan one is decoded', () => {
  assert.throws(() => decodeLink({ data: {}, attrs: { ifname: 'x' } }), /malformed link message/);
  const linkinfo = Buffer.concat([
    attr(1, Buffer.from('vxlan\0')),
    attr(2, encodeVxlanData({ vni: 7, port: 4790, arpProxy: true })),
  ]);
  const info = decodeLink({
    data: { index: 4, flags: { up: true } },
    attrs: { ifname: 'vx0', mtu: 1450, address: Buffer.from([2, 66, 10, 0, 0, 1]), master: 3, linkinfo },
  });
  assert.deepEqual(info, {
    index: 4,
    name: 'vx0',
    mtu: 1450,
    up: true,
    mac: '02:42:0a:00:00:01',
    masterIndex: 3,
    kind: 'vxlan',
    vxlan: { vni: 7, port: 4790, learning: false, arpProxy: true },
  });
});
