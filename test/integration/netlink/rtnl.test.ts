import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { NetlinkError } from '../../../dataplane/netlink/errors.js';
import { helperRtnl } from '../../../dataplane/netlink/remote.js';
import type { RtnlOps } from '../../../dataplane/netlink/rtnl.js';
import { NetnsHelper } from '../../../dataplane/netns/helper.js';
import { createNetns, deleteNetns, netnsPath } from '../../../dataplane/netns/netns.js';

const execFileAsync = promisify(execFile);
const NS = 'mdknl1';
const PEER_NS = 'mdknl2';

async function ipJson<T>(ns: string, args: string[]): Promise<T> {
  const { stdout } = await execFileAsync('ip', ['-n', ns, '-d', '-j', ...args]);
  return JSON.parse(stdout) as T;
}

let helper: NetnsHelper;
let nl: RtnlOps;

before(async () => {
  await createNetns(NS);
  await createNetns(PEER_NS);
  helper = await NetnsHelper.start(NS);
  nl = helperRtnl(helper);
});

after(async () => {
  await helper?.stop();
  await deleteNetns(NS);
  await deleteNetns(PEER_NS);
});

test('bridge, vxlan (VNI, port, local, learning off) and veth links round-trip and match ip -d -j', async () => {
  await nl.addLink({ name: 'br0', kind: 'bridge', mtu: 1450 });
  await nl.addLink({
    name: 'vx0',
    kind: 'vxlan',
    mtu: 1450,
    vxlan: { vni: 4097, port: 4789, local: '10.1.0.1', arpProxy: true },
  });
  await nl.addLink({
    name: 've0',
    kind: 'veth',
    mac: '02:42:0a:00:00:01',
    veth: {
      peerName: 'eth0',
      peerNetnsPath: netnsPath(PEER_NS),
      peerMac: '02:42:0a:00:00:02',
      peerMtu: 1450,
    },
  });
  await nl.setLink('vx0', { master: 'br0', up: true });
  await nl.setLink('br0', { up: true });

  const links = await nl.links();
  const byName = new Map(links.map((l) => [l.name, l]));
  const vx = byName.get('vx0');
  assert.deepEqual(vx?.vxlan, { vni: 4097, port: 4789, local: '10.1.0.1', learning: false, arpProxy: true });
  assert.equal(vx?.masterIndex, byName.get('br0')?.index);
  assert.equal(byName.get('ve0')?.kind, 'veth');
  assert.equal(byName.get('ve0')?.mac, '02:42:0a:00:00:01');

  type IpLink = {
    ifindex: number;
    ifname: string;
    mtu: number;
    address: string;
    flags: string[];
    linkinfo?: {
      info_kind: string;
      info_data?: { id?: number; port?: number; local?: string; learning?: boolean };
    };
  };
  const ipLinks = await ipJson<IpLink[]>(NS, ['link', 'show']);
  for (const il of ipLinks) {
    const mine = byName.get(il.ifname.split('@')[0] ?? '');
    assert.ok(mine, `ip shows ${il.ifname}, our dump does not`);
    assert.equal(mine.index, il.ifindex);
    assert.equal(mine.mtu, il.mtu);
    assert.equal(mine.kind, il.linkinfo?.info_kind);
    assert.equal(mine.up, il.flags.includes('UP'));
    if (il.ifname !== 'lo') assert.equal(mine.mac, il.address);
  }
  assert.equal(ipLinks.length, links.length);
  const ipVx = ipLinks.find((l) => l.ifname === 'vx0')?.linkinfo?.info_data;
  assert.deepEqual([ipVx?.id, ipVx?.port, ipVx?.local, ipVx?.learning], [4097, 4789, '10.1.0.1', false]);

  const peer = await ipJson<IpLink[]>(PEER_NS, ['link', 'show', 'eth0']);
  assert.equal(peer[0]?.address, '02:42:0a:00:00:02');
  assert.equal(peer[0]?.mtu, 1450);
});

test('addresses and routes round-trip and match ip -j', async () => {
  await nl.addAddr('br0', '10.20.0.2/24');
  await nl.addRoute({ dst: '10.30.0.0/16', gateway: '10.20.0.1' });
  await nl.addRoute({ dst: '10.31.0.5/32', dev: 'br0' });
  const addrs = await nl.addrs();
  assert.ok(addrs.some((a) => a.ifname === 'br0' && a.address === '10.20.0.2' && a.prefixLength === 24));
  const ipAddrs = await ipJson<
    { ifname: string; addr_info: { family: string; local: string; prefixlen: number }[] }[]
  >(NS, ['addr', 'show']);
  const ipFlat = ipAddrs.flatMap((l) =>
    l.addr_info.filter((a) => a.family === 'inet').map((a) => `${l.ifname} ${a.local}/${a.prefixlen}`),
  );
  assert.deepEqual(addrs.map((a) => `${a.ifname} ${a.address}/${a.prefixLength}`).sort(), ipFlat.sort());

  const routes = await nl.routes();
  const ipRoutes = await ipJson<{ dst: string; gateway?: string; dev: string }[]>(NS, ['route', 'show']);
  const norm = (dst: string) => (dst.includes('/') || dst === 'default' ? dst : `${dst}/32`);
  assert.deepEqual(
    routes.map((r) => `${r.dst} ${r.gateway ?? '-'} ${r.dev}`).sort(),
    ipRoutes.map((r) => `${norm(r.dst)} ${r.gateway ?? '-'} ${r.dev}`).sort(),
  );
  await nl.delRoute({ dst: '10.31.0.5/32', dev: 'br0' });
  assert.ok(!(await nl.routes()).some((r) => r.dst === '10.31.0.5/32'));
});

