/**
 * The 7 data-plane acceptance scenarios of issue 6, written once against a
 * `MeshDriver` so every lab runs the same checks: the namespace lab with the
 * nftables backend (test/integration/dataplane/acceptance.test.ts) and the
 * VM lab with IPVS (test/vm/mesh-ipvs.test.ts). Topology: mesh-topology.ts.
 * A driver runs shell scripts in a host's namespace and drives each host's
 * reconciler; the few backend-specific facts (how to damage an LB object by
 * hand, how to read it back) are keyed on `lbBackend` here.
 */
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { macFromIpv4, VXLAN_IF } from '../../dataplane/overlay/names.js';
import type {
  ProgrammerView,
  ReconcileResult,
  ReconcilerStatus,
} from '../../dataplane/reconciler/reconciler.js';
import { type DesiredState, EndpointState } from '../../src/api/gen/meshd/v1/dataplane.js';
import { ValidationError } from '../../src/common/errors.js';
import {
  LOCAL_HEALTH,
  LOCAL_PUBLISHED,
  meshLbAddress,
  meshTaskAddress,
  TASK_PORT,
  WEB_PUBLISHED,
  WEB_VIP,
} from './mesh-topology.js';

const FIXTURES = fileURLToPath(new URL('../integration/dataplane/fixtures/', import.meta.url));

export interface MeshDriver {
  readonly lbBackend: 'nftables' | 'ipvs';
  /** Underlay address of host `host` (1-based). */
  address(host: number): string;
  sandboxNetns(taskId: string): string;
  networkNetns(host: number, networkId: string): string;
  /** Runs a bash script in the host namespace of `host`; its stdout; throws on a non-zero exit. */
  bash(host: number, script: string, timeoutMs?: number): Promise<string>;
  /** Service web's endpoint states (task id -> state); `applyAll` programs them on every host. */
  readonly web: Map<string, EndpointState>;
  applyAll(): Promise<number>;
  stateFor(host: number): DesiredState;
  /** The host's reconciler; a bad state rejects with a ValidationError. */
  apply(host: number, state: DesiredState): Promise<ReconcileResult>;
  resync(host: number): Promise<ReconcileResult | null>;
  view(host: number): Promise<ProgrammerView[]>;
  status(host: number): Promise<ReconcilerStatus>;
  metrics(host: number): Promise<string>;
}

export interface HttpReply {
  status: number;
  body: string;
}

export interface MeshScenario {
  title: string;
  run(d: MeshDriver): Promise<void>;
}

const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
const inNetns = (netns: string | null) => (netns === null ? '' : `ip netns exec ${quote(netns)} `);

/** `count` sequential GETs with curl from `netns` (null: the host namespace) on `host`; null = failed. */
export async function httpGets(
  d: MeshDriver,
  host: number,
  netns: string | null,
  url: string,
  count: number,
): Promise<(HttpReply | null)[]> {
  // One curl for every request (a process start costs a second in an emulated VM); the task
  // closes each connection, so every request is a new connection the LB balances.
  const out = await d.bash(
    host,
    `${inNetns(netns)}curl -s --max-time 10 -w '\\n%{http_code}\\n@@\\n' ${Array(count).fill(quote(url)).join(' ')}; true`,
    30_000 + count * 10_000,
  );
  // Each request prints its body, its status code on a line of its own, then a line "@@".
  return out
    .split(/^@@$/m)
    .slice(0, count)
    .map((chunk) => {
      const lines = chunk.trim().split('\n');
      const status = Number(lines.pop());
      return status > 0 ? { status, body: lines.join('\n').trim() } : null;
    });
}

