import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type {
  IpvsBatchFailure,
  IpvsDestination,
  IpvsRequest,
  IpvsService,
  IpvsServiceKey,
} from '../../dataplane/netlink/ipvs/types.js';
import { serviceKeyText } from '../../dataplane/netlink/ipvs/types.js';
import { labName, VmLab } from '../../scripts/vmlab/lab.js';
import type { GuestStep } from './guest/driver.js';
import { ok, runGuestSteps } from './helpers.js';
import {
  FORWARD_COLUMN,
  maskText,
  type ParsedService,
  parseIpvsadmList,
  parseTimeouts,
  schedFlagNames,
} from './ipvsadm.js';

// One VM with a kernel that has IPVS. Every decode of the netlink client is
// checked against ipvsadm's own reading of the same kernel state.
let lab: VmLab;
before(async () => {
  lab = await VmLab.up(1, { name: labName('mdvcodec') });
});
after(async () => {
  await lab?.down();
});

const tcp80: IpvsServiceKey = { kind: 'inet', protocol: 'tcp', address: '10.1.0.1', port: 80 };
const udp53: IpvsServiceKey = { kind: 'inet', protocol: 'udp', address: '10.1.0.2', port: 53 };
const tcp443: IpvsServiceKey = { kind: 'inet', protocol: 'tcp', address: '10.1.0.3', port: 443 };
const mark7: IpvsServiceKey = { kind: 'fwmark', fwmark: 7 };
const KEYS = [tcp80, udp53, tcp443, mark7];

function svc(key: IpvsServiceKey, overrides: Partial<IpvsService> = {}): IpvsService {
  return {
    key,
    scheduler: 'rr',
    schedFlags: { flag1: false, flag2: false, flag3: false },
    persistenceS: 0,
    netmask: 0xffffffff,
    onePacket: false,
    persistenceEngine: '',
    ...overrides,
  };
}

function dest(address: string, port: number, overrides: Partial<IpvsDestination> = {}): IpvsDestination {
  return { address, port, forward: 'masq', weight: 1, upperThreshold: 0, lowerThreshold: 0, ...overrides };
}

const readBack: GuestStep[] = [
  { step: 'listServices' },
  { step: 'getTimeouts' },
  ...KEYS.map((key): GuestStep => ({ step: 'listDestinations', key })),
  { step: 'sh', cmd: 'ipvsadm -Ln' },
  { step: 'sh', cmd: 'ipvsadm -Ln --thresholds' },
  { step: 'sh', cmd: 'ipvsadm -Ln --persistent-conn' },
  { step: 'sh', cmd: 'ipvsadm -L --timeout' },
];

/** Compares decoded services/destinations (results of `readBack`) with ipvsadm's listings. */
function crossCheck(results: Awaited<ReturnType<typeof runGuestSteps>>, offset: number): IpvsService[] {
  const services = ok<IpvsService[]>(results[offset], 'listServices');
  const timeouts = ok<{ tcpS: number; tcpFinS: number; udpS: number }>(results[offset + 1], 'getTimeouts');
  const text = (i: number): string =>
    ok<{ stdout: string }>(results[offset + 2 + KEYS.length + i], 'ipvsadm').stdout;
  const list = parseIpvsadmList(text(0));
  const thresholds = parseIpvsadmList(text(1));
  const persistent = parseIpvsadmList(text(2));
  assert.deepEqual(timeouts, parseTimeouts(text(3)));

  assert.deepEqual(services.map((s) => serviceKeyText(s.key)).sort(), list.map((p) => p.key).sort());
  for (const s of services) {
    const key = serviceKeyText(s.key);
    const find = (from: ParsedService[]): ParsedService => {
      const found = from.find((p) => p.key === key);
      assert.ok(found, `ipvsadm does not list ${key}`);
      return found;
    };
    const p = find(list);
    assert.equal(s.scheduler, p.scheduler, `${key} scheduler`);
    assert.deepEqual(schedFlagNames(s.scheduler, s.schedFlags), p.schedFlags, `${key} scheduler flags`);
    assert.equal(s.persistenceS, p.persistenceS, `${key} persistence`);
    assert.equal(s.netmask === 0xffffffff ? null : maskText(s.netmask), p.mask, `${key} mask`);
    assert.equal(s.onePacket, p.onePacket, `${key} one-packet`);
    const keyIndex = KEYS.findIndex((k) => serviceKeyText(k) === key);
    const dests =
      keyIndex < 0 ? [] : ok<IpvsDestination[]>(results[offset + 2 + keyIndex], `dests of ${key}`);
    const byAddr = (from: ParsedService): Map<string, number[]> =>
      new Map(from.destinations.map((d) => [d.address, d.numbers]));
    assert.deepEqual(
      dests.map((d) => `${d.address}:${d.port}`).sort(),
      p.destinations.map((d) => d.address).sort(),
    );
    for (const d of dests) {
      const at = `${d.address}:${d.port}`;
      const row = p.destinations.find((x) => x.address === at);
      assert.equal(FORWARD_COLUMN[d.forward], row?.forward, `${key} -> ${at} forward`);
      // -Ln: Weight ActiveConn InActConn
      assert.deepEqual([d.weight, d.activeConns, d.inactiveConns], row?.numbers, `${key} -> ${at} -Ln`);
      // --thresholds: Uthreshold Lthreshold ActiveConn InActConn
      assert.deepEqual(
        [d.upperThreshold, d.lowerThreshold, d.activeConns, d.inactiveConns],
        byAddr(find(thresholds)).get(at),
        `${key} -> ${at} thresholds`,
      );
      // --persistent-conn: Weight PersistConn ActiveConn InActConn
      assert.deepEqual(
        [d.weight, d.persistConns, d.activeConns, d.inactiveConns],
        byAddr(find(persistent)).get(at),
        `${key} -> ${at} persistent-conn`,
      );
    }
  }
  return services;
}

