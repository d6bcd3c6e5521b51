import { join } from 'node:path';
import { bundleProgram } from '../../../test/vm/helpers.js';
import { labName, VmLab } from '../../vmlab/lab.js';
import type { BenchContext } from '../types.js';
import type { BackendName, ProgrammingResult, PublishSpec } from './guest.js';

/**
 * `npm run bench -- dataplane --vm`: the 3-VM lab (real IPVS). Tasks on vm1 and
 * vm2 (only vm2's takes connections, so the published path always crosses
 * nodes), the client on vm3. vm1 publishes each port twice, once per backend,
 * so one run alternates direct / routed / IPVS / nftables under the same
 * conditions. Then programming times, IPVS on vm2 and nftables on vm3 at once.
 * See README.md here.
 */

const LAB = labName('mdvb1');
const HTTP_SERVER = join(new URL('.', import.meta.url).pathname, 'http-server.mjs');
const DIRECTOR = '10.77.0.11';
const TASK = '10.77.0.12';
const HTTP_TARGET = 8080;
const IPERF_TARGET = 5201;
const PORTS = { http: { ipvs: 30080, nftables: 30081 }, iperf: { ipvs: 30201, nftables: 30202 } };
const BACKENDS: BackendName[] = ['ipvs', 'nftables'];

/** direct: vm3 -> vm2; routed: vm3 -> vm1 (plain IP forwarding, no LB, no NAT) -> vm2; ipvs/nftables: published. */
type PathName = 'direct' | 'routed' | BackendName;
const PATHS: PathName[] = ['direct', 'routed', ...BACKENDS];

// The routed reference uses a second address on each end, routed through vm1 both ways.
const ROUTED_TASK = '10.78.0.12';
const ROUTED_CLIENT = '10.78.0.13';

interface Target {
  host: string;
  http: number;
  iperf: number;
}

const TARGETS: Record<PathName, Target> = {
  direct: { host: TASK, http: HTTP_TARGET, iperf: IPERF_TARGET },
  routed: { host: ROUTED_TASK, http: HTTP_TARGET, iperf: IPERF_TARGET },
  ipvs: { host: DIRECTOR, http: PORTS.http.ipvs, iperf: PORTS.iperf.ipvs },
  nftables: { host: DIRECTOR, http: PORTS.http.nftables, iperf: PORTS.iperf.nftables },
};

export interface VmBenchOptions {
  sizes: number[];
  changes: number;
  seconds: number;
  rounds: number;
  skipDatapath: boolean;
  skipProgramming: boolean;
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? Number.NaN;
}

function lastJsonLine<T>(stdout: string): T {
  const lines = stdout.trim().split('\n');
  return JSON.parse(lines[lines.length - 1] ?? 'null') as T;
}

async function startTasks(lab: VmLab): Promise<void> {
  const start = (vm: string, setup: string) =>
    lab.run(
      vm,
      `${setup}
       (node ${HTTP_SERVER} 0.0.0.0 ${HTTP_TARGET} > /dev/null 2>&1 &)
       iperf3 -s -D -p ${IPERF_TARGET}
       for i in $(seq 600); do ss -ltn | grep -q :${HTTP_TARGET} && exit 0; sleep 0.2; done
       echo "task server did not listen on ${vm}:${HTTP_TARGET}" >&2; exit 1`,
      { timeoutMs: 180_000 },
    );
  await Promise.all([
    // No redirects: vm3 would learn to bypass vm1 (same subnet in and out).
    start(
      'vm1',
      `sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.send_redirects=0 net.ipv4.conf.eth0.send_redirects=0
       ip route replace ${ROUTED_TASK}/32 via ${TASK}
       ip route replace ${ROUTED_CLIENT}/32 via 10.77.0.13`,
    ),
    start(
      'vm2',
      `ip addr replace ${ROUTED_TASK}/32 dev eth0
       ip route replace ${ROUTED_CLIENT}/32 via ${DIRECTOR} src ${ROUTED_TASK}`,
    ),
    // Short connections: without these the client runs out of ports in TIME_WAIT (FLOORS.md).
    lab.run(
      'vm3',
      `sysctl -qw net.ipv4.tcp_tw_reuse=1 net.ipv4.ip_local_port_range="1024 65535"
       ip addr replace ${ROUTED_CLIENT}/32 dev eth0
       ip route replace ${ROUTED_TASK}/32 via ${DIRECTOR} src ${ROUTED_CLIENT}`,
    ),
  ]);
}