/** Which task answered (and the source address it saw), over `count` requests that must all succeed. */
async function tasksSeen(
  d: MeshDriver,
  host: number,
  netns: string | null,
  url: string,
  count: number,
): Promise<Map<string, string>> {
  const seen = new Map<string, string>();
  for (const [i, reply] of (await httpGets(d, host, netns, url, count)).entries()) {
    assert.ok(reply !== null && reply.status === 200, `request ${i} to ${url} on host ${host} failed`);
    const [task, source] = reply.body.split(' ');
    seen.set(task!, source!);
  }
  return seen;
}

/**
 * One long-lived TCP connection (fixtures/line-client.mjs) from a namespace,
 * driven through a fifo so that separate scripts can talk on it.
 */
class LineClient {
  private replies = 0;
  private constructor(
    private readonly d: MeshDriver,
    private readonly host: number,
    private readonly dir: string,
  ) {}

  static async open(d: MeshDriver, host: number, netns: string, address: string, port: number) {
    const dir = `/tmp/mdi-line-${process.pid}`;
    await d
      .bash(
        host,
        `rm -rf ${dir} && mkdir -p ${dir} && mkfifo ${dir}/in
       sleep 300 > ${dir}/in 2>/dev/null < /dev/null & echo $! > ${dir}/holder.pid
       ${inNetns(netns)}${quote(process.execPath)} ${FIXTURES}line-client.mjs ${address} ${port} 120000 < ${dir}/in > ${dir}/out 2>&1 &
       echo $! > ${dir}/client.pid
       for i in $(seq 1500); do grep -q . ${dir}/out && break; sleep 0.1; done
       head -1 ${dir}/out`,
      )
      .then((first) => assert.equal(first.trim(), 'connected'));
    return new LineClient(d, host, dir);
  }

  /** Sends a line and returns the reply line. */
  async ask(line: string): Promise<string> {
    this.replies++;
    const want = this.replies + 1;
    const out = await this.d.bash(
      this.host,
      `echo ${quote(line)} > ${this.dir}/in
       for i in $(seq 1500); do [ "$(wc -l < ${this.dir}/out)" -ge ${want} ] && break; sleep 0.1; done
       sed -n ${want}p ${this.dir}/out`,
    );
    return out.trim();
  }

  async close(): Promise<void> {
    await this.d.bash(
      this.host,
      `kill $(cat ${this.dir}/client.pid) $(cat ${this.dir}/holder.pid) 2>/dev/null; rm -rf ${this.dir}; true`,
    );
  }
}

const lbName = (d: MeshDriver) => `lb-${d.lbBackend}`;

/** Deletes `web`'s VIP object in host 1's app network by hand (an nft element, or the IPVS service). */
function damageVipScript(d: MeshDriver): string {
  const ns = quote(d.networkNetns(1, 'app'));
  return d.lbBackend === 'nftables'
    ? `ip netns exec ${ns} nft delete element ip meshd vips '{ ${WEB_VIP} . tcp . ${TASK_PORT} }'`
    : `ip netns exec ${ns} ipvsadm -D -t ${WEB_VIP}:${TASK_PORT}`;
}

/** The LB objects of host 1 that scenarios 6 and 7 inspect, as text without counters. */
function lbSnapshotScript(d: MeshDriver): string {
  const ns = quote(d.networkNetns(1, 'app'));
  const nft = `ip netns exec ${ns} nft list ruleset; nft list ruleset`;
  return d.lbBackend === 'nftables' ? nft : `${nft}; ip netns exec ${ns} ipvsadm -Sn; ipvsadm -Sn`;
}

