/**
 * npm run bench -- raft [--json] [--trials N] [--proposals N]
 *
 * Three kv-process managers as separate processes on loopback, real WAL with
 * fdatasync, gRPC over mutual TLS, default timers (heartbeat 100 ms,
 * election 1000 ms). Reference numbers measured in the same run: the raw
 * fdatasync floor on the same filesystem, and a loopback TCP round trip.
 */
import { closeSync, fdatasyncSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KvProcessCluster } from '../../controlplane/raft/driver/kv-cluster.js';
import { mintTlsFixture } from '../../test/unit/raft/transport/tls-fixture.js';
import type { BenchContext, Benchmark } from './types.js';

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? 0;
}

/** Median time of one small append + fdatasync, the floor under any durable commit. */
function fdatasyncFloorMs(dir: string, samples: number): number {
  const fd = openSync(join(dir, 'floor.bin'), 'w');
  const record = Buffer.alloc(128, 7);
  const times: number[] = [];
  try {
    for (let i = 0; i < samples; i++) {
      const t0 = performance.now();
      writeSync(fd, record);
      fdatasyncSync(fd);
      times.push(performance.now() - t0);
    }
  } finally {
    closeSync(fd);
  }
  return median(times);
}

/** Median round trip of a 64-byte ping over loopback TCP. */
async function loopbackRttMs(samples: number): Promise<number> {
  const server = createServer((s) => s.on('data', (d) => s.write(d)));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as { port: number }).port;
  const sock = createConnection({ port, host: '127.0.0.1', noDelay: true });
  await new Promise<void>((r) => sock.once('connect', () => r()));
  const times: number[] = [];
  const ping = Buffer.alloc(64, 1);
  try {
    for (let i = 0; i < samples; i++) {
      const t0 = performance.now();
      await new Promise<void>((resolve) => {
        let got = 0;
        const onData = (d: Buffer) => {
          got += d.length;
          if (got >= ping.length) {
            sock.off('data', onData);
            resolve();
          }
        };
        sock.on('data', onData);
        sock.write(ping);
      });
      times.push(performance.now() - t0);
    }
  } finally {
    sock.destroy();
    await new Promise<void>((r) => server.close(() => r()));
  }
  return median(times);
}

async function failoverTrialMs(cluster: KvProcessCluster, ctx: BenchContext, trial: number): Promise<number> {
  const leader = await cluster.leader(20_000);
  const others = cluster.running().filter((id) => id !== leader);
  const t0 = performance.now();
  await cluster.kill9(leader);
  // First commit on the new leader: keep writing to the survivors until one acknowledges.
  let elapsed = Number.NaN;
  for (let attempt = 0; attempt < 2000 && Number.isNaN(elapsed); attempt++) {
    const replies = await Promise.all(
      others.map((id) => cluster.request(id, { op: 'put', k: `failover-${trial}-${attempt}`, v: 'x' }, 250)),
    );
    if (replies.some((r) => r.ok)) elapsed = performance.now() - t0;
    else await new Promise((r) => setTimeout(r, 5));
  }
  ctx.log(`failover trial ${trial}: ${elapsed.toFixed(0)} ms (killed ${leader})`);
  await cluster.startNode(leader);
  await new Promise((r) => setTimeout(r, 1500));
  return elapsed;
}

interface Counters {
  syncs: Map<string, number>;
  syncMs: Map<string, number>;
  cpuMicros: number;
}

async function snapshotCounters(cluster: KvProcessCluster): Promise<Counters> {
  const out: Counters = { syncs: new Map(), syncMs: new Map(), cpuMicros: 0 };
  for (const id of cluster.running()) {
    const r = await cluster.request(id, { op: 'status' }, 5000);
    const wal = r['wal'] as { syncs: number; syncMs: number };
    const cpu = r['cpuMicros'] as { user: number; system: number };
    out.syncs.set(id, wal.syncs);
    out.syncMs.set(id, wal.syncMs);
    out.cpuMicros += cpu.user + cpu.system;
  }
  return out;
}