/**
 * Task servers, the routed reference and both backends' published ports on a
 * booted lab; returns `ipvsadm -Ln` of the director. Exported for poking at a
 * lab by hand when a ratio needs explaining.
 */
export async function setUpDatapath(lab: VmLab, guest: string): Promise<string> {
  await startTasks(lab);
  const spec: PublishSpec = {
    snatAddress: DIRECTOR,
    ports: [
      { ...PORTS.http, target: HTTP_TARGET },
      { ...PORTS.iperf, target: IPERF_TARGET },
    ],
    // vm1's task is draining: every published connection goes vm3 -> vm1 -> vm2.
    tasks: [
      { address: DIRECTOR, weight: 0 },
      { address: TASK, weight: 1 },
    ],
  };
  const published = lastJsonLine<{ ipvsadm: string }>(
    await lab.run('vm1', `node ${guest} publish '${JSON.stringify(spec)}'`, { timeoutMs: 180_000 }),
  );
  return published.ipvsadm;
}

/** One request on each path, so a broken path fails the bench instead of measuring errors. */
async function checkPaths(lab: VmLab): Promise<void> {
  for (const [name, t] of Object.entries(TARGETS)) {
    const out = await lab.exec(
      'vm3',
      `exec 3<>/dev/tcp/${t.host}/${t.http} && printf 'GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n' >&3 && timeout 10 head -n1 <&3`,
      { timeoutMs: 30_000 },
    );
    if (!out.stdout.startsWith('HTTP/1.1 200'))
      throw new Error(`path ${name} (${t.host}:${t.http}) does not answer: ${out.stdout}${out.stderr}`);
  }
}

async function measureDatapath(ctx: BenchContext, lab: VmLab, opts: VmBenchOptions): Promise<void> {
  const results = Object.fromEntries(
    PATHS.map((p) => [p, { gbps: [] as number[], cps: [] as number[] }]),
  ) as Record<PathName, { gbps: number[]; cps: number[] }>;
  const order = PATHS;
  const limit = { timeoutMs: opts.seconds * 1000 + 60_000 };
  for (let round = 0; round < opts.rounds; round++) {
    // Rotate the order each round so no path always runs first (or right after another).
    const paths = order.map((_, i) => order[(i + round) % order.length]!);
    for (const path of paths) {
      const t = TARGETS[path];
      const iperf = JSON.parse(
        await lab.run('vm3', `iperf3 -c ${t.host} -p ${t.iperf} -t ${opts.seconds} -J`, limit),
      ) as { end: { sum_received: { bits_per_second: number } } };
      results[path].gbps.push(iperf.end.sum_received.bits_per_second / 1e9);
      const wrk = await lab.run(
        'vm3',
        `wrk -t1 -c16 -d${opts.seconds}s --timeout 5s -H 'Connection: close' http://${t.host}:${t.http}/`,
        limit,
      );
      const cps = Number(/Requests\/sec:\s+([\d.]+)/.exec(wrk)?.[1] ?? Number.NaN);
      results[path].cps.push(cps);
      const errors = /Socket errors:.*|Non-2xx.*/.exec(wrk)?.[0];
      ctx.log(
        `round ${round + 1} ${path}: ${results[path].gbps.at(-1)?.toFixed(3)} Gb/s, ${cps.toFixed(0)} conn/s${errors ? ` (${errors})` : ''}`,
      );
    }
  }
  const gbps = (path: PathName) => median(results[path].gbps);
  const cps = (path: PathName) => median(results[path].cps);
  for (const path of PATHS) {
    const context = { path, vm: 'tcg' };
    ctx.report({ metric: 'iperf3 1 stream (median)', value: gbps(path), unit: 'Gb/s', ...context });
    ctx.report({ metric: 'new connections (median)', value: cps(path), unit: 'conn/s', ...context });
  }
  for (const path of PATHS.filter((p) => p !== 'direct')) {
    const context = { path, vm: 'tcg' };
    ctx.report({ metric: 'iperf3 / direct', value: gbps(path) / gbps('direct'), unit: 'ratio', ...context });
    ctx.report({
      metric: 'new connections / direct',
      value: cps(path) / cps('direct'),
      unit: 'ratio',
      ...context,
    });
  }
  // The LB's own cost: the same extra hop through vm1, with and without the LB on it.
  for (const path of BACKENDS) {
    const context = { path, vm: 'tcg' };
    ctx.report({ metric: 'iperf3 / routed', value: gbps(path) / gbps('routed'), unit: 'ratio', ...context });
    ctx.report({
      metric: 'new connections / routed',
      value: cps(path) / cps('routed'),
      unit: 'ratio',
      ...context,
    });
  }
}