export const MESH_SCENARIOS: readonly MeshScenario[] = [
  {
    title:
      '1: tasks on host 1 and host 2 reach each other by IP across VXLAN, seen as UDP 4789 on the underlay',
    async run(d) {
      const out = await d.bash(
        1,
        `out=$(mktemp); err=$(mktemp)
         timeout 120 tcpdump -n -c 1 -i eth0 udp port 4789 > $out 2> $err & pid=$!
         for i in $(seq 1000); do grep -q listening $err && break; sleep 0.1; done
         ${inNetns(d.sandboxNetns('t1'))}curl -s --max-time 5 http://${meshTaskAddress('t2', 'app')}:${TASK_PORT}/
         wait $pid; echo "captured: $(cat $out)"; rm -f $out $err`,
        180_000,
      );
      assert.match(out, /^t2 10\.10\.0\.11$/m);
      assert.match(out, /captured: .*\d+\.\d+\.\d+\.\d+\.\d+ > \d+\.\d+\.\d+\.\d+\.4789: VXLAN/);
      const [back] = await httpGets(
        d,
        2,
        d.sandboxNetns('t2'),
        `http://${meshTaskAddress('t1', 'app')}:${TASK_PORT}/`,
        1,
      );
      assert.equal(back?.body, 't1 10.10.0.12');
    },
  },
  {
    title:
      '2: from a sandbox on host 3 the VIP spreads connections over every task, SNATed to the host 3 LB address',
    async run(d) {
      const seen = await tasksSeen(d, 3, d.sandboxNetns('c3'), `http://${WEB_VIP}:${TASK_PORT}/`, 50);
      assert.deepEqual([...seen.keys()].sort(), ['t1', 't2']);
      assert.deepEqual([...new Set(seen.values())], [meshLbAddress('app', 3)]);
    },
  },
  {
    title: '3: the published port answers on every host address, also on host 3 which runs no task',
    async run(d) {
      for (const host of [1, 2, 3]) {
        const seen = await tasksSeen(d, 3, null, `http://${d.address(host)}:${WEB_PUBLISHED}/`, 4);
        assert.ok(seen.size >= 1, `no task answered on host ${host}`);
        for (const task of seen.keys()) assert.ok(['t1', 't2'].includes(task), `unexpected answer ${task}`);
      }
    },
  },
  {
    title:
      '4: a draining task gets no new connections, its open one lives on; removed, it is gone everywhere',
    async run(d) {
      const client = await LineClient.open(d, 3, d.sandboxNetns('c3'), WEB_VIP, TASK_PORT);
      try {
        const pinned = (await client.ask('ping')).split(' ')[0]!;
        assert.ok(['t1', 't2'].includes(pinned), `the open connection answered "${pinned}"`);
        const other = pinned === 't1' ? 't2' : 't1';
        d.web.set(pinned, EndpointState.ENDPOINT_STATE_DRAINING);
        await d.applyAll();
        const seen = await tasksSeen(d, 3, d.sandboxNetns('c3'), `http://${WEB_VIP}:${TASK_PORT}/`, 20);
        assert.deepEqual([...seen.keys()], [other], 'a draining task received a new connection');
        assert.equal(
          (await client.ask('ping')).split(' ')[0],
          pinned,
          'the open connection to the draining task broke',
        );

        d.web.delete(pinned);
        await d.applyAll();
        const gone = new Set([meshTaskAddress(pinned, 'app'), meshTaskAddress(pinned, 'ingress')]);
        for (const host of [1, 2, 3]) {
          const lb = (await d.view(host)).find((v) => v.name === lbName(d));
          assert.ok(lb !== undefined, `host ${host} has no ${lbName(d)} programmer`);
          const programmed = lb.programmed as {
            services: { key: string; backends: { address: string }[] }[];
          };
          for (const service of programmed.services)
            for (const backend of service.backends)
              assert.ok(
                !gone.has(backend.address),
                `host ${host}: ${service.key} still holds ${backend.address}`,
              );
        }
      } finally {
        await client.close();
        d.web.set('t1', EndpointState.ENDPOINT_STATE_ACTIVE);
        d.web.set('t2', EndpointState.ENDPOINT_STATE_ACTIVE);
        await d.applyAll();
      }
    },
  },
  {
    title: '5: mode=local keeps the client address; the health port says 200 on host 1 and 503 on host 3',
    async run(d) {
      const [reply] = await httpGets(d, 3, null, `http://${d.address(1)}:${LOCAL_PUBLISHED}/`, 1);
      assert.equal(reply?.body, `t1 ${d.address(3)}`);
      const [healthy] = await httpGets(d, 3, null, `http://${d.address(1)}:${LOCAL_HEALTH}/`, 1);
      assert.equal(healthy?.status, 200);
      const [unhealthy] = await httpGets(d, 3, null, `http://${d.address(3)}:${LOCAL_HEALTH}/`, 1);
      assert.equal(unhealthy?.status, 503);
    },
  },
  {
    title:
      '6: a resync restores a deleted FDB entry and LB object and counts the drift; the same state again changes nothing',
    async run(d) {
      const appNetns = quote(d.networkNetns(1, 'app'));
      const t2Mac = macFromIpv4(meshTaskAddress('t2', 'app'));
      await d.bash(1, `bridge -n ${appNetns} fdb del ${t2Mac} dev ${VXLAN_IF} self\n${damageVipScript(d)}`);
      const driftBefore = (await d.status(1)).driftRepairsTotal;
      const result = await d.resync(1);
      assert.deepEqual(
        result?.programmers.filter((p) => p.changes > 0).map((p) => [p.name, p.changes]),
        [
          ['overlay', 1],
          [lbName(d), 1],
        ],
      );
      assert.equal((await d.status(1)).driftRepairsTotal, driftBefore + 2);
      const fdb = await d.bash(1, `bridge -n ${appNetns} fdb show dev ${VXLAN_IF}`);
      assert.match(fdb, new RegExp(`${t2Mac} dst ${d.address(2).replace(/\./g, '\\.')}`));
      const lb = await d.bash(1, lbSnapshotScript(d));
      assert.match(
        lb,
        d.lbBackend === 'nftables'
          ? /10\.10\.0\.100 \. tcp \. 8080/
          : /-A -t 10\.10\.0\.100:8080 -s rr[\s\S]*-a -t 10\.10\.0\.100:8080 -r 10\.10\.0\.12:8080 -m/,
      );
      assert.match(await d.metrics(1), /meshd_dataplane_drift_repairs_total\{programmer="overlay"\} 1/);
      const again = await d.apply(1, d.stateFor(1));
      assert.equal(again.changes, 0);
      assert.equal(again.kernelOperations, 0);
    },
  },
  {
    title: '7: a bad desired state is rejected naming the field, and nothing is half-applied',
    async run(d) {
      const appNetns = quote(d.networkNetns(1, 'app'));
      const snapshot = () =>
        d.bash(1, `${lbSnapshotScript(d)}; bridge -n ${appNetns} fdb show dev ${VXLAN_IF}`);
      const before = await snapshot();
      const cases: [string, (s: DesiredState) => void, RegExp][] = [
        ['networks[1].subnet', (s) => (s.networks[1]!.subnet = '10.10.0.0/16'), /overlaps 10\.10\.0\.0\/24/],
        ['networks[1].vni', (s) => (s.networks[1]!.vni = s.networks[0]!.vni), /VNI 4097 is already used/],
        [
          'services[0].endpoints[0].address',
          (s) => (s.services[0]!.endpoints[0]!.address = '10.77.0.1'),
          /outside the subnet/,
        ],
        [
          'services[0].vips[0].networkId',
          (s) => (s.services[0]!.vips[0]!.networkId = 'nope'),
          /unknown network "nope"/,
        ],
      ];
      for (const [field, breakIt, message] of cases) {
        const state = d.stateFor(1);
        state.services[0]!.endpoints.pop(); // a real change that must not be applied either
        breakIt(state);
        await assert.rejects(d.apply(1, state), (err: unknown) => {
          assert.ok(err instanceof ValidationError, `not a ValidationError: ${String(err)}`);
          assert.equal(err.field, field);
          assert.match(err.message, message);
          return true;
        });
      }
      assert.equal(await snapshot(), before);
    },
  },
];