describe('IPVS codec against ipvsadm in a VM', () => {
  it('state written by ipvsadm decodes to exactly what ipvsadm -Ln lists (services, flags, destinations, timeouts)', async () => {
    const setup = [
      'ipvsadm -C',
      'ipvsadm -A -t 10.1.0.1:80 -s rr',
      'ipvsadm -a -t 10.1.0.1:80 -r 10.77.0.11:8080 -m -w 1',
      'ipvsadm -a -t 10.1.0.1:80 -r 10.77.0.12:8080 -g -w 0',
      'ipvsadm -A -u 10.1.0.2:53 -s wrr -o',
      'ipvsadm -a -u 10.1.0.2:53 -r 10.77.0.13:53 -i -w 3 -x 10 -y 2',
      'ipvsadm -A -t 10.1.0.3:443 -s mh -b mh-port -p 60 -M 255.255.255.0',
      'ipvsadm -a -t 10.1.0.3:443 -r 10.77.0.14:443 -m -w 7',
      'ipvsadm -A -f 7 -s sh -b sh-fallback,sh-port -p 300',
      'ipvsadm -a -f 7 -r 10.77.0.15:0 -g -w 2',
      'ipvsadm --set 1000 60 200',
    ].join(' && ');
    const results = await runGuestSteps(lab, 'vm1', [{ step: 'sh', cmd: setup }, ...readBack]);
    assert.equal(ok<{ exitCode: number }>(results[0], 'setup').exitCode, 0, JSON.stringify(results[0]));
    const services = crossCheck(results, 1);
    assert.equal(services.length, 4);
    const mh = services.find((s) => s.scheduler === 'mh');
    assert.deepEqual(mh?.schedFlags, { flag1: false, flag2: true, flag3: false });
    assert.equal(mh?.netmask, 0xffffff00);
  });

  it('state written by the client reads back through ipvsadm, and kernel errors come back with their errno', async () => {
    const steps: GuestStep[] = [
      { step: 'flush' },
      { step: 'addService', service: svc(tcp80) },
      { step: 'addService', service: svc(udp53, { scheduler: 'wrr', onePacket: true }) },
      {
        step: 'addService',
        service: svc(tcp443, { scheduler: 'sh', persistenceS: 30, netmask: 0xffffff00 }),
      },
      {
        step: 'addService',
        service: svc(mark7, {
          scheduler: 'mh',
          schedFlags: { flag1: true, flag2: true, flag3: false },
          persistenceS: 120,
        }),
      },
      { step: 'addDestination', key: tcp80, dest: dest('10.77.0.11', 8080) },
      { step: 'addDestination', key: tcp80, dest: dest('10.77.0.12', 8080, { weight: 5 }) },
      {
        step: 'addDestination',
        key: udp53,
        dest: dest('10.77.0.13', 53, { forward: 'tunnel', upperThreshold: 9 }),
      },
      {
        step: 'addDestination',
        key: mark7,
        dest: dest('10.77.0.15', 0, { forward: 'route', upperThreshold: 5, lowerThreshold: 1 }),
      },
      { step: 'updateDestination', key: tcp80, dest: dest('10.77.0.12', 8080, { weight: 0 }) },
      { step: 'updateService', service: svc(tcp80, { scheduler: 'lc' }) },
      { step: 'addDestination', key: tcp443, dest: dest('10.77.0.14', 443) },
      { step: 'deleteDestination', key: tcp443, address: '10.77.0.14', port: 443 },
      { step: 'setTimeouts', timeouts: { tcpS: 3600, tcpFinS: 30, udpS: 45 } },
      { step: 'addService', service: svc(tcp80) },
      { step: 'deleteService', key: { kind: 'inet', protocol: 'tcp', address: '10.9.9.9', port: 1 } },
      ...readBack,
    ];
    const results = await runGuestSteps(lab, 'vm1', steps);
    for (const [i, r] of results.slice(0, 14).entries())
      assert.ok(r.ok, `step ${i} ${JSON.stringify(steps[i])}: ${JSON.stringify(r)}`);
    const duplicate = results[14];
    assert.ok(
      duplicate !== undefined && !duplicate.ok && duplicate.code === 'IPVS_EEXIST',
      JSON.stringify(duplicate),
    );
    const missing = results[15];
    assert.ok(missing !== undefined && !missing.ok && missing.code === 'IPVS_ESRCH', JSON.stringify(missing));

    const services = crossCheck(results, 16);
    const byKey = new Map(services.map((s) => [serviceKeyText(s.key), s]));
    assert.equal(byKey.get('tcp 10.1.0.1:80')?.scheduler, 'lc');
    assert.equal(byKey.get('udp 10.1.0.2:53')?.onePacket, true);
    assert.equal(byKey.get('fwmark 7')?.persistenceS, 120);
    assert.equal(byKey.get('tcp 10.1.0.3:443')?.netmask, 0xffffff00);
    assert.deepEqual(ok(results[17], 'timeouts'), { tcpS: 3600, tcpFinS: 30, udpS: 45 });
    const tcpDests = ok<IpvsDestination[]>(results[18], 'tcp80 dests');
    assert.deepEqual(tcpDests.map((d) => [d.address, d.weight]).sort(), [
      ['10.77.0.11', 1],
      ['10.77.0.12', 0],
    ]);
    assert.deepEqual(ok<IpvsDestination[]>(results[20], 'tcp443 dests'), []);
  });

  it('stats decoded after real connections equal ipvsadm -Ln --stats --exact', async () => {
    const steps: GuestStep[] = [
      { step: 'flush' },
      { step: 'sh', cmd: 'ip addr replace 10.1.0.1/32 dev lo' },
      { step: 'tcpServe', address: '10.77.0.11', port: 8080, reply: 'hello' },
      { step: 'addService', service: svc(tcp80) },
      { step: 'addDestination', key: tcp80, dest: dest('10.77.0.11', 8080) },
      { step: 'tcpConnect', address: '10.1.0.1', port: 80, count: 5 },
      // The kernel folds per-CPU counters into what both readers see every 2 s.
      { step: 'sleep', ms: 4_500 },
      { step: 'listServices' },
      { step: 'listDestinations', key: tcp80 },
      { step: 'sh', cmd: 'ipvsadm -Ln --stats --exact' },
    ];
    const results = await runGuestSteps(lab, 'vm1', steps);
    assert.deepEqual(ok(results[5], 'connect'), ['hello', 'hello', 'hello', 'hello', 'hello']);
    const [service] = ok<IpvsService[]>(results[7], 'services');
    const [destination] = ok<IpvsDestination[]>(results[8], 'dests');
    const [parsed] = parseIpvsadmList(ok<{ stdout: string }>(results[9], 'stats').stdout, true);
    const counters = (s: IpvsService['stats']): number[] =>
      s === undefined ? [] : [s.conns, s.inPkts, s.outPkts, s.inBytes, s.outBytes];
    assert.equal(service?.stats?.conns, 5);
    assert.ok((service?.stats?.inBytes ?? 0) > 0);
    assert.deepEqual(counters(service?.stats), parsed?.numbers);
    assert.deepEqual(counters(destination?.stats), parsed?.destinations[0]?.numbers);
  });

  it('a pipelined batch (more requests than are in flight at once) creates each service before its destinations and reports a refused request by its index', async () => {
    const count = 300;
    const key = (i: number): IpvsServiceKey => ({
      kind: 'inet',
      protocol: 'tcp',
      address: `10.2.${i >> 8}.${i & 255}`,
      port: 80,
    });
    const requests: IpvsRequest[] = [];
    for (let i = 0; i < count; i++) {
      requests.push({ op: 'addService', service: svc(key(i)) });
      for (const d of ['10.77.0.11', '10.77.0.12', '10.77.0.13'])
        requests.push({ op: 'addDestination', key: key(i), dest: dest(d, 8080) });
    }
    const duplicateAt = 2 * 4 * 100;
    requests.splice(duplicateAt, 0, { op: 'addService', service: svc(key(10)) });
    const results = await runGuestSteps(lab, 'vm1', [
      { step: 'flush' },
      { step: 'batch', requests },
      { step: 'sh', cmd: 'ipvsadm -Ln' },
      { step: 'flush' },
    ]);
    const failures = ok<IpvsBatchFailure[]>(results[1], 'batch');
    assert.deepEqual(
      failures.map((f) => [f.index, f.code]),
      [[duplicateAt, 'IPVS_EEXIST']],
    );
    const listed = parseIpvsadmList(ok<{ stdout: string }>(results[2], 'ipvsadm').stdout);
    assert.equal(listed.length, count);
    assert.ok(
      listed.every((s) => s.destinations.length === 3),
      'every service has its 3 destinations',
    );
  });
});
