/**
 * A netns lab running real meshd processes for the CA and membership tests:
 * each host's state dir and socket live under one temp dir; meshd and
 * meshctl run inside the host's namespace (nsenter) or on its socket.
 */
import { type ChildProcess, type SpawnSyncReturns, spawn, spawnSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type LabHost, labDown, labUp } from '../../../scripts/lab/lab.js';
import { NodeRole, NodeState } from '../../../src/api/gen/meshd/v1/objects.js';
import { connectSocket, type MeshdClients } from '../../../src/meshctl/client.js';
import { waitFor } from '../../lib/wait.js';

export type ProbeAnswer = { state?: number; role?: string; code?: number | string; details?: string };

const ROOT = fileURLToPath(new URL('../../..', import.meta.url));
const MESHD = join(ROOT, 'bin/meshd');
const MESHCTL = join(ROOT, 'bin/meshctl');
const PROBE = join(ROOT, 'test/integration/ca/probe-ca.ts');
export const CLUSTER_PORT = 4242;

export class ClusterLab {
  readonly dir = mkdtempSync(join(tmpdir(), 'meshd-ca-'));
  hosts: LabHost[] = [];
  private readonly daemons = new Map<string, ChildProcess>();
  private readonly sockets = new Map<string, MeshdClients>();

  constructor(private readonly prefix: string) {}

  async up(hostCount: number): Promise<LabHost[]> {
    await labDown(this.prefix);
    this.hosts = (await labUp({ prefix: this.prefix, hosts: hostCount })).hosts;
    return this.hosts;
  }

  host(name: string): LabHost {
    const h = this.hosts.find((x) => x.name === name);
    if (h === undefined) throw new Error(`no lab host ${name}`);
    return h;
  }

  stateDir(name: string): string {
    return join(this.dir, name);
  }

  address(name: string): string {
    return `${this.host(name).address}:${CLUSTER_PORT}`;
  }

  flags(name: string): string[] {
    const h = this.host(name);
    return [
      '--state-dir',
      this.stateDir(name),
      '--socket',
      join(this.dir, `${name}.sock`),
      '--listen-address',
      `${h.address}:${CLUSTER_PORT}`,
      '--raft-listen-address',
      `${h.address}:${CLUSTER_PORT + 1}`,
      '--netns-prefix',
      h.netnsPrefix,
      '--hostname',
      name,
    ];
  }

  /** Bounded at 120 s: on this shared 2-core machine a node process can take seconds just to start. */
  inHost(name: string, argv: string[]): SpawnSyncReturns<string> {
    return spawnSync('nsenter', [`--net=/run/netns/${this.host(name).netns}`, ...argv], {
      encoding: 'utf8',
      timeout: 120_000,
    });
  }

  meshd(name: string, verb: string, ...args: string[]): SpawnSyncReturns<string> {
    return this.inHost(name, [MESHD, verb, ...args, ...this.flags(name)]);
  }

  /** meshd with exactly these arguments (no lab flags), inside `name`'s namespace. */
  meshdRaw(name: string, args: string[]): SpawnSyncReturns<string> {
    return this.inHost(name, [MESHD, ...args]);
  }

  meshctl(via: string, ...argv: string[]): SpawnSyncReturns<string> {
    return spawnSync(MESHCTL, ['--socket', join(this.dir, `${via}.sock`), ...argv], {
      encoding: 'utf8',
      timeout: 60_000,
    });
  }

  /** Starts `meshd run` on `name`; its log (warnings and up) goes to `<dir>/<name>.log`. */
  start(name: string): void {
    const log = openSync(join(this.dir, `${name}.log`), 'a');
    const child = spawn(
      'nsenter',
      [`--net=/run/netns/${this.host(name).netns}`, MESHD, 'run', ...this.flags(name)],
      { stdio: ['ignore', log, log], env: { ...process.env, LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn' } },
    );
    closeSync(log);
    this.daemons.set(name, child);
  }

  async kill(name: string, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const child = this.daemons.get(name);
    if (child === undefined) return;
    this.daemons.delete(name);
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill(signal);
    await exited;
  }

  /** Runs probe-ca.ts in `name`'s namespace: `status` with `name`'s certificate, or `join` with a token. */
  probe(name: string, mode: 'status' | 'join', targets: string[], token = ''): ProbeAnswer[] {
    const arg = mode === 'status' ? this.stateDir(name) : token;
    const r = this.inHost(name, [process.execPath, '--import', 'tsx', PROBE, mode, arg, ...targets]);
    if (r.status !== 0) throw new Error(`probe failed: ${r.stderr}`);
    return JSON.parse(r.stdout.trim()) as ProbeAnswer[];
  }

  /** The control API and CA on `via`'s socket, in this process (a meshctl process costs seconds here). */
  clients(via: string): MeshdClients {
    let c = this.sockets.get(via);
    if (c === undefined) {
      c = connectSocket(join(this.dir, `${via}.sock`), 10_000);
      this.sockets.set(via, c);
    }
    return c;
  }

  /** The current join token for `role` as `via` shows it, or '' when it does not answer. */
  async token(via: string, role: 'worker' | 'manager'): Promise<string> {
    try {
      const t = await this.clients(via).ca.getJoinTokens({});
      return role === 'worker' ? t.workerToken : t.managerToken;
    } catch {
      return '';
    }
  }

  /** `hostname role` of each ready node, as `via` sees it (local read); [] when it does not answer. */
  async readyNodes(via: string): Promise<string[]> {
    try {
      const { nodes } = await this.clients(via).control.listNodes({ read: { localRead: true } });
      return nodes
        .filter((n) => n.state === NodeState.NODE_STATE_READY)
        .map((n) => `${n.hostname} ${n.role === NodeRole.NODE_ROLE_MANAGER ? 'manager' : 'worker'}`)
        .sort();
    } catch {
      return [];
    }
  }

  async waitUntil(what: string, cond: () => Promise<boolean>, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!(await cond())) {
      if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 250));
    }
  }

  waitFor(what: string, cond: () => boolean, timeoutMs: number): Promise<void> {
    return waitFor(what, cond, timeoutMs, 250);
  }

  /** Stops every daemon (SIGTERM, then SIGKILL after 10 s), removes the lab and the temp dir. */
  async down(): Promise<void> {
    for (const c of this.sockets.values()) c.close();
    this.sockets.clear();
    await Promise.all(
      [...this.daemons.keys()].map(async (name) => {
        const child = this.daemons.get(name)!;
        const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await this.kill(name, 'SIGTERM');
        clearTimeout(timer);
      }),
    );
    await labDown(this.prefix);
    if (process.env.KEEP_LOGS === undefined) rmSync(this.dir, { recursive: true, force: true });
  }
}
