/**
 * `make demo`: a 3-host mesh in network namespaces (lab prefix `mdemo`), the
 * same flow as test/integration/e2e/cluster.test.ts, narrated. meshd runs in
 * each host through `nsenter --net` (the mount namespace stays the host's, so
 * the namespaces meshd creates are visible); meshctl talks to h1's socket.
 *
 * `KEEP=1` leaves the cluster running; `demo.ts down` tears a kept one down.
 * State (pids, sockets) lives in a fixed directory so a leftover is always
 * found and removed before a new run.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type LabHost, labDown, labUp } from '../lab/lab.js';

const PREFIX = 'mdemo';
const ROOT = fileURLToPath(new URL('../..', import.meta.url)).replace(/\/$/, '');
const MESHD = join(ROOT, 'bin/meshd');
const MESHCTL = join(ROOT, 'bin/meshctl');
const TASK_SERVER = join(ROOT, 'test/integration/dataplane/fixtures/task-server.mjs');
/** Extra task argument: tasks orphaned by kill -9 of their meshd are found by it. */
const MARKER = 'meshd-demo-task';
const DIR = join(tmpdir(), 'meshd-demo');
const STATE = join(DIR, 'pids.json');
const SOCKET = join(DIR, 'h1.sock');
const REQUESTS = 5;
const started = Date.now();

const say = (line: string) =>
  process.stdout.write(`[${((Date.now() - started) / 1000).toFixed(1)}s] ${line}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const flags = (h: LabHost) => [
  '--state-dir',
  join(DIR, h.name),
  '--socket',
  join(DIR, `${h.name}.sock`),
  '--listen-address',
  `${h.address}:4242`,
  '--raft-listen-address',
  `${h.address}:4243`,
  '--netns-prefix',
  h.netnsPrefix,
  '--hostname',
  h.name,
];
const inHost = (h: LabHost, argv: string[], timeout = 60_000) =>
  spawnSync('nsenter', [`--net=/run/netns/${h.netns}`, ...argv], { encoding: 'utf8', timeout });
const meshctl = (...argv: string[]) =>
  spawnSync(MESHCTL, ['--socket', SOCKET, ...argv], { encoding: 'utf8', timeout: 120_000 });

function mustMeshctl(...argv: string[]): string {
  const r = meshctl(...argv);
  if (r.status !== 0) throw new Error(`meshctl ${argv.join(' ')} failed: ${r.stderr.trim()}`);
  return r.stdout;
}

async function waitFor(what: string, probe: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!probe()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(250);
  }
}

function cmdlineOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8');
  } catch {
    return '';
  }
}

/** Kills by exact pid, and only a pid that still runs meshd (pids are reused). */
async function killDaemons(pids: number[]): Promise<void> {
  const alive = () => pids.filter((p) => cmdlineOf(p).includes('meshd'));
  for (const p of alive()) process.kill(p, 'SIGTERM');
  for (let i = 0; i < 40 && alive().length > 0; i++) await sleep(250);
  for (const p of alive()) process.kill(p, 'SIGKILL');
}

function killOrphanedTasks(): void {
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    const argv = cmdlineOf(Number(pid)).split('\0');
    if (argv.includes(MARKER) && argv.includes(TASK_SERVER)) process.kill(Number(pid), 'SIGKILL');
  }
}

async function teardown(): Promise<void> {
  let pids: number[] = [];
  try {
    pids = JSON.parse(readFileSync(STATE, 'utf8')) as number[];
  } catch {
    // no state file: nothing of ours is running
  }
  await killDaemons(pids);
  killOrphanedTasks();
  await labDown(PREFIX);
  rmSync(DIR, { recursive: true, force: true });
}

const daemons = new Map<string, ChildProcess>();

function startDaemon(h: LabHost): void {
  const child = spawn('nsenter', [`--net=/run/netns/${h.netns}`, MESHD, 'run', ...flags(h)], {
    stdio: 'ignore',
    // Own process group: KEEP=1 outlives this script and a terminal's Ctrl-C goes through teardown().
    detached: true,
    env: { ...process.env, LOG_LEVEL: 'warn' },
  });
  daemons.set(h.name, child);
  writeFileSync(STATE, JSON.stringify([...daemons.values()].map((c) => c.pid)));
}

/** "demo.3" -> "h2", from `meshctl service ps demo`. */
function taskNodes(): Map<string, string> {
  const out = new Map<string, string>();
  for (const m of meshctl('service', 'ps', 'demo').stdout.matchAll(
    /(demo\.\d+)\s+(h\d)\s+running\s+running/g,
  ))
    out.set(m[1]!, m[2]!);
  return out;
}

/** REQUESTS requests to target:8080 from the client host; which task answered each. */
function probe(client: LabHost, target: LabHost): string {
  const where = taskNodes();
  const answers: string[] = [];
  for (let n = 0; n < REQUESTS; n++) {
    const r = inHost(client, ['curl', '-s', '--max-time', '3', `http://${target.address}:8080/`], 5_000);
    const task = r.status === 0 ? (r.stdout.split(' ')[0] ?? '') : '';
    answers.push(task === '' ? `FAILED(curl ${r.status})` : `${task}@${where.get(task) ?? '?'}`);
  }
  return `${target.name} ${target.address}:8080 (client ${client.name}) -> ${answers.join(' ')}`;
}

