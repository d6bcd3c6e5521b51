import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { KvProcessConfig } from './kv-process.js';

/**
 * Starts and drives kv-process.ts managers as separate OS processes on
 * loopback (real-process tests and the raft benchmark). Every process and
 * every pending request is bounded by a timeout; shutdown() kills exactly
 * the processes this object started, by pid.
 */
export interface KvClusterOptions {
  ids: string[];
  root: string;
  caFile: string;
  certFile: string;
  keyFile: string;
  heartbeatMs?: number;
  electionMs?: number;
  snapshotEveryEntries?: number;
}

export type Reply = { ok: boolean; error?: string; [field: string]: unknown };

interface Child {
  proc: ChildProcess;
  pending: Map<number, (r: Reply) => void>;
  exited: Promise<void>;
  diagnostics: string[];
}

const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));
const kvProcessPath = fileURLToPath(new URL('./kv-process.ts', import.meta.url));

export class KvProcessCluster {
  readonly ports = new Map<string, number>();
  private readonly children = new Map<string, Child>();
  private readonly paused = new Set<string>();
  private seq = 0;

  constructor(readonly opts: KvClusterOptions) {}

  async startAll(): Promise<void> {
    await Promise.all(this.opts.ids.map((id) => this.startNode(id)));
    this.broadcastPeers();
  }

  running(): string[] {
    return [...this.children.keys()].sort();
  }

  pid(id: string): number | undefined {
    return this.children.get(id)?.proc.pid;
  }

  async startNode(id: string): Promise<void> {
    const cfg: KvProcessConfig = {
      id,
      dataDir: join(this.opts.root, id),
      voters: this.opts.ids,
      raftPort: this.ports.get(id) ?? 0,
      peers: this.peerMap(),
      caFile: this.opts.caFile,
      certFile: this.opts.certFile,
      keyFile: this.opts.keyFile,
      ...(this.opts.heartbeatMs === undefined ? {} : { heartbeatMs: this.opts.heartbeatMs }),
      ...(this.opts.electionMs === undefined ? {} : { electionMs: this.opts.electionMs }),
      ...(this.opts.snapshotEveryEntries === undefined
        ? {}
        : { snapshotEveryEntries: this.opts.snapshotEveryEntries }),
    };
    const proc = spawn(process.execPath, ['--import', 'tsx', kvProcessPath], {
      cwd: repoRoot,
      env: {
        ...process.env,
        MESHD_KV_CONFIG: JSON.stringify(cfg),
        LOG_LEVEL: process.env['KV_LOG_LEVEL'] ?? 'warn',
      },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const child: Child = {
      proc,
      pending: new Map(),
      diagnostics: [],
      exited: new Promise((resolve) => proc.once('exit', () => resolve())),
    };
    this.children.set(id, child);
    const listening = new Promise<number>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`${id} did not start within 20 s: ${child.diagnostics.join(' | ')}`)),
        20_000,
      );
      proc.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`${id} exited with ${code} while starting: ${child.diagnostics.join(' | ')}`));
      });
      const onLine = (line: string) => {
        let msg: Reply & { req?: number; event?: string; raftPort?: number };
        try {
          msg = JSON.parse(line) as typeof msg;
        } catch {
          this.note(child, line);
          return;
        }
        if (msg.event === 'listening') {
          clearTimeout(timer);
          resolve(msg.raftPort!);
        } else if (typeof msg.req === 'number') {
          child.pending.get(msg.req)?.(msg);
          child.pending.delete(msg.req);
        } else {
          this.note(child, line);
        }
      };
      createInterface({ input: proc.stdout! }).on('line', onLine);
      createInterface({ input: proc.stderr! }).on('line', (l) => this.note(child, l));
    });
    proc.once('exit', () => {
      for (const resolve of child.pending.values()) resolve({ ok: false, error: `${id} exited` });
      child.pending.clear();
      if (this.children.get(id) === child) this.children.delete(id);
    });
    const port = await listening;
    this.ports.set(id, port);
  }

  private note(child: Child, line: string): void {
    child.diagnostics.push(line.slice(0, 2000));
    if (child.diagnostics.length > 20) child.diagnostics.shift();
  }

  private peerMap(): Record<string, string> {
    return Object.fromEntries([...this.ports].map(([id, port]) => [id, `127.0.0.1:${port}`]));
  }

  broadcastPeers(): void {
    const peers = this.peerMap();
    for (const id of this.children.keys()) void this.request(id, { op: 'peers', peers }, 5000);
  }

  /** Sends one command; resolves with the reply, or {ok:false} after timeoutMs. */
  request(id: string, cmd: Record<string, unknown>, timeoutMs = 5000): Promise<Reply> {
    const child = this.children.get(id);
    if (child === undefined) return Promise.resolve({ ok: false, error: `${id} is not running` });
    const req = ++this.seq;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        child.pending.delete(req);
        resolve({ ok: false, error: `${id}: no reply to ${String(cmd['op'])} within ${timeoutMs} ms` });
      }, timeoutMs);
      child.pending.set(req, (r) => {
        clearTimeout(timer);
        resolve(r);
      });
      child.proc.stdin!.write(`${JSON.stringify({ ...cmd, req })}\n`);
    });
  }

  /** The one node that says it is leader, among running and not paused ones. */
  async leader(timeoutMs = 10_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const live = this.running().filter((id) => !this.paused.has(id));
      const replies = await Promise.all(live.map((id) => this.request(id, { op: 'status' }, 1000)));
      const leaders = live.filter(
        (_, i) => (replies[i]?.['status'] as { role?: string } | undefined)?.role === 'leader',
      );
      if (leaders.length === 1) return leaders[0]!;
      if (Date.now() > deadline)
        throw new Error(`no single leader within ${timeoutMs} ms (saw ${leaders.join(',') || 'none'})`);
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  async kill9(id: string): Promise<void> {
    const child = this.children.get(id);
    if (child === undefined) return;
    child.proc.kill('SIGKILL');
    await child.exited;
    this.paused.delete(id);
  }

  pause(id: string): void {
    this.children.get(id)?.proc.kill('SIGSTOP');
    this.paused.add(id);
  }

  resume(id: string): void {
    this.children.get(id)?.proc.kill('SIGCONT');
    this.paused.delete(id);
  }

  async shutdown(): Promise<void> {
    const all = [...this.children.entries()];
    for (const [id, child] of all) {
      if (this.paused.has(id)) child.proc.kill('SIGCONT');
      child.proc.kill('SIGKILL');
    }
    await Promise.all(all.map(([, c]) => c.exited));
    this.children.clear();
    this.paused.clear();
  }
}
