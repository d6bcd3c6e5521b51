/**
 * npm run bench -- dataplane [--sizes 1000,5000,10000] [--changes 5] [--seconds 3] [--rounds 3] [--skip-datapath]
 *
 * Programming (nftables backend, one network namespace `mdlbp`): apply N services x 10
 * endpoints from scratch, then one-endpoint changes; wall time and nft commands. The
 * size-independence ratio compares a change at N with a change at the smallest N.
 * Data path (3-host lab, prefix `mdlb`): iperf3 and short-connection rate from h3 through
 * h1's published port to the task on h2, vs straight to that task's IP; A/B alternated,
 * medians, as ratios. Root only.
 *
 * --vm [--sizes 1000,5000] [--changes 5] [--seconds 3] [--rounds 5] [--skip-datapath] [--skip-programming]:
 * the same questions in the 3-VM qemu lab, IPVS and nftables backends side by side (dataplane-vm/).
 */
import { spawn } from 'node:child_process';
import { execa } from 'execa';
import { NftLoadBalancer } from '../../dataplane/lb/nft/backend.js';
import { nftToolExecutor } from '../../dataplane/lb/nft/executor.js';
import { emptyLbState } from '../../dataplane/lb/types.js';
import { createNetns, deleteNetns } from '../../dataplane/netns/netns.js';
import { EndpointState } from '../../src/api/gen/meshd/v1/dataplane.js';
import { MeshLab, WEB_PUBLISHED } from '../../test/integration/dataplane/mesh-lab.js';
import { runVmBench } from './dataplane-vm/host.js';
import { benchServices, oneEndpointChange } from './dataplane-vm/services.js';
import type { BenchContext, Benchmark } from './types.js';

const PROGRAMMING_NETNS = 'mdlbp';
const IPERF_TARGET = 5201;
const IPERF_PUBLISHED = 30201;

function flagNumber(ctx: BenchContext, name: string, fallback: number): number {
  const v = ctx.flags.get(name);
  const n = typeof v === 'string' ? Number(v) : fallback;
  if (!Number.isFinite(n) || n <= 0) throw new Error(`--${name} must be a positive number, got ${String(v)}`);
  return n;
}

function sizesFlag(ctx: BenchContext, fallback: string): number[] {
  const text = String(ctx.flags.get('sizes') ?? fallback);
  const sizes = text.split(',').map(Number);
  if (sizes.some((n) => !Number.isInteger(n) || n < 1 || n > 50_000))
    throw new Error(`--sizes must be comma-separated integers 1..50000, got "${text}"`);
  return sizes;
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? Number.NaN;
}

async function benchProgramming(ctx: BenchContext): Promise<void> {
  const sizes = sizesFlag(ctx, '1000,5000,10000');
  const changes = flagNumber(ctx, 'changes', 5);
  let smallestChangeMs: number | null = null;
  for (const size of sizes) {
    await createNetns(PROGRAMMING_NETNS);
    try {
      const lb = new NftLoadBalancer({
        executor: nftToolExecutor,
        resolveScope: () => PROGRAMMING_NETNS,
        listScopes: () => [{ kind: 'network', networkId: 'bench' }],
      });
      const desired = benchServices(size);
      let started = performance.now();
      const fresh = await lb.apply(lb.plan(desired, emptyLbState()));
      const freshMs = performance.now() - started;
      ctx.report({
        metric: 'from scratch',
        value: freshMs,
        unit: 'ms',
        services: size,
        nftCommands: fresh.kernelOperations,
      });
      const changeMs: number[] = [];
      let ops = 0;
      const list = [...desired.services.values()];
      for (let i = 0; i < changes; i++) {
        const { previous, next } = oneEndpointChange(list, i);
        started = performance.now();
        ops = (await lb.apply([{ type: 'update-service', service: next, previous }])).kernelOperations;
        changeMs.push(performance.now() - started);
      }
      const changeMedianMs = median(changeMs);
      smallestChangeMs ??= changeMedianMs;
      ctx.report({
        metric: 'one endpoint change (median)',
        value: changeMedianMs,
        unit: 'ms',
        services: size,
        nftCommands: ops,
      });
      ctx.report({
        metric: 'change time vs smallest size',
        value: changeMedianMs / smallestChangeMs,
        unit: 'ratio',
        services: size,
      });
      started = performance.now();
      await lb.dump();
      ctx.report({
        metric: 'dump (resync read)',
        value: performance.now() - started,
        unit: 'ms',
        services: size,
      });
    } finally {
      await deleteNetns(PROGRAMMING_NETNS);
    }
  }
}

async function inNetns(netns: string, argv: string[], timeoutMs = 60_000): Promise<string> {
  const r = await execa('ip', ['netns', 'exec', netns, ...argv], { timeout: timeoutMs, reject: false });
  if (r.exitCode !== 0)
    throw new Error(`${argv.join(' ')} in ${netns} failed: ${String(r.stderr).slice(0, 500)}`);
  return String(r.stdout);
}

