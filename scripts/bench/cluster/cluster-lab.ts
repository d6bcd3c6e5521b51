/**
 * A 3-host meshd cluster on the netns lab for `bench cluster` (lab prefix
 * `mdcb`): h1 `meshd init` (manager, also runs tasks), h2 and h3 join as
 * workers, each `meshd run` under `nsenter --net` like the e2e test and
 * `make demo`. The bench talks to h1's control socket in-process (the same
 * gRPC client meshctl uses), so no CLI start-up is timed.
 *
 * Every task runs `busybox httpd -f` with the run's own docroot, so a task
 * process is found by that path in its command line, and its task ID by
 * MESHD_TASK_ID in its environment. Teardown kills by exact pid (checked
 * against /proc first: pids are reused) and removes the lab by prefix, also
 * after a failure.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { nftToolExecutor } from '../../../dataplane/lb/nft/executor.js';
import { TABLE } from '../../../dataplane/lb/nft/render.js';
import { networkNetnsName } from '../../../dataplane/overlay/names.js';
import { connectSocket, type MeshdClients } from '../../../src/meshctl/client.js';
import { type LabHost, labDown, labUp } from '../../lab/lab.js';

export const LAB_PREFIX = 'mdcb';
const ROOT = fileURLToPath(new URL('../../..', import.meta.url)).replace(/\/$/, '');
const MESHD = join(ROOT, 'bin/meshd');
const MESHCTL = join(ROOT, 'bin/meshctl');
const DIR = join(tmpdir(), 'meshd-bench-cluster');
/** The docroot is also the marker that finds this bench's task processes. */
export const DOCROOT = join(DIR, 'www');
export const TASK_COMMAND = ['/usr/bin/busybox', 'httpd', '-f', '-p', '80', '-h', DOCROOT];
const RPC_TIMEOUT_MS = 60_000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function cmdlineOf(pid: number): string[] {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  } catch {
    return [];
  }
}

function taskIdOf(pid: number): string | undefined {
  try {
    const env = readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
    return env.find((e) => e.startsWith('MESHD_TASK_ID='))?.slice('MESHD_TASK_ID='.length);
  } catch {
    return undefined;
  }
}

function pgidOf(pid: number): number | undefined {
  try {
    // Fields after the ")" of the command name: state ppid pgrp ...
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[2]);
  } catch {
    return undefined;
  }
}

/**
 * Task processes of this bench by task ID: the process-group leader running
 * httpd with our docroot (httpd's per-connection children share its group).
 */
export function taskProcesses(): Map<string, number> {
  const out = new Map<string, number>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    const argv = cmdlineOf(pid);
    if (!argv.includes(DOCROOT) || !argv.includes('httpd') || pgidOf(pid) !== pid) continue;
    const id = taskIdOf(pid);
    if (id !== undefined) out.set(id, pid);
  }
  return out;
}

/** SIGKILL to the task's whole process group, like a crash of the task. */
export function killTask(pid: number): void {
  if (cmdlineOf(pid).includes(DOCROOT)) process.kill(-pid, 'SIGKILL');
}

function killStrayTasks(): void {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    if (cmdlineOf(Number(entry)).includes(DOCROOT)) {
      try {
        process.kill(Number(entry), 'SIGKILL');
      } catch {
        // exited meanwhile
      }
    }
  }
}

export class ClusterLab {
  hosts: LabHost[] = [];
  readonly daemons = new Map<string, ChildProcess>();
  clients: MeshdClients | undefined;
  ingressNetworkId = '';

  /** With `logDir`, each meshd logs at info level to `<logDir>/<host>.log` (for finding where time goes). */
  constructor(private readonly logDir?: string) {}

  get control() {
    if (this.clients === undefined) throw new Error('cluster not started');
    return this.clients.control;
  }

  ingressNetns(h: LabHost): string {
    return networkNetnsName(h.netnsPrefix, this.ingressNetworkId);
  }

