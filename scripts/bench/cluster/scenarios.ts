/**
 * The three measurements of `bench cluster`, each on a running ClusterLab
 * with its Observers. Every wait is bounded; a timeout is an error naming
 * what did not happen.
 */
import { NodeState, TaskState } from '../../../src/api/gen/meshd/v1/objects.js';
import { serviceSpecFromFlags } from '../../../src/meshctl/service-flags.js';
import type { ResultRow } from '../../lib/report.js';
import { type ClusterLab, killTask, TASK_COMMAND, taskProcesses } from './cluster-lab.js';
import { latest, nowMs, type Observers, quantile } from './observe.js';

export interface ScenarioEnv {
  lab: ClusterLab;
  obs: Observers;
  report(row: ResultRow): void;
  log(message: string): void;
}

const seconds = (ms: number) => Math.round(ms) / 1000;

function must(stamp: number, what: string): number {
  if (Number.isNaN(stamp)) throw new Error(`timed out waiting for ${what}`);
  return stamp;
}

async function createService(env: ScenarioEnv, name: string, replicas: number, port: number, extra = {}) {
  const spec = serviceSpecFromFlags(
    { name, replicas: String(replicas), publish: [`${port}:80`], ...extra },
    TASK_COMMAND,
  );
  const { service } = await env.lab.control.createService({ spec });
  return service?.meta?.id ?? '';
}

async function runningTasks(env: ScenarioEnv, serviceId: string, all = false) {
  const { tasks } = await env.lab.control.listTasks({ service: serviceId, node: '', all, read: undefined });
  return all ? tasks : tasks.filter((t) => t.status?.state === TaskState.TASK_STATE_RUNNING);
}

function ingressAddress(env: ScenarioEnv, task: { networks: { networkId: string; address: string }[] }) {
  const a = task.networks.find((n) => n.networkId === env.lab.ingressNetworkId)?.address ?? '';
  return a.split('/')[0] ?? '';
}

const stampOf = (t: { status?: { timestamp?: { unixMs: unknown } | undefined } | undefined }) =>
  Number(t.status?.timestamp?.unixMs ?? Number.NaN);

/** Untimed check that the published port answers on each host from another host. */
function checkPublishedPort(env: ScenarioEnv, hosts: string[], port: number): void {
  const lab = env.lab.hosts.filter((h) => hosts.includes(h.name));
  lab.forEach((target, i) => {
    const client = lab[(i + 1) % lab.length]!;
    for (let n = 0; n < 3; n++) {
      const url = `http://${target.address}:${port}/`;
      const r = env.lab.inHost(client, ['curl', '-s', '--max-time', '3', url], 5_000);
      if (r.status !== 0 || r.stdout.trim() !== 'ok')
        throw new Error(`${url} from ${client.name} did not answer (curl exit ${r.status})`);
    }
  });
}

/** The LB of every host in `hosts` lists exactly the ingress addresses of `tasks`. */
function checkLbMatchesTasks(env: ScenarioEnv, hosts: string[], port: number, addresses: Set<string>) {
  for (const host of hosts) {
    const listed = env.obs.of(host).watcher.latest.ports.get(port) ?? new Set<string>();
    const wrong = [...listed].filter((a) => !addresses.has(a));
    if (wrong.length > 0 || listed.size !== addresses.size)
      throw new Error(
        `LB of ${host} port ${port} lists ${listed.size} backends (${wrong.length} not running tasks), want ${addresses.size}`,
      );
  }
}

/** Waits until every host's LB lists `count` backends for `port`, all answering; returns the stamp. */
async function convergedAt(
  env: ScenarioEnv,
  hosts: string[],
  port: number,
  count: number,
  tag: string,
  timeoutMs: number,
) {
  const deadline = nowMs() + timeoutMs;
  const inLb = await Promise.all(
    hosts.map((h) => env.obs.of(h).watcher.when((s) => s.ports.get(port)?.size === count, timeoutMs)),
  );
  const left = Math.max(0, deadline - nowMs());
  const reach = await Promise.all(hosts.map((h) => env.obs.reachableAt(h, port, count, tag, left)));
  return { inLb: latest(inLb), reachable: latest([...inLb, ...reach]) };
}

/**
 * `service create --replicas n` → n running, in every LB, answering from
 * every host. Past `timeoutMs` it reports how far it got instead. Then the
 * service is removed and its processes awaited (bounded), so the next
 * measurement starts on a quiet cluster.
 */
