/**
 * The overlay as the load balancer's place: three lab hosts, networks `app`
 * and `ingress`, the nftables LB of dataplane/lb in the namespaces the overlay
 * builds, everything driven by one Reconciler per host. Checks that VIP and
 * published-port traffic crosses hosts over this overlay (issue 6 points 1-3
 * on K's side; the full acceptance suite lives in test/integration/dataplane).
 */
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { NftLoadBalancer } from '../../../dataplane/lb/nft/backend.js';
import { nftToolExecutor } from '../../../dataplane/lb/nft/executor.js';
import { lbProgrammer } from '../../../dataplane/lb/programmer.js';
import { NetnsHelper } from '../../../dataplane/netns/helper.js';
import { helperHostAccess } from '../../../dataplane/netns/host.js';
import { macFromIpv4, networkNetnsName, sandboxNetnsName } from '../../../dataplane/overlay/names.js';
import { buildNodeOverlay, type NodeOverlay } from '../../../dataplane/overlay/node.js';
import { Reconciler } from '../../../dataplane/reconciler/reconciler.js';
import { type LabHost, labDown, labUp, type NetnsLab } from '../../../scripts/lab/lab.js';
import { DesiredState } from '../../../src/api/gen/meshd/v1/dataplane.js';

const execFileAsync = promisify(execFile);
const PREFIX = 'mdkme';
const NETS = [
  { id: 'app', vni: 4097, p: '10.10.0', ingress: false },
  { id: 'ingress', vni: 4096, p: '10.255.0', ingress: true },
];
const TASKS = [
  { id: 't1', host: 1, octet: 11, nets: ['app', 'ingress'], web: true },
  { id: 't2', host: 2, octet: 12, nets: ['app', 'ingress'], web: true },
  { id: 'c3', host: 3, octet: 23, nets: ['app'], web: false },
];

function attachments(t: (typeof TASKS)[number]) {
  return t.nets.map((id) => {
    const address = `${NETS.find((n) => n.id === id)!.p}.${t.octet}`;
    return { networkId: id, address, mac: macFromIpv4(address) };
  });
}

function stateFor(lab: NetnsLab, me: LabHost): DesiredState {
  const others = lab.hosts.filter((h) => h !== me);
  const remote = others.flatMap((o) => [
    ...NETS.map((n) => {
      const address = `${n.p}.${250 + o.index}`;
      return { networkId: n.id, address, mac: macFromIpv4(address), vtep: o.address, taskId: `lb-${o.name}` };
    }),
    ...TASKS.filter((t) => t.host === o.index).flatMap((t) =>
      attachments(t).map((a) => ({ ...a, vtep: o.address, taskId: t.id })),
    ),
  ]);
  const endpoints = TASKS.filter((t) => t.web).flatMap((t) =>
    attachments(t).map((a) => ({
      taskId: t.id,
      taskName: t.id,
      nodeId: `n${t.host}`,
      networkId: a.networkId,
      address: a.address,
      state: 'ENDPOINT_STATE_ACTIVE',
    })),
  );
  return DesiredState.fromJSON({
    version: 1,
    node: { id: `n${me.index}`, underlayAddress: me.address, underlayMtu: 1500 },
    networks: NETS.map((n) => ({
      id: n.id,
      name: n.id,
      vni: n.vni,
      subnet: `${n.p}.0/24`,
      gateway: `${n.p}.1`,
      lbAddress: `${n.p}.${250 + me.index}`,
      peers: others.map((o) => ({ nodeId: `n${o.index}`, underlayAddress: o.address })),
      ingress: n.ingress,
    })),
    sandboxes: TASKS.filter((t) => t.host === me.index).map((t) => ({
      taskId: t.id,
      taskName: t.id,
      serviceId: t.web ? 'web' : '',
      attachments: attachments(t),
    })),
    remoteEndpoints: remote,
    services: [
      {
        id: 'web',
        name: 'web',
        vips: [{ networkId: 'app', address: '10.10.0.100' }],
        ports: [
          {
            name: 'http',
            protocol: 'PROTOCOL_TCP',
            targetPort: 8080,
            publishedPort: 30080,
            publishMode: 'PUBLISH_MODE_INGRESS',
          },
        ],
        endpoints,
        endpointMode: 'ENDPOINT_MODE_VIP',
      },
    ],
  });
}

async function curl(netns: string, url: string): Promise<string> {
  try {
    const { stdout } = await execFileAsync('ip', ['netns', 'exec', netns, 'curl', '-s', '-m', '3', url]);
    return stdout.trim();
  } catch {
    return 'failed';
  }
}

let lab: NetnsLab;
const helpers: NetnsHelper[] = [];
const overlays: NodeOverlay[] = [];
const tasks: ChildProcess[] = [];

before(async () => {
  lab = await labUp({ prefix: PREFIX, hosts: 3 });
  for (const h of lab.hosts) {
    const state = stateFor(lab, h);
    const helper = await NetnsHelper.start(h.netns);
    helpers.push(helper);
    const overlay = buildNodeOverlay({ hostPrefix: h.netnsPrefix, host: helperHostAccess(helper) });
    overlays.push(overlay);
    const lb = new NftLoadBalancer({
      executor: nftToolExecutor,
      resolveScope: (scope) =>
        scope.kind === 'host' ? h.netns : networkNetnsName(h.netnsPrefix, scope.networkId),
      listScopes: () => [
        { kind: 'host' },
        ...NETS.map((n) => ({ kind: 'network' as const, networkId: n.id })),
      ],
    });
    const reconciler = new Reconciler([...overlay.programmers, lbProgrammer(lb)]);
    await reconciler.apply(state);
    assert.equal(
      (await reconciler.resync())?.changes,
      0,
      `${h.name}: a resync right after apply finds drift`,
    );
  }
  for (const t of TASKS.filter((x) => x.web)) {
    const netns = sandboxNetnsName(lab.hosts[t.host - 1]!.netnsPrefix, t.id);
    const child = spawn(
      'ip',
      [
        'netns',
        'exec',
        netns,
        process.execPath,
        '-e',
        `require('http').createServer((q,r)=>r.end('${t.id}')).listen(8080,()=>console.log('up'))`,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    tasks.push(child);
    await new Promise<void>((resolve) => child.stdout?.once('data', () => resolve()));
  }
});

after(async () => {
  for (const c of tasks) c.kill('SIGTERM');
  for (const o of overlays) await o.close().catch(() => {});
  for (const h of helpers) await h.stop().catch(() => {});
  await labDown(PREFIX);
});

test('the service VIP, balanced in the network namespace, reaches tasks on both other hosts', async () => {
  const c3 = sandboxNetnsName(lab.hosts[2]!.netnsPrefix, 'c3');
  const seen = new Set<string>();
  for (let i = 0; i < 50 && seen.size < 2; i++) seen.add(await curl(c3, 'http://10.10.0.100:8080/'));
  assert.deepEqual([...seen].sort(), ['t1', 't2']);
});

test('the published port answers on every host address through the ingress overlay, also on h3 without tasks', async () => {
  for (const target of lab.hosts) {
    const answer = await curl(lab.hosts[2]!.netns, `http://${target.address}:30080/`);
    assert.match(answer, /^t[12]$/, `published port on ${target.name}`);
  }
});
