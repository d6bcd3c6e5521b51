// npm run bench -- dns [--seconds 5] [--rounds 2] [--json]
//
// dnsperf inside a task sandbox of the network-namespace lab against the
// embedded resolver (127.0.0.11, served by meshd's DnsServer from the lab
// host namespace), and against unbound serving the same records in the same
// sandbox (127.0.0.12) as the reference. Forwarded names: through the
// resolver to the upstream unbound on lab host 2, vs dnsperf straight at that
// upstream from host 1. Runs alternate A/B; medians are reported, and the
// ratio resolver/reference. Throughput runs are closed-loop (100 queries
// outstanding); latency runs offer a fixed 50,000 QPS (the goal) and time
// every answer, because at saturation latency only measures queue depth.
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { EndpointState } from '../../src/api/gen/meshd/v1/dataplane.js';
import { type DnsLab, dnsLabDown, dnsLabUp, Unbound } from '../../test/integration/dns/lab.js';
import { NET_APP, sampleState } from '../../test/unit/dns/fixtures.js';
import type { BenchContext, Benchmark } from './types.js';

const PREFIX = 'mddb';
const GOAL_QPS = 50_000;
const FORWARDED_NAMES = 100;

/** The same cluster records as sampleState(), as unbound local-data. */
const CLUSTER_LOCAL_DATA = [
  'web. 30 IN A 10.0.1.2',
  'web.app. 30 IN A 10.0.1.2',
  'tasks.web. 3 IN A 10.0.1.11',
  'tasks.web. 3 IN A 10.0.1.12',
  '_http._tcp.web. 30 IN SRV 0 0 80 web.',
  '2.1.0.10.in-addr.arpa. 3 IN PTR web.',
];
const CLUSTER_QUERIES = [
  'web A',
  'web.app A',
  'tasks.web A',
  '_http._tcp.web SRV',
  '2.1.0.10.in-addr.arpa PTR',
  'web AAAA',
  'pg A',
];

interface PerfResult {
  qps: number;
  p50Ms: number | undefined;
  p99Ms: number | undefined;
  lostPercent: number;
}

function dnsperf(netns: string, args: string[], timeLatency: boolean): Promise<PerfResult> {
  return new Promise((resolve, reject) => {
    const child = spawn('ip', ['netns', 'exec', netns, 'dnsperf', ...args, ...(timeLatency ? ['-v'] : [])], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const latenciesUs: number[] = [];
    let tail = '';
    let summary = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      const text = tail + chunk;
      const lines = text.split('\n');
      tail = lines.pop() ?? '';
      for (const line of lines) {
        if (line.startsWith('> ')) {
          const seconds = Number(line.slice(line.lastIndexOf(' ') + 1));
          if (Number.isFinite(seconds)) latenciesUs.push(Math.round(seconds * 1e6));
        } else summary += `${line}\n`;
      }
    });
    child.stderr.resume();
    child.on('error', reject);
    child.on('exit', (code) => {
      summary += tail;
      const qps = Number(/Queries per second:\s+([\d.]+)/.exec(summary)?.[1]);
      const lost = Number(/Queries lost:\s+\d+ \(([\d.]+)%\)/.exec(summary)?.[1] ?? 0);
      if (code !== 0 || !Number.isFinite(qps)) {
        reject(
          new Error(`dnsperf ${args.join(' ')} in ${netns} failed (exit ${code}): ${summary.slice(-400)}`),
        );
        return;
      }
      latenciesUs.sort((a, b) => a - b);
      const pct = (p: number): number | undefined =>
        latenciesUs.length === 0
          ? undefined
          : latenciesUs[Math.min(latenciesUs.length - 1, Math.floor(latenciesUs.length * p))]! / 1000;
      resolve({ qps, p50Ms: pct(0.5), p99Ms: pct(0.99), lostPercent: lost });
    });
  });
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

interface Target {
  label: string;
  netns: string;
  server: string;
  queryFile: string;
}

