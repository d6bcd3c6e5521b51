/**
 * Watches one host's ingress load balancer (the `ip meshd` nftables table in
 * that host's ingress network namespace) without polling: a long-lived
 * `nft monitor` in the namespace reports every commit, and each report
 * triggers one `nft -j list table` (coalesced while a list is running),
 * decoded by the LB backend's own parser.
 *
 * Timing: a snapshot is stamped with the receipt time of the last monitor
 * event seen before its list started. The state only changes at commits and
 * every commit emits events, so the stamp is late by the event's delivery
 * (netlink multicast → nft → pipe → this event loop, milliseconds) and at
 * worst early by the same amount when a commit lands between that event and
 * the list. A slow safety poll (stamped with its own start, so late by at most
 * its period) covers a monitor that drops events; `safetyHits` counts the
 * snapshots only it found.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { statSync } from 'node:fs';
import { nftToolExecutor } from '../../../dataplane/lb/nft/executor.js';
import { parseScopeDump } from '../../../dataplane/lb/nft/parse.js';
import { TABLE } from '../../../dataplane/lb/nft/render.js';

/** Active (weight > 0) backend addresses per published port. */
export type PortBackends = Map<number, Set<string>>;

export interface LbSnapshot {
  atMs: number;
  ports: PortBackends;
  /** The address the LB SNATs to (this host's LB address on the network). */
  snatAddress: string | null;
}

const SAFETY_POLL_MS = 2_000;

export const nowMs = (): number => performance.timeOrigin + performance.now();

/** Pure: the active backends per port in one scope's `nft -j list table` output. */
export function snapshotOf(atMs: number, networkId: string, json: unknown): LbSnapshot {
  const ports: PortBackends = new Map();
  if (json === null) return { atMs, ports, snatAddress: null };
  const dump = parseScopeDump({ kind: 'network', networkId }, json);
  for (const s of dump.services) {
    const active = ports.get(s.port) ?? new Set<string>();
    for (const b of s.backends) if (b.weight > 0) active.add(b.address);
    ports.set(s.port, active);
  }
  return { atMs, ports, snatAddress: dump.snatAddress };
}

type Waiter = { pred: (s: LbSnapshot) => boolean; resolve: (atMs: number) => void };

export class LbWatcher {
  private monitor: ChildProcess | undefined;
  private safety: NodeJS.Timeout | undefined;
  private listing = false;
  private dirty = false;
  private lastEventMs = 0;
  private waiters = new Set<Waiter>();
  private listeners = new Set<(s: LbSnapshot) => void>();
  latest: LbSnapshot = { atMs: 0, ports: new Map(), snatAddress: null };
  safetyHits = 0;
  monitorRestarts = 0;
  private stopped = false;
  /** Identity of the namespace the monitor entered: meshd may replace a namespace of the same name. */
  private netnsInode = 0;
  private readonly onReplaced = new Set<() => void>();
  lists = 0;
  lastError: string | undefined;

  constructor(
    readonly host: string,
    readonly netns: string,
    readonly networkId: string,
  ) {}

  async start(): Promise<void> {
    this.startMonitor();
    this.safety = setInterval(() => {
      if (inodeOf(this.netns) !== this.netnsInode) {
        // The monitor (and any helper) sits in the old namespace: start them again in the new one.
        this.monitor?.kill('SIGKILL');
        for (const f of this.onReplaced) f();
      }
      this.trigger(nowMs(), true);
    }, SAFETY_POLL_MS);
    await this.list(nowMs(), false);
  }

  /** A monitor that exits (its namespace was not ready) is started again; `monitorRestarts` counts it. */
  private startMonitor(): void {
    if (this.stopped) return;
    this.netnsInode = inodeOf(this.netns);
    const child = spawn('ip', ['netns', 'exec', this.netns, 'stdbuf', '-oL', 'nft', 'monitor'], {
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    this.monitor = child;
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', () => {
      this.lastEventMs = nowMs();
      this.trigger(this.lastEventMs, false);
    });
    child.once('exit', () => {
      if (this.stopped) return;
      this.monitorRestarts++;
      setTimeout(() => this.startMonitor(), 200);
    });
  }

  stop(): void {
    this.stopped = true;
    if (this.safety !== undefined) clearInterval(this.safety);
    this.monitor?.kill('SIGKILL');
    for (const w of this.waiters) w.resolve(Number.NaN);
    this.waiters.clear();
  }

  /** Calls `f` when the namespace was replaced by a new one of the same name. */
  onNamespaceReplaced(f: () => void): void {
    this.onReplaced.add(f);
  }

  /** Calls `f` with every new snapshot until the returned function is called. */
  onSnapshot(f: (s: LbSnapshot) => void): () => void {
    this.listeners.add(f);
    return () => this.listeners.delete(f);
  }

  /**
   * Resolves with the stamp of the first snapshot (the current one included)
   * that satisfies `pred`, or NaN after `timeoutMs`.
   */
  when(pred: (s: LbSnapshot) => boolean, timeoutMs: number): Promise<number> {
    if (pred(this.latest)) return Promise.resolve(this.latest.atMs);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waiters.delete(waiter);
        resolve(Number.NaN);
      }, timeoutMs);
      const waiter: Waiter = {
        pred,
        resolve: (atMs) => {
          clearTimeout(timer);
          resolve(atMs);
        },
      };
      this.waiters.add(waiter);
    });
  }

  private trigger(stampMs: number, fromSafetyPoll: boolean): void {
    if (this.listing) {
      this.dirty = true;
      return;
    }
    void this.list(stampMs, fromSafetyPoll);
  }

  private async list(stampMs: number, fromSafetyPoll: boolean): Promise<void> {
    this.listing = true;
    this.dirty = false;
    try {
      const json = await nftToolExecutor.listTableJson(this.netns, TABLE);
      this.lists++;
      this.publish(snapshotOf(stampMs, this.networkId, json), fromSafetyPoll);
    } catch (err) {
      this.lastError = (err as Error).message;
    } finally {
      this.listing = false;
    }
    if (this.dirty) void this.list(this.lastEventMs, false);
  }

  private publish(s: LbSnapshot, fromSafetyPoll: boolean): void {
    if (fromSafetyPoll && !samePorts(s.ports, this.latest.ports)) this.safetyHits++;
    const same = samePorts(s.ports, this.latest.ports) && s.snatAddress === this.latest.snatAddress;
    if (same && this.latest.atMs !== 0) return;
    this.latest = s;
    for (const f of this.listeners) f(s);
    for (const w of [...this.waiters]) {
      if (!w.pred(s)) continue;
      this.waiters.delete(w);
      w.resolve(s.atMs);
    }
  }
}

function inodeOf(netns: string): number {
  try {
    return statSync(`/run/netns/${netns}`).ino;
  } catch {
    return 0;
  }
}

function samePorts(a: PortBackends, b: PortBackends): boolean {
  if (a.size !== b.size) return false;
  for (const [port, set] of a) {
    const other = b.get(port);
    if (other === undefined || other.size !== set.size) return false;
    for (const x of set) if (!other.has(x)) return false;
  }
  return true;
}