test('permanent neighbours and vxlan FDB entries round-trip, replace is idempotent, delete removes', async () => {
  const neigh = { dev: 'br0', address: '10.20.0.9', mac: '02:42:0a:14:00:09' };
  await nl.replaceNeigh(neigh);
  await nl.replaceNeigh(neigh);
  const fdb = { dev: 'vx0', mac: '02:42:0a:14:00:09', dst: '10.1.0.2' };
  await nl.replaceFdb(fdb);
  await nl.replaceFdb(fdb);

  const neighs = await nl.neighs();
  assert.deepEqual(
    neighs.filter((n) => n.dev === 'br0'),
    [{ ...neigh, permanent: true }],
  );
  const ipNeigh = await ipJson<{ dst: string; dev: string; lladdr: string; state: string[] }[]>(NS, [
    'neigh',
    'show',
  ]);
  assert.deepEqual(
    ipNeigh.map((n) => [n.dst, n.dev, n.lladdr, n.state.includes('PERMANENT')]),
    [['10.20.0.9', 'br0', '02:42:0a:14:00:09', true]],
  );

  const entries = (await nl.fdb()).filter((e) => e.dev === 'vx0' && e.dst !== undefined);
  assert.deepEqual(entries, [{ ...fdb, permanent: true, self: true }]);
  const { stdout } = await execFileAsync('ip', [
    'netns',
    'exec',
    NS,
    'bridge',
    '-j',
    'fdb',
    'show',
    'dev',
    'vx0',
  ]);
  const ipFdb = (JSON.parse(stdout) as { mac: string; dst?: string; state: string }[]).filter(
    (e) => e.dst !== undefined,
  );
  assert.deepEqual(
    ipFdb.map((e) => [e.mac, e.dst, e.state]),
    [['02:42:0a:14:00:09', '10.1.0.2', 'permanent']],
  );

  await nl.delFdb(fdb);
  await nl.delNeigh(neigh);
  assert.deepEqual(
    (await nl.fdb()).filter((e) => e.dev === 'vx0' && e.dst !== undefined),
    [],
  );
  assert.deepEqual(
    (await nl.neighs()).filter((n) => n.dev === 'br0'),
    [],
  );
});

test('vxlan peers are written and removed in one pipelined batch', async () => {
  const peers = Array.from({ length: 600 }, (_, i) => {
    const address = `10.21.${Math.floor(i / 256)}.${i % 256}`;
    const mac = `02:42:0a:15:${(Math.floor(i / 256) % 256).toString(16).padStart(2, '0')}:${(i % 256).toString(16).padStart(2, '0')}`;
    return { address, mac, vtep: i % 2 ? '10.1.0.2' : '10.1.0.3' };
  });
  await nl.replaceVxlanPeers('vx0', peers);
  await nl.replaceVxlanPeers('vx0', peers);
  const fdb = (await nl.fdb()).filter((e) => e.dev === 'vx0' && e.dst !== undefined);
  const neigh = (await nl.neighs()).filter((n) => n.dev === 'vx0');
  assert.equal(fdb.length, 600);
  assert.equal(neigh.length, 600);
  const byMac = new Map(fdb.map((e) => [e.mac, e.dst]));
  for (const p of peers) assert.equal(byMac.get(p.mac), p.vtep);
  await nl.delVxlanPeers('vx0', peers);
  await nl.delVxlanPeers('vx0', peers.slice(0, 5));
  assert.equal((await nl.fdb()).filter((e) => e.dev === 'vx0' && e.dst !== undefined).length, 0);
  assert.equal((await nl.neighs()).filter((n) => n.dev === 'vx0').length, 0);
  await assert.rejects(
    nl.replaceVxlanPeers('vx0', [{ address: '10.21.9.9', mac: '02:42:0a:15:09:09', vtep: 'nope' }]),
    /vtep: expected an IPv4 address/,
  );
});

test('a kernel rejection names the operation and the errno text', async () => {
  await assert.rejects(nl.addLink({ name: 'br0', kind: 'bridge' }), (err: Error) => {
    assert.match(err.message, /add link bridge "br0": EEXIST: file already exists/);
    return true;
  });
  await assert.rejects(nl.setLink('nosuch0', { up: true }), /lookup link "nosuch0": ENODEV/);
  await assert.rejects(nl.addLink({ name: 'way-too-long-name0', kind: 'bridge' }), /IFNAMSIZ/);
  void NetlinkError;
});

test('deleting a link removes it from the dump', async () => {
  await nl.delLink('ve0');
  assert.ok(!(await nl.links()).some((l) => l.name === 've0'));
});