async function compare(
  ctx: BenchContext,
  names: string,
  subject: Target,
  reference: Target,
  seconds: number,
  rounds: number,
): Promise<void> {
  const runs = new Map<string, PerfResult[]>([
    [`${subject.label}/throughput`, []],
    [`${reference.label}/throughput`, []],
    [`${subject.label}/latency`, []],
    [`${reference.label}/latency`, []],
  ]);
  for (let round = 0; round < rounds; round++) {
    for (const t of [subject, reference]) {
      const base = ['-s', t.server, '-d', t.queryFile, '-l', String(seconds), '-c', '10'];
      ctx.log(`dns bench: ${names} ${t.label} round ${round + 1}/${rounds}`);
      runs.get(`${t.label}/throughput`)!.push(await dnsperf(t.netns, [...base, '-q', '100'], false));
      runs.get(`${t.label}/latency`)!.push(await dnsperf(t.netns, [...base, '-Q', String(GOAL_QPS)], true));
    }
  }
  const qps = (label: string) => median(runs.get(`${label}/throughput`)!.map((r) => r.qps));
  const lat = (label: string, key: 'p50Ms' | 'p99Ms') =>
    median(runs.get(`${label}/latency`)!.map((r) => r[key] ?? Number.NaN));
  const ctxFields = { names, seconds, rounds };
  for (const t of [subject, reference]) {
    ctx.report({
      metric: `${t.label} qps (closed loop, 100 outstanding)`,
      value: qps(t.label),
      unit: 'q/s',
      ...ctxFields,
    });
    ctx.report({
      metric: `${t.label} p50 at ${GOAL_QPS} q/s offered`,
      value: lat(t.label, 'p50Ms'),
      unit: 'ms',
      ...ctxFields,
    });
    ctx.report({
      metric: `${t.label} p99 at ${GOAL_QPS} q/s offered`,
      value: lat(t.label, 'p99Ms'),
      unit: 'ms',
      ...ctxFields,
    });
    const lost = median(runs.get(`${t.label}/throughput`)!.map((r) => r.lostPercent));
    ctx.report({ metric: `${t.label} lost (closed loop)`, value: lost, unit: '%', ...ctxFields });
  }
  ctx.report({
    metric: `qps ratio ${subject.label}/${reference.label}`,
    value: qps(subject.label) / qps(reference.label),
    unit: 'x',
    ...ctxFields,
  });
}

const bench: Benchmark = {
  description:
    'embedded DNS: dnsperf in a sandbox vs unbound with the same records (cluster and forwarded names)',
  async run(ctx) {
    if (process.getuid?.() !== 0) {
      ctx.log('dns bench: SKIPPED: needs root (network namespaces)');
      return;
    }
    const seconds = Number(ctx.flags.get('seconds') ?? 5);
    const rounds = Number(ctx.flags.get('rounds') ?? 2);
    const state = sampleState();
    // The bench's sandbox sees web and pg only through app; cache (dnsrr) is left out on purpose:
    // shuffled answers are never cached, and dnsperf's check is the same for both servers.
    state.services = state.services.filter((s) => s.name !== 'cache');
    state.services[0]!.endpoints = state.services[0]!.endpoints.filter(
      (e) => e.state === EndpointState.ENDPOINT_STATE_ACTIVE && e.networkId === NET_APP,
    );
    const forwarded = Array.from({ length: FORWARDED_NAMES }, (_, i) => `fwd${i}.example.test`);
    let lab: DnsLab | undefined;
    let reference: Unbound | undefined;
    const cleanup = async (): Promise<void> => {
      await reference?.stop().catch(() => {});
      await dnsLabDown(lab, PREFIX);
    };
    // Ctrl-C must not leave namespaces and unbound processes behind.
    const onSignal = (): void => {
      void cleanup().finally(() => process.exit(130));
    };
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    try {
      lab = await dnsLabUp({
        prefix: PREFIX,
        state,
        sandboxTaskId: 'client',
        unbound: { localData: forwarded.map((n) => `${n}. 60 IN A 192.0.2.1`) },
        attemptTimeoutMs: 1000,
        maxAttempts: 3,
      });
      const refDir = join(lab.dir, 'reference');
      mkdirSync(refDir);
      reference = new Unbound(lab.sandboxNetns, '127.0.0.12', refDir, { localData: CLUSTER_LOCAL_DATA });
      await reference.start();
      const clusterFile = join(lab.dir, 'cluster.txt');
      const forwardedFile = join(lab.dir, 'forwarded.txt');
      writeFileSync(clusterFile, `${CLUSTER_QUERIES.join('\n')}\n`);
      writeFileSync(forwardedFile, `${forwarded.map((n) => `${n} A`).join('\n')}\n`);
      await compare(
        ctx,
        'cluster',
        { label: 'meshd', netns: lab.sandboxNetns, server: '127.0.0.11', queryFile: clusterFile },
        { label: 'unbound', netns: lab.sandboxNetns, server: '127.0.0.12', queryFile: clusterFile },
        seconds,
        rounds,
      );
      await compare(
        ctx,
        'forwarded',
        { label: 'meshd->unbound', netns: lab.sandboxNetns, server: '127.0.0.11', queryFile: forwardedFile },
        {
          label: 'unbound direct',
          netns: lab.resolverHost.netns,
          server: lab.upstreamHost.address,
          queryFile: forwardedFile,
        },
        seconds,
        rounds,
      );
    } finally {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      await cleanup();
    }
  },
};

export default bench;