async function benchDatapath(ctx: BenchContext): Promise<void> {
  const seconds = flagNumber(ctx, 'seconds', 3);
  const rounds = flagNumber(ctx, 'rounds', 3);
  const mesh = await MeshLab.up('mdlb');
  const iperf = spawn(
    'ip',
    ['netns', 'exec', mesh.sandboxNetns('t2'), 'iperf3', '-s', '-p', String(IPERF_TARGET)],
    { stdio: 'ignore' },
  );
  try {
    mesh.extraWebPorts = [{ targetPort: IPERF_TARGET, publishedPort: IPERF_PUBLISHED }];
    // Only t2 (on h2) takes new connections: every published-port flow from h3 via h1 crosses hosts.
    mesh.endpoints.web.set('t1', EndpointState.ENDPOINT_STATE_DRAINING);
    await mesh.applyAll();
    // Published: h3's host namespace -> h1's address -> ingress LB on h1 -> VXLAN -> t2 on h2.
    // Direct: the client sandbox c3 on h3 -> t2's overlay address -> VXLAN -> t2.
    const viaPublished = {
      client: mesh.host(3).netns,
      host: mesh.host(1).address,
      iperf: IPERF_PUBLISHED,
      http: WEB_PUBLISHED,
    };
    const direct = { client: mesh.sandboxNetns('c3'), host: '10.10.0.12', iperf: IPERF_TARGET, http: 8080 };
    for (const { client } of [viaPublished, direct])
      await inNetns(client, [
        'sysctl',
        '-qw',
        'net.ipv4.tcp_tw_reuse=1',
        'net.ipv4.ip_local_port_range=1024 65535',
      ]);
    const results = {
      published: { gbps: [] as number[], cps: [] as number[] },
      direct: { gbps: [] as number[], cps: [] as number[] },
    };
    await new Promise((resolve) => setTimeout(resolve, 500));
    for (let round = 0; round < rounds; round++) {
      for (const [name, target] of [
        ['published', viaPublished],
        ['direct', direct],
      ] as const) {
        const out = JSON.parse(
          await inNetns(target.client, [
            'iperf3',
            '-c',
            target.host,
            '-p',
            String(target.iperf),
            '-t',
            String(seconds),
            '-J',
          ]),
        ) as {
          end: { sum_received: { bits_per_second: number } };
        };
        results[name].gbps.push(out.end.sum_received.bits_per_second / 1e9);
        const wrk = await inNetns(target.client, [
          'wrk',
          '-t1',
          '-c16',
          `-d${seconds}s`,
          '-H',
          'Connection: close',
          `http://${target.host}:${target.http}/`,
        ]);
        results[name].cps.push(Number(/Requests\/sec:\s+([\d.]+)/.exec(wrk)?.[1] ?? Number.NaN));
        ctx.log(
          `round ${round + 1} ${name}: ${results[name].gbps.at(-1)?.toFixed(1)} Gb/s, ${results[name].cps.at(-1)?.toFixed(0)} conn/s`,
        );
      }
    }
    const p = results.published;
    const d = results.direct;
    ctx.report({ metric: 'iperf3 published (median)', value: median(p.gbps), unit: 'Gb/s' });
    ctx.report({ metric: 'iperf3 direct to task (median)', value: median(d.gbps), unit: 'Gb/s' });
    ctx.report({
      metric: 'iperf3 published / direct',
      value: median(p.gbps) / median(d.gbps),
      unit: 'ratio',
    });
    ctx.report({ metric: 'new connections published (median)', value: median(p.cps), unit: 'conn/s' });
    ctx.report({ metric: 'new connections direct (median)', value: median(d.cps), unit: 'conn/s' });
    ctx.report({
      metric: 'new connections published / direct',
      value: median(p.cps) / median(d.cps),
      unit: 'ratio',
    });
  } finally {
    iperf.kill('SIGTERM');
    await mesh.down();
  }
}

const benchmark: Benchmark = {
  description: 'nftables LB programming at 1k/5k/10k services, and published-port data path vs direct',
  async run(ctx) {
    if (process.getuid?.() !== 0) throw new Error('the dataplane benchmark needs root (network namespaces)');
    if (ctx.flags.get('vm') === true) {
      await runVmBench(ctx, {
        sizes: sizesFlag(ctx, '1000,5000'),
        changes: flagNumber(ctx, 'changes', 5),
        seconds: flagNumber(ctx, 'seconds', 3),
        rounds: flagNumber(ctx, 'rounds', 5),
        skipDatapath: ctx.flags.get('skip-datapath') === true,
        skipProgramming: ctx.flags.get('skip-programming') === true,
      });
      return;
    }
    await benchProgramming(ctx);
    if (ctx.flags.get('skip-datapath') !== true) await benchDatapath(ctx);
  },
};
export default benchmark;
