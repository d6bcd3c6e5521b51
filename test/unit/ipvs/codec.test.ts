import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { attr, nested, u16, u16be, u32 } from '../../../dataplane/netlink/ipvs/attrs.js';
import {
  decodeDestination,
  decodeInfo,
  decodeService,
  decodeTimeouts,
  encodeDestination,
  encodeService,
  encodeServiceKey,
  encodeTimeouts,
} from '../../../dataplane/netlink/ipvs/codec.js';
import { CmdAttr, DestAttr, StatsAttr, SvcAttr } from '../../../dataplane/netlink/ipvs/constants.js';
import type { IpvsDestination, IpvsService } from '../../../dataplane/netlink/ipvs/types.js';
import { ValidationError } from '../../../src/common/errors.js';

const hex = (b: Buffer): string => b.toString('hex');

function service(overrides: Partial<IpvsService> = {}): IpvsService {
  return {
    key: { kind: 'inet', protocol: 'tcp', address: '10.0.0.1', port: 80 },
    scheduler: 'rr',
    schedFlags: { flag1: false, flag2: false, flag3: false },
    persistenceS: 0,
    netmask: 0xffffffff,
    onePacket: false,
    persistenceEngine: '',
    ...overrides,
  };
}

function destination(overrides: Partial<IpvsDestination> = {}): IpvsDestination {
  return {
    address: '10.0.1.5',
    port: 8080,
    forward: 'masq',
    weight: 1,
    upperThreshold: 0,
    lowerThreshold: 0,
    ...overrides,
  };
}

describe('IPVS codec: services', () => {
  it('a TCP service key is AF, protocol, 16-byte address and a network-order port, nested under SERVICE', () => {
    const expected =
      '30000180' + // nested SERVICE (type 1 | NLA_F_NESTED), 48 bytes
      '0600010002000000' + // AF = AF_INET (u16), padded
      '0600020006000000' + // PROTOCOL = 6 (tcp)
      '140003000a000001000000000000000000000000' + // ADDR: 10.0.0.1 in a 16-byte nf_inet_addr
      '0600040000500000'; // PORT = 80, big-endian
    assert.equal(hex(encodeServiceKey(service().key)), expected);
  });

  it('a fwmark service key carries AF and the mark, and no address, protocol or port', () => {
    const expected = '14000180' + '0600010002000000' + '0800050039050000';
    assert.equal(hex(encodeServiceKey({ kind: 'fwmark', fwmark: 1337 })), expected);
  });

  it('a whole service adds the NUL-terminated scheduler, flags with an all-ones mask, timeout and netmask', () => {
    const bytes = encodeService(
      service({ scheduler: 'mh', schedFlags: { flag1: true, flag2: true, flag3: false }, persistenceS: 300 }),
    );
    const tail = bytes.subarray(4 + 44).toString('hex');
    assert.equal(
      tail,
      '07000600' +
        '6d680000' + // SCHED_NAME "mh\0", padded
        '0c000700' +
        '19000000' +
        'ffffffff' + // FLAGS: persistent|sched1|sched2, mask ~0
        '08000800' +
        '2c010000' + // TIMEOUT 300
        '08000900' +
        'ffffffff', // NETMASK
    );
  });

  it('decoding what the kernel sends back gives the same service (property, prints the seed on failure)', () => {
    const arb = fc.record({
      key: fc.oneof(
        fc.record({
          kind: fc.constant('inet' as const),
          protocol: fc.constantFrom('tcp' as const, 'udp' as const, 'sctp' as const),
          address: fc.ipV4(),
          port: fc.integer({ min: 0, max: 65535 }),
        }),
        fc.record({ kind: fc.constant('fwmark' as const), fwmark: fc.integer({ min: 1, max: 0xffffffff }) }),
      ),
      scheduler: fc.constantFrom('rr', 'wrr', 'lc', 'wlc', 'sh', 'mh'),
      schedFlags: fc.record({ flag1: fc.boolean(), flag2: fc.boolean(), flag3: fc.boolean() }),
      persistenceS: fc.integer({ min: 0, max: 86400 }),
      netmask: fc.constant(0xffffffff),
      onePacket: fc.boolean(),
      persistenceEngine: fc.constantFrom('', 'sip'),
    });
    fc.assert(
      fc.property(arb, (svc) => {
        const decoded = decodeService(encodeService(svc));
        // fast-check builds null-prototype records; compare plain values.
        assert.deepEqual(decoded, JSON.parse(JSON.stringify(svc)));
      }),
      { verbose: true },
    );
  });

  it('stats64 counters in a dump are decoded (u64), preferred over the 32-bit stats', () => {
    const u64 = (n: bigint): Buffer => {
      const b = Buffer.alloc(8);
      b.writeBigUInt64LE(n);
      return b;
    };
    const reply = nested(CmdAttr.SERVICE, [
      attr(SvcAttr.AF, u16(2)),
      attr(SvcAttr.PROTOCOL, u16(17)),
      attr(SvcAttr.ADDR, Buffer.from('0a0000350000000000000000000000000', 'hex').subarray(0, 16)),
      attr(SvcAttr.PORT, u16be(53)),
      attr(SvcAttr.SCHED_NAME, Buffer.from('wrr\0')),
      attr(SvcAttr.FLAGS, Buffer.concat([u32(0x2), u32(0xffffffff)])),
      attr(SvcAttr.TIMEOUT, u32(0)),
      attr(SvcAttr.NETMASK, u32(0xffffffff)),
      nested(SvcAttr.STATS, [attr(StatsAttr.CONNS, u32(1))]),
      nested(SvcAttr.STATS64, [
        attr(StatsAttr.CONNS, u64(7n)),
        attr(StatsAttr.INPKTS, u64(5_000_000_000n)),
        attr(StatsAttr.OUTBYTES, u64(123n)),
      ]),
    ]);
    const svc = decodeService(reply);
    assert.deepEqual(svc.key, { kind: 'inet', protocol: 'udp', address: '10.0.0.53', port: 53 });
    assert.equal(svc.scheduler, 'wrr');
    assert.equal(svc.persistenceS, 0);
    assert.equal(svc.stats?.conns, 7);
    assert.equal(svc.stats?.inPkts, 5_000_000_000);
    assert.equal(svc.stats?.outBytes, 123);
    assert.equal(svc.stats?.cps, 0);
  });

  it('bad service input names the field and what is accepted', () => {
    assert.throws(
      () => encodeService(service({ scheduler: 'round-robin' })),
      (err: unknown) => {
        return (
          err instanceof ValidationError &&
          err.field === 'service.scheduler' &&
          /round-robin/.test(err.message)
        );
      },
    );
    assert.throws(
      () => encodeServiceKey({ kind: 'inet', protocol: 'tcp', address: '10.0.0.300', port: 80 }),
      (err: unknown) => err instanceof ValidationError && err.field === 'service.address',
    );
    assert.throws(
      () => encodeServiceKey({ kind: 'inet', protocol: 'tcp', address: '10.0.0.1', port: 70000 }),
      (err: unknown) => err instanceof ValidationError && err.field === 'service.port',
    );
    assert.throws(
      () => encodeServiceKey({ kind: 'fwmark', fwmark: 0 }),
      (err: unknown) => err instanceof ValidationError && err.field === 'service.fwmark',
    );
  });
});

