/**
 * The DNS lab shared by the integration test and the benchmark: a 2-host
 * network-namespace lab (scripts/lab): host 1 runs the resolver and owns a
 * task sandbox (named as dataplane/overlay/names.ts says; lo only, and
 * 127.0.0.11 lives on lo), host 2 runs a
 * real unbound as the upstream, serving only local data (`local-zone: "."
 * static`) so nothing ever leaves the lab.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createNetns, execInNetns } from '../../../dataplane/netns/netns.js';
import { sandboxNetnsName } from '../../../dataplane/overlay/names.js';
import { type LabHost, labDown, labUp } from '../../../scripts/lab/lab.js';
import type { DesiredState } from '../../../src/api/gen/meshd/v1/dataplane.js';
import { DesiredState as DesiredStateCodec } from '../../../src/api/gen/meshd/v1/dataplane.js';
import type { HostReply, HostRequest } from './resolver-host.js';

const HOST_MAIN = fileURLToPath(new URL('./resolver-host.ts', import.meta.url));
const PROJECT_ROOT = fileURLToPath(new URL('../../../', import.meta.url));

export interface UnboundOptions {
  /** `local-data` lines, e.g. `www.example.test. 60 IN A 192.0.2.80`. */
  localData: string[];
  threads?: number;
}

export class Unbound {
  private child: ChildProcess | undefined;
  constructor(
    readonly netns: string,
    readonly address: string,
    private readonly dir: string,
    private readonly options: UnboundOptions,
  ) {}

  /**
   * Stable per (namespace, address), so a run that was killed before its
   * cleanup leaves a pid the next run can find and stop.
   */
  private get pidPath(): string {
    return join(tmpdir(), `meshd-dns-${this.netns}-${this.address}.unbound.pid`);
  }

  /** Stops an unbound left by a killed run: by its exact pid, and only if that pid is still unbound. */
  private stopLeftover(): void {
    if (!existsSync(this.pidPath)) return;
    const pid = Number(readFileSync(this.pidPath, 'utf8').trim());
    rmSync(this.pidPath, { force: true });
    if (!Number.isInteger(pid) || pid <= 1) return;
    try {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      // The pid may have been reused since: only an unbound started from a meshd test conf.
      if (cmdline.startsWith('unbound\0') && cmdline.includes('-dns-')) process.kill(pid, 'SIGKILL');
    } catch {
      // Gone already.
    }
  }

  async start(): Promise<void> {
    this.stopLeftover();
    const conf = join(this.dir, 'unbound.conf');
    const lines = [
      'server:',
      `  interface: ${this.address}`,
      '  port: 53',
      '  do-ip6: no',
      `  num-threads: ${this.options.threads ?? 1}`,
      '  access-control: 0.0.0.0/0 allow',
      '  username: ""',
      '  chroot: ""',
      `  directory: "${this.dir}"`,
      `  pidfile: "${this.pidPath}"`,
      '  use-syslog: no',
      '  logfile: ""',
      '  verbosity: 0',
      '  module-config: "iterator"',
      '  local-zone: "." static',
      ...this.options.localData.map((d) => `  local-data: "${d}"`),
      'remote-control:',
      '  control-enable: no',
    ];
    writeFileSync(conf, `${lines.join('\n')}\n`);
    this.child = spawn('ip', ['netns', 'exec', this.netns, 'unbound', '-d', '-c', conf], {
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    for (let i = 0; i < 50; i++) {
      const out = await execInNetns(this.netns, [
        'dig',
        `@${this.address}`,
        '+time=1',
        '+tries=1',
        '+short',
        'ready.probe.',
      ]).catch(() => 'down');
      if (!out.includes('timed out') && out !== 'down') return;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`unbound in ${this.netns} did not come up`);
  }

  async stop(): Promise<void> {
    const child = this.child;
    this.child = undefined;
    if (child === undefined || child.exitCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
    await exited;
    clearTimeout(timer);
  }
}

export class ResolverHost {
  private nextId = 1;
  private readonly pending = new Map<number, (reply: HostReply) => void>();

  private constructor(private readonly child: ChildProcess) {
    child.on('message', (msg: HostReply) => {
      this.pending.get(msg.id)?.(msg);
      this.pending.delete(msg.id);
    });
  }

  static async start(netns: string): Promise<ResolverHost> {
    const child = spawn(
      'ip',
      ['netns', 'exec', netns, process.execPath, '--expose-gc', '--import', 'tsx', HOST_MAIN],
      { cwd: PROJECT_ROOT, stdio: ['ignore', 'inherit', 'inherit', 'ipc'], env: { ...process.env } },
    );
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('resolver host not ready within 20 s')), 20_000);
      child.once('message', () => {
        clearTimeout(timer);
        resolve();
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`resolver host exited (${code}) before ready`));
      });
    });
    return new ResolverHost(child);
  }

  request(body: HostRequest extends infer R ? (R extends { id: number } ? Omit<R, 'id'> : never) : never) {
    const id = this.nextId++;
    return new Promise<unknown>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`resolver host: no reply to ${body.op}`)), 30_000);
      this.pending.set(id, (reply) => {
        clearTimeout(timer);
        if (reply.ok) resolve(reply.result);
        else reject(new Error(`resolver host ${body.op}: ${reply.error}`));
      });
      this.child.send({ id, ...body });
    });
  }

  update(state: DesiredState): Promise<unknown> {
    return this.request({ op: 'update', state: DesiredStateCodec.toJSON(state) });
  }

  async memory(): Promise<NodeJS.MemoryUsage> {
    return (await this.request({ op: 'memory' })) as NodeJS.MemoryUsage;
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 3000);
    this.child.disconnect();
    await exited;
    clearTimeout(timer);
  }
}