async function measureProgramming(
  ctx: BenchContext,
  lab: VmLab,
  guest: string,
  opts: VmBenchOptions,
): Promise<void> {
  // The two backends run at the same time on two idle VMs (vm2: IPVS, vm3: nftables), sizes in
  // order: this halves the wall time, and both see the same host load.
  const vmOf: Record<BackendName, string> = { ipvs: 'vm2', nftables: 'vm3' };
  const results = await Promise.all(
    BACKENDS.map(async (backend) => {
      const out: ProgrammingResult[] = [];
      for (const services of opts.sizes) {
        ctx.log(`programming ${services} services x 10 endpoints with ${backend} on ${vmOf[backend]}...`);
        // The dump a resync reads is one request per service for IPVS (73 s at 1k under
        // emulation): measured at the smallest size only, to keep the bench near 10 minutes.
        const dump = services === opts.sizes[0] ? 'dump' : '';
        const r = lastJsonLine<ProgrammingResult>(
          await lab.run(
            vmOf[backend],
            `node ${guest} program ${backend} ${services} ${opts.changes} ${dump}`,
            {
              timeoutMs: 1_200_000,
            },
          ),
        );
        if (r.kernelServices !== services || (dump !== '' && r.dumpedServices !== services))
          throw new Error(
            `${backend} at ${services}: kernel holds ${r.kernelServices} services, dump read ${r.dumpedServices}`,
          );
        if (backend === 'ipvs' && r.vipAddresses !== services)
          throw new Error(`ipvs at ${services}: ${r.vipAddresses} VIP addresses on the dummy link`);
        ctx.log(`${backend} ${services}: ${JSON.stringify(r)}`);
        out.push(r);
      }
      return out;
    }),
  );
  for (const r of results.flat()) {
    const context = { backend: r.backend, services: r.services, vm: 'tcg' };
    const change = median(r.changeMs);
    const smallest = median(results.flat().find((x) => x.backend === r.backend)?.changeMs ?? []);
    ctx.report({
      metric: 'from scratch',
      value: Math.round(r.freshMs),
      unit: 'ms',
      ops: r.freshOps,
      ...context,
    });
    ctx.report({
      metric: 'one endpoint change (median)',
      value: change,
      unit: 'ms',
      ops: r.changeOps,
      ...context,
    });
    ctx.report({
      metric: 'change time vs smallest size',
      value: change / smallest,
      unit: 'ratio',
      ...context,
    });
    if (r.dumpMs >= 0)
      ctx.report({ metric: 'dump (resync read)', value: Math.round(r.dumpMs), unit: 'ms', ...context });
  }
}

export function bundleGuest(): Promise<string> {
  return bundleProgram(join(new URL('.', import.meta.url).pathname, 'guest.ts'), 'dataplane-vm');
}

export async function runVmBench(outer: BenchContext, opts: VmBenchOptions): Promise<void> {
  const started = performance.now();
  const ctx: BenchContext = {
    ...outer,
    log: (m) => outer.log(`[${Math.round((performance.now() - started) / 1000)} s] ${m}`),
  };
  const guest = await bundleGuest();
  ctx.log(`booting 3 VMs (lab ${LAB}; software emulation)...`);
  const lab = await VmLab.up(3, { name: LAB });
  try {
    if (!opts.skipDatapath) {
      ctx.log((await setUpDatapath(lab, guest)).trim());
      await checkPaths(lab);
      await measureDatapath(ctx, lab, opts);
    }
    if (!opts.skipProgramming) await measureProgramming(ctx, lab, guest, opts);
  } finally {
    await lab.down();
  }
  ctx.report({ metric: 'whole bench', value: Math.round((performance.now() - started) / 1000), unit: 's' });
}