const bench: Benchmark = {
  description: 'Raft: commit latency vs the fdatasync floor, throughput with 64 proposers, failover, RSS',
  async run(ctx) {
    const trials = Number(ctx.flags.get('trials') ?? 5);
    const proposals = Number(ctx.flags.get('proposals') ?? 20_000);
    const root = mkdtempSync(join(tmpdir(), 'meshd-bench-raft-'));
    const cluster = new KvProcessCluster({
      ids: ['b1', 'b2', 'b3'],
      root,
      ...mintTlsFixture().writeTo(root),
    });
    try {
      const floor = fdatasyncFloorMs(root, 300);
      const rtt = await loopbackRttMs(500);
      ctx.report({ metric: 'fdatasync floor p50', value: +floor.toFixed(3), unit: 'ms' });
      ctx.report({ metric: 'loopback TCP RTT p50', value: +rtt.toFixed(3), unit: 'ms' });

      await cluster.startAll();
      const leader = await cluster.leader(20_000);
      ctx.log(`leader ${leader}; measuring one-client commit latency`);
      await cluster.request(leader, { op: 'bench', count: 100, concurrency: 1 }, 60_000);
      const one = await cluster.request(
        leader,
        { op: 'bench', count: 1000, concurrency: 1, valueBytes: 100 },
        120_000,
      );
      if (!one.ok) throw new Error(`latency run failed: ${one.error}`);
      const p50 = one['p50Ms'] as number;
      ctx.report({ metric: 'commit latency p50 (1 client)', value: +p50.toFixed(3), unit: 'ms' });
      ctx.report({
        metric: 'commit latency p99 (1 client)',
        value: +(one['p99Ms'] as number).toFixed(3),
        unit: 'ms',
      });
      ctx.report({
        metric: 'commit p50 / fdatasync floor',
        value: +(p50 / floor).toFixed(2),
        unit: 'ratio',
        goal: '<= 3',
      });

      ctx.log(`measuring throughput: ${proposals} proposals from 64 concurrent proposers`);
      const before = await snapshotCounters(cluster);
      const many = await cluster.request(
        leader,
        { op: 'bench', count: proposals, concurrency: 64, valueBytes: 100 },
        300_000,
      );
      if (!many.ok) throw new Error(`throughput run failed: ${many.error}`);
      const after = await snapshotCounters(cluster);
      const committed = many['committed'] as number;
      ctx.report({
        metric: 'commits/s (64 proposers)',
        value: Math.round(many['commitsPerSec'] as number),
        unit: '1/s',
        goal: '>= 20000',
      });
      ctx.report({
        metric: 'commit latency p50 (64 proposers)',
        value: +(many['p50Ms'] as number).toFixed(2),
        unit: 'ms',
      });
      ctx.report({
        metric: 'commit latency p99 (64 proposers)',
        value: +(many['p99Ms'] as number).toFixed(2),
        unit: 'ms',
      });
      const leaderSyncs = after.syncs.get(leader)! - before.syncs.get(leader)!;
      const leaderSyncMs = after.syncMs.get(leader)! - before.syncMs.get(leader)!;
      ctx.report({
        metric: 'entries per fdatasync on the leader (group commit)',
        value: +(committed / leaderSyncs).toFixed(1),
        unit: 'entries',
      });
      ctx.report({
        metric: 'fdatasync mean on the leader under load',
        value: +(leaderSyncMs / leaderSyncs).toFixed(2),
        unit: 'ms',
      });
      ctx.report({
        metric: 'CPU per commit, 3 managers together',
        value: Math.round((after.cpuMicros - before.cpuMicros) / committed),
        unit: 'us',
      });

      const rss = await cluster.request(leader, { op: 'status' }, 5000);
      ctx.report({
        metric: 'leader RSS after load',
        value: Math.round((rss['rssBytes'] as number) / 2 ** 20),
        unit: 'MiB',
      });

      const failovers: number[] = [];
      for (let t = 1; t <= trials; t++) failovers.push(await failoverTrialMs(cluster, ctx, t));
      ctx.report({
        metric: `failover median (${trials} trials, kill -9 leader → first commit)`,
        value: Math.round(median(failovers)),
        unit: 'ms',
        goal: '< 2000',
      });
      ctx.report({ metric: 'failover max', value: Math.round(Math.max(...failovers)), unit: 'ms' });
    } finally {
      await cluster.shutdown();
      rmSync(root, { recursive: true, force: true });
    }
  },
};

export default bench;