export interface DnsLab {
  prefix: string;
  resolverHost: LabHost;
  upstreamHost: LabHost;
  sandboxNetns: string;
  sandboxTaskId: string;
  unbound: Unbound;
  resolver: ResolverHost;
  dir: string;
}

export interface DnsLabOptions {
  prefix: string;
  state: DesiredState;
  /** Task ID of the sandbox (must be a sandbox of `state` to see cluster names). */
  sandboxTaskId: string;
  unbound: UnboundOptions;
  attemptTimeoutMs: number;
  maxAttempts: number;
}

export async function dnsLabUp(o: DnsLabOptions): Promise<DnsLab> {
  const lab = await labUp({ prefix: o.prefix, hosts: 2 });
  const dir = mkdtempSync(join(tmpdir(), `${o.prefix}-dns-`));
  const [resolverHost, upstreamHost] = lab.hosts as [LabHost, LabHost];
  const sandboxNetns = sandboxNetnsName(resolverHost.netnsPrefix, o.sandboxTaskId);
  let unbound: Unbound | undefined;
  let resolver: ResolverHost | undefined;
  try {
    await createNetns(sandboxNetns);
    unbound = new Unbound(upstreamHost.netns, upstreamHost.address, dir, o.unbound);
    await unbound.start();
    // The loopback line must be skipped, or the sandbox would query itself.
    const resolvConf = join(dir, 'resolv.conf');
    writeFileSync(resolvConf, `nameserver 127.0.0.53\nnameserver ${upstreamHost.address}\n`);
    resolver = await ResolverHost.start(resolverHost.netns);
    const started = (await resolver.request({
      op: 'start',
      resolvConfPath: resolvConf,
      hostPrefix: resolverHost.netnsPrefix,
      state: DesiredStateCodec.toJSON(o.state),
      attemptTimeoutMs: o.attemptTimeoutMs,
      maxAttempts: o.maxAttempts,
    })) as { attached: string[]; failed: unknown[] };
    if (!started.attached.includes(o.sandboxTaskId))
      throw new Error(`resolver could not attach the sandbox: ${JSON.stringify(started.failed)}`);
    return {
      prefix: o.prefix,
      resolverHost,
      upstreamHost,
      sandboxNetns,
      sandboxTaskId: o.sandboxTaskId,
      unbound,
      resolver,
      dir,
    };
  } catch (err) {
    await resolver?.stop().catch(() => {});
    await unbound?.stop().catch(() => {});
    await labDown(o.prefix).catch(() => {});
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}

export async function dnsLabDown(lab: DnsLab | undefined, prefix: string): Promise<void> {
  await lab?.resolver.stop().catch(() => {});
  await lab?.unbound.stop().catch(() => {});
  await labDown(prefix);
  if (lab !== undefined) rmSync(lab.dir, { recursive: true, force: true });
}

/** Runs `dig` inside the sandbox against 127.0.0.11 and returns its full output. */
export function digInSandbox(lab: DnsLab, args: string[]): Promise<string> {
  return execInNetns(lab.sandboxNetns, ['dig', '@127.0.0.11', '+time=3', '+tries=1', ...args], {
    timeoutMs: 15_000,
  });
}