export async function measureCreate(env: ScenarioEnv, n: number, port: number, timeoutMs: number) {
  const hosts = env.lab.hosts.map((h) => h.name);
  const name = `c${n}`;
  const ctx = { replicas: n, hosts: 3 };
  const feed = env.obs.probeListed(hosts, port);
  const t0 = nowMs();
  const id = await createService(env, name, n, port);
  const at = await convergedAt(env, hosts, port, n, feed.tag, timeoutMs);
  feed.stop();
  if (Number.isNaN(at.reachable)) {
    const fewest = Math.min(...hosts.map((h) => env.obs.of(h).watcher.latest.ports.get(port)?.size ?? 0));
    const running = (await runningTasks(env, id)).length;
    env.report({
      metric: 'create: running + reachable everywhere',
      value: `>${seconds(timeoutMs)}`,
      unit: 's',
      ...ctx,
      note: `cut off: ${running}/${n} running, ${fewest}/${n} in every LB`,
    });
    env.log(`  ${name}: cut off after ${seconds(timeoutMs)} s: ${running} running, ${fewest} in every LB`);
    await env.lab.control.deleteService({ service: id });
    await env.lab
      .until(`${name}: task processes gone`, async () => taskProcesses().size === 0, 90_000)
      .catch((err: Error) => env.log(`  ${err.message}; going on`));
    return;
  }
  const tasks = await runningTasks(env, id);
  if (tasks.length !== n) throw new Error(`${name}: ${tasks.length} of ${n} tasks running after convergence`);
  checkLbMatchesTasks(env, hosts, port, new Set(tasks.map((t) => ingressAddress(env, t))));
  checkPublishedPort(env, hosts, port);
  const runningAt = Math.max(...tasks.map(stampOf));
  const row = (metric: string, ms: number) => env.report({ metric, value: seconds(ms), unit: 's', ...ctx });
  row('create: all running (reported)', runningAt - t0);
  row("create: in every host's LB", at.inLb - t0);
  row('create: running + reachable everywhere', at.reachable - t0);
  env.log(`  ${name}: converged in ${seconds(at.reachable - t0)} s`);

  const t1 = nowMs();
  await env.lab.control.deleteService({ service: id });
  const gone = await Promise.all(
    hosts.map((h) => env.obs.of(h).watcher.when((s) => (s.ports.get(port)?.size ?? 0) === 0, timeoutMs)),
  );
  row("rm: gone from every host's LB", must(latest(gone), `${name}: removed from every LB`) - t1);
  await env.lab.until(`${name}: task processes gone`, async () => taskProcesses().size === 0, timeoutMs);
}

/** A task's process killed (SIGKILL to its group) → its backend gone from every host's LB. */
export async function measureTaskDeath(env: ScenarioEnv, trials: number, port: number) {
  const hosts = env.lab.hosts.map((h) => h.name);
  const replicas = 6;
  // A restart delay keeps the replacement (which may reuse the address) out of the LB
  // until after the removal, so the removal is always visible as its own commit.
  const id = await createService(env, 'td', replicas, port, { restartDelay: '1s' });
  const setup = env.obs.probeListed(hosts, port);
  must((await convergedAt(env, hosts, port, replicas, setup.tag, 120_000)).reachable, 'td converged');
  setup.stop();
  const { nodes } = await env.lab.control.listNodes({ read: undefined });
  const hostOf = new Map(nodes.map((n) => [n.meta?.id ?? '', n.hostname]));
  const removed: number[] = [];
  const firstRemoved: number[] = [];
  const reported: number[] = [];
  let cutShort = '';
  for (let i = 0; i < trials && cutShort === ''; i++) {
    try {
      await taskDeathTrial(i);
    } catch (err) {
      // Trials done so far still count; the row says why there are fewer.
      cutShort = (err as Error).message;
      env.log(`  task death: stopped after ${removed.length} trials: ${cutShort}`);
    }
  }
  async function taskDeathTrial(i: number): Promise<void> {
    const host = hosts[i % hosts.length]!;
    const task = (await runningTasks(env, id)).find((t) => hostOf.get(t.nodeId) === host);
    if (task === undefined) throw new Error(`td: no running task on ${host} for trial ${i + 1}`);
    const address = ingressAddress(env, task);
    const pid = taskProcesses().get(task.meta?.id ?? '');
    if (pid === undefined) throw new Error(`td: no process for task ${task.meta?.id} on ${host}`);
    const t0 = nowMs();
    killTask(pid);
    const gone = await Promise.all(
      hosts.map((h) => env.obs.of(h).watcher.when((s) => !s.ports.get(port)?.has(address), 10_000)),
    );
    removed.push(must(latest(gone), `td trial ${i + 1}: ${address} gone from every LB`) - t0);
    firstRemoved.push(Math.min(...gone) - t0);
    const history = await runningTasks(env, id, true);
    const dead = history.find((t) => t.meta?.id === task.meta?.id);
    reported.push(stampOf(dead ?? {}) - t0);
    const again = env.obs.probeListed(hosts, port);
    must((await convergedAt(env, hosts, port, replicas, again.tag, 30_000)).reachable, 'td replaced');
    again.stop();
  }
  const ctx = { trials: removed.length, replicas, hosts: 3, ...(cutShort ? { note: cutShort } : {}) };
  for (const [label, values] of [
    ['task death: failure reported', reported],
    ['task death: gone from the first LB', firstRemoved],
    ['task death: gone from every LB', removed],
  ] as const) {
    env.report({ metric: `${label} p50`, value: Math.round(quantile([...values], 0.5)), unit: 'ms', ...ctx });
    env.report({
      metric: `${label} p99`,
      value: Math.round(quantile([...values], 0.99)),
      unit: 'ms',
      ...ctx,
    });
  }
  env.log(
    `  task death: removed p50 ${quantile(removed, 0.5).toFixed(0)} ms, p99 ${quantile(removed, 0.99).toFixed(0)} ms`,
  );
  await env.lab.control.deleteService({ service: id });
  await env.lab.until('td: task processes gone', async () => taskProcesses().size === 0, 60_000);
}