let lab: LabHost[] = [];

async function demo(): Promise<void> {
  say(`tearing down any leftover demo (lab prefix ${PREFIX})`);
  await teardown();
  mkdirSync(DIR, { recursive: true });
  const hosts = (await labUp({ prefix: PREFIX, hosts: 3 })).hosts;
  lab = hosts;
  const [h1, h2, h3] = hosts as [LabHost, LabHost, LabHost];
  say(`lab up: ${hosts.map((h) => `${h.name}=${h.address}`).join(' ')}`);

  const init = inHost(h1, [MESHD, 'init', ...flags(h1)]);
  if (init.status !== 0) throw new Error(`meshd init on h1 failed: ${init.stderr.trim()}`);
  startDaemon(h1);
  await waitFor('h1 control socket', () => meshctl('node', 'ls').status === 0, 30_000);
  const token = mustMeshctl('join-token', '-q', 'worker').trim();
  for (const h of [h2, h3]) {
    const j = inHost(h, [MESHD, 'join', '--token', token, `${h1.address}:4242`, ...flags(h)]);
    if (j.status !== 0) throw new Error(`meshd join on ${h.name} failed: ${j.stderr.trim()}`);
    startDaemon(h);
  }
  await waitFor(
    '3 ready nodes',
    () => (meshctl('node', 'ls').stdout.match(/\sready\s/g) ?? []).length === 3,
    30_000,
  );
  say('meshd init on h1, h2 and h3 joined as workers:');
  process.stdout.write(mustMeshctl('node', 'ls'));

  mustMeshctl('network', 'create', 'app');
  say('overlay network "app" created; creating service "demo": 5 replicas, published 8080 -> 80');
  const task = `exec /usr/bin/env node ${TASK_SERVER} demo.$MESHD_TASK_SLOT 80 ${MARKER}`;
  process.stdout.write(
    mustMeshctl(
      'service',
      'create',
      '--name',
      'demo',
      '--replicas',
      '5',
      '-p',
      '8080:80',
      '--network',
      'app',
      '--',
      '/bin/sh',
      '-c',
      task,
    ),
  );
  process.stdout.write(mustMeshctl('service', 'ps', 'demo'));

  say(`${REQUESTS} requests to each host's published port (task@node that answered):`);
  for (const [i, target] of hosts.entries()) say(`  ${probe(hosts[(i + 1) % hosts.length]!, target)}`);

  say('kill -9 of the meshd on worker h3');
  daemons.get('h3')?.kill('SIGKILL');
  await waitFor(
    'h3 down and 5 tasks running on h1/h2',
    () =>
      /h3\s+down/.test(meshctl('node', 'ls').stdout) &&
      [...taskNodes().values()].filter((n) => n === 'h1' || n === 'h2').length === 5,
    30_000,
  );
  say('h3 is down and its tasks were replaced on h1 and h2:');
  process.stdout.write(mustMeshctl('node', 'ls'));
  process.stdout.write(mustMeshctl('service', 'ps', 'demo'));
  say('the published port still answers on the remaining hosts:');
  say(`  ${probe(h2, h1)}`);
  say(`  ${probe(h1, h2)}`);
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0)
    throw new Error('make demo needs root (network namespaces): run it with sudo');
  if (process.argv[2] === 'down') {
    await teardown();
    say('demo torn down');
    return;
  }
  let interrupted = false;
  const onSignal = () => {
    interrupted = true;
    say('interrupted: tearing down');
    void teardown().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const keep = process.env.KEEP === '1';
  try {
    await demo();
    if (keep) {
      say('KEEP=1: the cluster keeps running (h1 and h2; h3 was killed). Try:');
      process.stdout.write(`  ${MESHCTL} --socket ${SOCKET} service ps demo\n`);
      process.stdout.write(`  ${MESHCTL} --socket ${SOCKET} node ls\n`);
      process.stdout.write(
        `  nsenter --net=/run/netns/${lab[1]!.netns} curl -s http://${lab[0]!.address}:8080/\n`,
      );
      process.stdout.write(`Tear it down with: cd ${ROOT} && node --import tsx scripts/demo/demo.ts down\n`);
      for (const c of daemons.values()) c.unref();
      return;
    }
  } catch (e) {
    if (interrupted) return;
    process.stderr.write(`demo failed: ${(e as Error).message}\n`);
    process.exitCode = 1;
  }
  if (interrupted) return;
  say('tearing down');
  await teardown();
  say(`done in ${((Date.now() - started) / 1000).toFixed(1)}s`);
}

await main();