describe('IPVS codec: destinations', () => {
  it('a destination is family, address, port, forwarding method, weight and thresholds', () => {
    const expected =
      '48000280' + // nested DEST, 72 bytes
      '06000b0002000000' + // ADDR_FAMILY = AF_INET
      '140001000a000105000000000000000000000000' + // ADDR 10.0.1.5
      '06000200' +
      '1f900000' + // PORT 8080 big-endian
      '0800030003000000' + // FWD_METHOD = DROUTE (3)
      '0800040005000000' + // WEIGHT 5
      '080005000a000000' + // U_THRESH 10
      '0800060002000000'; // L_THRESH 2
    const bytes = encodeDestination(
      destination({ forward: 'route', weight: 5, upperThreshold: 10, lowerThreshold: 2 }),
    );
    assert.equal(hex(bytes), expected);
  });

  it('a dumped destination decodes with connection counters; every forwarding method round-trips', () => {
    for (const forward of ['masq', 'local', 'tunnel', 'route', 'bypass'] as const) {
      const encoded = encodeDestination(destination({ forward, weight: 0 }));
      const withCounters = nested(CmdAttr.DEST, [
        encoded.subarray(4),
        attr(DestAttr.ACTIVE_CONNS, u32(3)),
        attr(DestAttr.INACT_CONNS, u32(4)),
        attr(DestAttr.PERSIST_CONNS, u32(0)),
      ]);
      assert.deepEqual(decodeDestination(withCounters), {
        ...destination({ forward, weight: 0 }),
        activeConns: 3,
        inactiveConns: 4,
        persistConns: 0,
      });
    }
  });

  it('a lower threshold above the upper one is rejected naming destination.lowerThreshold (the kernel says ERANGE)', () => {
    assert.throws(
      () => encodeDestination(destination({ upperThreshold: 0, lowerThreshold: 1 })),
      (err: unknown) => err instanceof ValidationError && err.field === 'destination.lowerThreshold',
    );
  });

  it('a weight above 2^31-1 is rejected naming destination.weight', () => {
    assert.throws(
      () => encodeDestination(destination({ weight: 0x80000000 })),
      (err: unknown) => err instanceof ValidationError && err.field === 'destination.weight',
    );
  });
});

describe('IPVS codec: config, info and malformed replies', () => {
  it('timeouts are three top-level u32 attributes in seconds and decode back', () => {
    const bytes = encodeTimeouts({ tcpS: 900, tcpFinS: 120, udpS: 300 });
    assert.equal(hex(bytes), '0800040084030000' + '0800050078000000' + '080006002c010000');
    assert.deepEqual(decodeTimeouts(bytes), { tcpS: 900, tcpFinS: 120, udpS: 300 });
    assert.throws(
      () => encodeTimeouts({ tcpS: -1, tcpFinS: 0, udpS: 0 }),
      (err: unknown) => err instanceof ValidationError && err.field === 'timeouts.tcpS',
    );
  });

  it('the info reply gives the version as major.minor.patch', () => {
    const reply = Buffer.concat([attr(1, u32(0x010201)), attr(2, u32(4096))]);
    assert.deepEqual(decodeInfo(reply), { version: '1.2.1', connTableSize: 4096 });
  });

  it('random bytes never crash a decoder: they decode or raise a ValidationError (property)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
        for (const decode of [decodeService, decodeDestination, decodeTimeouts, decodeInfo]) {
          try {
            decode(Buffer.from(bytes));
          } catch (err) {
            assert.ok(err instanceof ValidationError, `not a ValidationError: ${String(err)}`);
          }
        }
      }),
      { verbose: true },
    );
  });
});
