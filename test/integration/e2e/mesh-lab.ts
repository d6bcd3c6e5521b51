/**
 * The shared lab of the e2e tests: a netns lab (scripts/lab) with real meshd
 * processes in each host (nsenter --net; the mount namespace stays the
 * host's so the namespaces meshd creates are visible), init on h1, the other
 * hosts joined with the worker or manager token, meshctl over any host's
 * socket. Every task a test starts carries `marker` as an argument, so tasks
 * orphaned by kill -9 of their meshd are found and killed at teardown.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, type SpawnSyncReturns, spawn, spawnSync } from 'node:child_process';
import {
  closeSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type LabHost, labDown, labUp } from '../../../scripts/lab/lab.js';
import { waitFor as waitUntil } from '../../lib/wait.js';

const ROOT = fileURLToPath(new URL('../../..', import.meta.url));
export const MESHD = join(ROOT, 'bin/meshd');
export const MESHCTL = join(ROOT, 'bin/meshctl');
export const TASK_SERVER = join(ROOT, 'test/integration/dataplane/fixtures/task-server.mjs');

export interface MeshLabOptions {
  prefix: string;
  /** Token the hosts after h1 join with. */
  joinAs: 'worker' | 'manager';
}

export interface MeshLab {
  hosts: LabHost[];
  /** Task argument unique to this run. */
  marker: string;
  host(name: string): LabHost;
  /** meshctl against `via`'s Unix socket (default h1). */
  meshctl(argv: string[], via?: string): SpawnSyncReturns<string>;
  /** A command inside a host's network namespace. */
  inHost(h: LabHost, argv: string[]): SpawnSyncReturns<string>;
  flags(h: LabHost): string[];
  /** kill -9 of a host's meshd. */
  killDaemon(name: string): void;
  /** kill -9 of every process in the host's task sandboxes (tasks outlive their meshd). */
  killTasksOf(name: string): number;
  /** Namespaces of a host (its own prefix), e.g. to read the nftables tables in them. */
  namespacesOf(name: string): string[];
  waitFor(what: string, probe: () => boolean, timeoutMs: number): Promise<void>;
  teardown(): Promise<void>;
}

export async function startMeshLab(options: MeshLabOptions): Promise<MeshLab> {
  const dir = mkdtempSync(join(tmpdir(), 'meshd-e2e-'));
  const marker = `e2e-${options.prefix}-${process.pid}`;
  const daemons = new Map<string, ChildProcess>();
  let hosts: LabHost[] = [];

  const flags = (h: LabHost) => [
    '--state-dir',
    join(dir, h.name),
    '--socket',
    join(dir, `${h.name}.sock`),
    '--listen-address',
    `${h.address}:4242`,
    '--raft-listen-address',
    `${h.address}:4243`,
    '--netns-prefix',
    h.netnsPrefix,
    '--hostname',
    h.name,
  ];
  const inHost = (h: LabHost, argv: string[]) =>
    spawnSync('nsenter', [`--net=/run/netns/${h.netns}`, ...argv], { encoding: 'utf8', timeout: 60_000 });
  const meshctl = (argv: string[], via = 'h1') =>
    spawnSync(MESHCTL, ['--socket', join(dir, `${via}.sock`), ...argv], {
      encoding: 'utf8',
      timeout: 120_000,
    });
  const host = (name: string) => {
    const h = hosts.find((x) => x.name === name);
    assert.ok(h, `no lab host ${name}`);
    return h;
  };
  // E2E_LOG_DIR=/some/dir keeps each meshd's log (level info) as <dir>/<prefix>-<host>.log.
  const logDir = process.env['E2E_LOG_DIR'];
  const startDaemon = (h: LabHost) => {
    const log =
      logDir === undefined ? 'ignore' : openSync(join(logDir, `${options.prefix}-${h.name}.log`), 'a');
    const child = spawn('nsenter', [`--net=/run/netns/${h.netns}`, MESHD, 'run', ...flags(h)], {
      stdio: ['ignore', log, log],
      env: { ...process.env, LOG_LEVEL: logDir === undefined ? 'warn' : 'info' },
    });
    if (typeof log === 'number') closeSync(log);
    daemons.set(h.name, child);
  };
  const waitFor = (what: string, probe: () => boolean, timeoutMs: number) =>
    waitUntil(what, probe, timeoutMs, 250);
  const namespacesOf = (name: string) => {
    const prefix = host(name).netnsPrefix;
    return spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' })
      .stdout.split('\n')
      .map((line) => line.split(' ')[0] ?? '')
      .filter((ns) => ns.startsWith(prefix));
  };

  const teardown = async () => {
    for (const child of daemons.values()) child.kill('SIGTERM');
    await Promise.all(
      [...daemons.values()].map(
        (c) =>
          new Promise<void>((resolve) =>
            c.exitCode !== null || c.signalCode !== null ? resolve() : c.once('exit', () => resolve()),
          ),
      ),
    );
    killProcessesWithArgument(marker);
    await labDown(options.prefix);
    rmSync(dir, { recursive: true, force: true });
  };

  try {
    await labDown(options.prefix);
    hosts = (await labUp({ prefix: options.prefix, hosts: 3 })).hosts;
    const [h1, ...others] = hosts as [LabHost, ...LabHost[]];
    const init = inHost(h1, [MESHD, 'init', ...flags(h1)]);
    assert.equal(init.status, 0, init.stderr);
    startDaemon(h1);
    await waitFor('h1 socket', () => meshctl(['node', 'ls']).status === 0, 30_000);
    const token = meshctl(['join-token', '-q', options.joinAs]).stdout.trim();
    for (const h of others) {
      const j = inHost(h, [MESHD, 'join', '--token', token, `${h1.address}:4242`, ...flags(h)]);
      assert.equal(j.status, 0, j.stderr);
      startDaemon(h);
    }
    await waitFor(
      `${hosts.length} ready nodes`,
      () => (meshctl(['node', 'ls']).stdout.match(/\sready\s/g) ?? []).length === hosts.length,
      30_000,
    );
  } catch (err) {
    await teardown();
    throw err;
  }

  return {
    hosts,
    marker,
    host,
    meshctl,
    inHost,
    flags,
    killDaemon: (name) => {
      daemons.get(name)?.kill('SIGKILL');
    },
    killTasksOf: (name) => {
      const sandboxes = new Set(
        namespacesOf(name)
          .filter((ns) => ns.startsWith(`${host(name).netnsPrefix}t`))
          .map((ns) => netnsInode(`/run/netns/${ns}`)),
      );
      let killed = 0;
      for (const pid of pids()) {
        const ns = netnsInode(`/proc/${pid}/ns/net`);
        if (ns === undefined || !sandboxes.has(ns)) continue;
        try {
          process.kill(pid, 'SIGKILL');
          killed++;
        } catch {
          // exited meanwhile
        }
      }
      return killed;
    },
    namespacesOf,
    waitFor,
    teardown,
  };
}

function pids(): number[] {
  return readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .map(Number);
}

function netnsInode(path: string): string | undefined {
  try {
    // /proc/PID/ns/net reads as "net:[INODE]"; a /run/netns bind mount stats as that inode.
    return path.startsWith('/proc/') ? readlinkSync(path) : `net:[${statSync(path).ino}]`;
  } catch {
    return undefined;
  }
}

function killProcessesWithArgument(marker: string): void {
  for (const pid of pids()) {
    let cmdline = '';
    try {
      cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    } catch {
      continue;
    }
    if (cmdline.split('\0').includes(marker) && cmdline.includes(TASK_SERVER)) process.kill(pid, 'SIGKILL');
  }
}