  private flags(h: LabHost): string[] {
    return [
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
  }

  inHost(h: LabHost, argv: string[], timeoutMs = 60_000) {
    return spawnSync('nsenter', [`--net=/run/netns/${h.netns}`, ...argv], {
      encoding: 'utf8',
      timeout: timeoutMs,
    });
  }

  private startDaemon(h: LabHost): void {
    const log = this.logDir === undefined ? 'ignore' : openSync(join(this.logDir, `${h.name}.log`), 'a');
    const child = spawn('nsenter', [`--net=/run/netns/${h.netns}`, MESHD, 'run', ...this.flags(h)], {
      stdio: ['ignore', log, log],
      env: { ...process.env, LOG_LEVEL: this.logDir === undefined ? 'warn' : 'info' },
    });
    if (typeof log === 'number') closeSync(log);
    this.daemons.set(h.name, child);
    writeFileSync(join(DIR, 'pids.json'), JSON.stringify([...this.daemons.values()].map((c) => c.pid)));
  }

  /** Lab up, init on h1, h2 and h3 joined, 3 nodes ready, ingress network known. */
  async start(log: (m: string) => void): Promise<void> {
    await this.teardown();
    mkdirSync(DOCROOT, { recursive: true });
    writeFileSync(join(DOCROOT, 'index.html'), 'ok\n');
    this.hosts = (await labUp({ prefix: LAB_PREFIX, hosts: 3 })).hosts;
    const [h1, ...workers] = this.hosts as [LabHost, LabHost, LabHost];
    const init = this.inHost(h1, [MESHD, 'init', ...this.flags(h1)]);
    if (init.status !== 0) throw new Error(`meshd init on h1 failed: ${init.stderr.trim()}`);
    this.startDaemon(h1);
    const socket = join(DIR, 'h1.sock');
    this.clients = connectSocket(socket, RPC_TIMEOUT_MS);
    await this.until(
      'h1 control socket',
      async () => (await this.control.listNodes({ read: undefined })).nodes.length > 0,
    );
    const token = spawnSync(MESHCTL, ['--socket', socket, 'join-token', '-q', 'worker'], {
      encoding: 'utf8',
      timeout: 60_000,
    }).stdout.trim();
    for (const h of workers) {
      const j = this.inHost(h, [MESHD, 'join', '--token', token, `${h1.address}:4242`, ...this.flags(h)]);
      if (j.status !== 0) throw new Error(`meshd join on ${h.name} failed: ${j.stderr.trim()}`);
      this.startDaemon(h);
    }
    await this.until('3 ready nodes', async () => {
      const { nodes } = await this.control.listNodes({ read: undefined });
      return nodes.filter((n) => n.state === 3 /* READY */).length === 3;
    });
    const { networks } = await this.control.listNetworks({ read: undefined });
    this.ingressNetworkId = networks.find((n) => n.ingress)?.meta?.id ?? '';
    if (this.ingressNetworkId === '') throw new Error('no ingress network after init');
    // The namespace file appears before meshd has mounted it: wait until `nft` can enter it
    // (a host with no service yet may have no LB table, which is fine), or a monitor or
    // helper started now would sit in no namespace at all.
    await this.until(
      "every host's ingress namespace usable",
      async () => {
        for (const h of this.hosts) {
          const ns = this.ingressNetns(h);
          if (!existsSync(`/run/netns/${ns}`)) return false;
          await nftToolExecutor.listTableJson(ns, TABLE);
        }
        return true;
      },
      120_000,
    );
    log(`cluster up: ${this.hosts.map((h) => `${h.name}=${h.address}`).join(' ')} (h1 manager)`);
  }

  async until(what: string, probe: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        if (await probe()) return;
      } catch {
        // not up yet
      }
      if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
      await sleep(200);
    }
  }

  /** Removes every service and waits (bounded) for their processes: a clean slate after a failure. */
  async removeAllServices(timeoutMs: number): Promise<void> {
    const { services } = await this.control.listServices({ read: undefined });
    for (const s of services) await this.control.deleteService({ service: s.meta?.id ?? '' });
    await this.until('task processes gone', async () => taskProcesses().size === 0, timeoutMs);
  }

  /** kill -9 of a host's meshd (its tasks live on: see taskProcesses). */
  killDaemon(name: string): void {
    const child = this.daemons.get(name);
    if (child?.pid !== undefined && cmdlineOf(child.pid).some((a) => a.includes('meshd')))
      child.kill('SIGKILL');
  }

  /** Stops meshd everywhere (TERM, then KILL), kills stray tasks, removes the lab. */
  async teardown(): Promise<void> {
    this.clients?.close();
    this.clients = undefined;
    let pids: number[] = [];
    try {
      pids = JSON.parse(readFileSync(join(DIR, 'pids.json'), 'utf8')) as number[];
    } catch {
      // no state: nothing of ours runs
    }
    const alive = () => pids.filter((p) => cmdlineOf(p).some((a) => a.includes('meshd')));
    for (const p of alive()) process.kill(p, 'SIGTERM');
    for (let i = 0; i < 40 && alive().length > 0; i++) await sleep(250);
    for (const p of alive()) process.kill(p, 'SIGKILL');
    killStrayTasks();
    await labDown(LAB_PREFIX);
    rmSync(DIR, { recursive: true, force: true });
    this.daemons.clear();
  }
}
