/**
 * The bench's side of probe-helper.ts: one helper per host, started in that
 * host's ingress namespace (`ip netns exec`: meshd's network namespaces are
 * bind mounts `nsenter --net` cannot enter from here); `probe(targets)` queues targets (each probed once
 * until it answers) and `answeredAt(target)` is when it first answered.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../..', import.meta.url)).replace(/\/$/, '');
const HELPER = join(ROOT, 'scripts/bench/cluster/probe-helper.ts');
const TSX = join(ROOT, 'node_modules/tsx/dist/loader.mjs');

export class Prober {
  private child: ChildProcess | undefined;
  private readonly answered = new Map<string, number>();
  private readonly sent = new Set<string>();
  private source = '';
  private stopped = false;
  restarts = 0;

  constructor(readonly netns: string) {}

  start(): void {
    const child = spawn(
      'ip',
      ['netns', 'exec', this.netns, process.execPath, '--import', `file://${TSX}`, HELPER],
      { stdio: ['pipe', 'pipe', 'ignore'] },
    );
    this.child = child;
    // A helper that died shows up as targets that never answer (a timeout naming them).
    child.stdin?.on('error', () => {});
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const { target, atMs } = JSON.parse(line) as { target: string; atMs: number };
      this.answered.set(target, atMs);
    });
    // A helper that died (its namespace was not ready, say) comes back with what is unanswered.
    child.once('exit', () => {
      if (this.stopped) return;
      this.restarts++;
      setTimeout(() => {
        this.start();
        const open = [...this.sent].filter((t) => !this.answered.has(t));
        if (open.length > 0)
          this.child?.stdin?.write(`${JSON.stringify({ source: this.source, targets: open })}\n`);
      }, 200);
    });
  }

  /** Queues targets not queued before (a target answers once per helper). */
  probe(targets: Iterable<string>, source: string): void {
    const fresh = [...targets].filter((t) => !this.sent.has(t));
    if (fresh.length === 0) return;
    for (const t of fresh) this.sent.add(t);
    this.source = source;
    this.child?.stdin?.write(`${JSON.stringify({ source, targets: fresh })}\n`);
  }

  answeredAt(target: string): number | undefined {
    return this.answered.get(target);
  }

  /** Starts the helper again (it re-enters the namespace by name); unanswered targets are resent. */
  restart(): void {
    this.child?.kill('SIGKILL');
  }

  stop(): void {
    this.stopped = true;
    this.child?.kill('SIGKILL');
  }
}
