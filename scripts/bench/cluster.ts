/**
 * npm run bench -- cluster [--sizes 10,100,500] [--trials 20] [--node-replicas 15] [--logs DIR] [--json]
 *
 * On the netns lab (3 hosts, prefix `mdcb`, nftables LB; root only), real
 * `meshd run` on each host, tasks `busybox httpd -f` (about 1 MB each):
 * - create: `service create --replicas N` → N running, every host's ingress
 *   LB lists all N, each answers an HTTP GET from every host's LB namespace;
 * - task death: a task's process group SIGKILLed → its backend gone from
 *   every host's LB (p50/p99 over the trials);
 * - node death: kill -9 of worker h3's meshd and its tasks → declared down,
 *   gone from h1/h2's LBs, replaced, converged.
 * LB state comes from `nft monitor` + `nft -j list table` per host
 * (cluster/lb-watch.ts says how the timing error is bounded). The lab and every
 * process are torn down also after a failure or Ctrl-C; the whole run is bounded.
 */
import { mkdirSync } from 'node:fs';
import { ClusterLab } from './cluster/cluster-lab.js';
import { Observers } from './cluster/observe.js';
import { measureCreate, measureNodeDeath, measureTaskDeath } from './cluster/scenarios.js';
import type { BenchContext, Benchmark } from './types.js';

/** The whole run's bound (the issue allows 12 minutes). */
const RUN_LIMIT_MS = 11 * 60_000;
/** Kept for task death, node death and teardown after the creates. */
const FAILURES_RESERVE_MS = 5 * 60_000;
/** How long one create may take before it is cut off and reported as such. */
const CREATE_CAP_MS = (replicas: number) => 60_000 + 600 * replicas;

function flagList(ctx: BenchContext, name: string, fallback: number[]): number[] {
  const v = ctx.flags.get(name);
  if (v === undefined) return fallback;
  const list = String(v).split(',').map(Number);
  if (v === true || list.some((n) => !Number.isInteger(n) || n < 1 || n > 1000))
    throw new Error(`--${name} must be integers 1..1000 separated by commas, got ${String(v)}`);
  return list;
}

async function run(ctx: BenchContext): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('bench cluster needs root (network namespaces)');
  const sizes = flagList(ctx, 'sizes', [10, 100, 500]);
  const [trials] = flagList(ctx, 'trials', [20]);
  const [nodeReplicas] = flagList(ctx, 'node-replicas', [15]);
  const logs = ctx.flags.get('logs');
  if (logs === true) throw new Error('--logs needs a directory, e.g. --logs /tmp/meshd-logs');
  if (logs !== undefined) mkdirSync(logs, { recursive: true });
  const startedMs = Date.now();
  const lab = new ClusterLab(logs);
  const obs = new Observers(lab);
  // One teardown, however many paths (failure, signal, run limit) ask for it.
  let tornDown: Promise<void> | undefined;
  const cleanup = () => {
    tornDown ??= (async () => {
      obs.stop();
      await lab.teardown();
    })();
    return tornDown;
  };
  const onSignal = () => {
    ctx.log('interrupted: tearing down');
    void cleanup().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  // An exception thrown from an event handler skips `finally`: still no stray monitors or helpers.
  const stopObservers = () => obs.stop();
  process.once('exit', stopObservers);
  const limit = setTimeout(() => {
    ctx.log(`bench cluster exceeded ${RUN_LIMIT_MS / 60_000} min: tearing down`);
    void cleanup().finally(() => process.exit(1));
  }, RUN_LIMIT_MS);
  try {
    await lab.start(ctx.log);
    await obs.start();
    const env = { lab, obs, report: ctx.report, log: ctx.log };
    // A failed measurement is a row saying why; the next one still runs.
    const attempt = async (metric: string, f: () => Promise<void>) => {
      ctx.log(metric);
      try {
        await f();
      } catch (err) {
        ctx.report({ metric, value: 'failed', unit: '', note: (err as Error).message });
        ctx.log(`  ${metric} failed: ${(err as Error).message}`);
        await lab.removeAllServices(60_000).catch((e: Error) => ctx.log(`  cleanup: ${e.message}`));
      }
    };
    for (const [i, n] of sizes.entries()) {
      // Each create may use what is left of the run's bound less FAILURES_RESERVE_MS.
      const leftMs = RUN_LIMIT_MS - (Date.now() - startedMs) - FAILURES_RESERVE_MS;
      const capMs = Math.min(CREATE_CAP_MS(n), leftMs);
      if (capMs < 20_000) {
        ctx.log(`create ${n} replicas: skipped, the run's time is used up`);
        ctx.report({
          metric: 'create: running + reachable everywhere',
          value: 'skipped',
          unit: 's',
          replicas: n,
        });
        continue;
      }
      await attempt(`create ${n} replicas (cut off after ${Math.round(capMs / 1000)} s)`, () =>
        measureCreate(env, n, 8000 + i, capMs),
      );
    }
    await attempt(`task death x ${trials}`, () => measureTaskDeath(env, trials!, 8100));
    await attempt(`node death (${nodeReplicas} replicas)`, () => measureNodeDeath(env, nodeReplicas!, 8200));
    for (const [host, { watcher, prober }] of obs.byHost)
      ctx.log(
        `  ${host}: ${watcher.lists} nft lists, ${watcher.safetyHits} changes seen only by the safety poll, ${watcher.monitorRestarts} monitor and ${prober.restarts} probe-helper restarts`,
      );
  } finally {
    clearTimeout(limit);
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    process.off('exit', stopObservers);
    await cleanup();
  }
}

const benchmark: Benchmark = {
  description: 'cluster convergence on the 3-host netns lab: create, task death, node death',
  run,
};
export default benchmark;