/** kill -9 of worker h3's meshd and its tasks → down, gone from the LBs, replaced, reachable. */
export async function measureNodeDeath(env: ScenarioEnv, replicas: number, port: number) {
  const hosts = env.lab.hosts.map((h) => h.name);
  const survivors = hosts.filter((h) => h !== 'h3');
  const id = await createService(env, 'nd', replicas, port);
  const setup = env.obs.probeListed(hosts, port);
  must((await convergedAt(env, hosts, port, replicas, setup.tag, 120_000)).reachable, 'nd converged');
  setup.stop();
  const { nodes } = await env.lab.control.listNodes({ read: undefined });
  const h3 = nodes.find((n) => n.hostname === 'h3')?.meta?.id ?? '';
  const victims = (await runningTasks(env, id)).filter((t) => t.nodeId === h3);
  const addresses = new Set(victims.map((t) => ingressAddress(env, t)));
  const processes = taskProcesses();
  const pids = victims.map((t) => processes.get(t.meta?.id ?? ''));
  if (victims.length === 0 || pids.some((p) => p === undefined))
    throw new Error(`nd: h3 runs ${victims.length} tasks, not all with a process`);

  const feed = env.obs.probeListed(survivors, port);
  const t0 = nowMs();
  env.lab.killDaemon('h3');
  for (const pid of pids) killTask(pid!);
  const gone = await Promise.all(
    survivors.map((h) =>
      env.obs.of(h).watcher.when((s) => ![...addresses].some((a) => s.ports.get(port)?.has(a)), 30_000),
    ),
  );
  must(latest(gone), `nd: h3's tasks gone from the LBs of ${survivors.join(', ')}`);
  const at = await convergedAt(env, survivors, port, replicas, feed.tag, 60_000);
  feed.stop();
  must(at.reachable, `nd: ${replicas} backends in the LBs of ${survivors.join(', ')}, all answering`);
  const down = (await env.lab.control.listNodes({ read: undefined })).nodes.find((n) => n.meta?.id === h3);
  if (down?.state !== NodeState.NODE_STATE_DOWN) throw new Error('nd: h3 not DOWN after convergence');
  const tasks = await runningTasks(env, id);
  if (tasks.length !== replicas || tasks.some((t) => t.nodeId === h3))
    throw new Error(`nd: ${tasks.length} of ${replicas} running, want all on h1/h2`);
  checkLbMatchesTasks(env, survivors, port, new Set(tasks.map((t) => ingressAddress(env, t))));
  checkPublishedPort(env, survivors, port);
  const replacedAt = Math.max(...tasks.filter((t) => !addresses.has(ingressAddress(env, t))).map(stampOf));
  const ctx = { replicas, killed: victims.length, hosts: 3 };
  const row = (metric: string, ms: number) => env.report({ metric, value: seconds(ms), unit: 's', ...ctx });
  row('node death: declared down', Number(down.stateChangedAt?.unixMs ?? Number.NaN) - t0);
  row('node death: its tasks gone from every LB', latest(gone) - t0);
  row('node death: replacements running (reported)', replacedAt - t0);
  row('node death: converged (every LB, all reachable)', at.reachable - t0);
  env.log(`  node death: converged in ${seconds(at.reachable - t0)} s`);
  await env.lab.control.deleteService({ service: id });
  await env.lab.until('nd: task processes gone', async () => taskProcesses().size === 0, 60_000);
}
