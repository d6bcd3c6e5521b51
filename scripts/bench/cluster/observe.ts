/**
 * What the cluster scenarios observe on every host: its ingress LB (LbWatcher)
 * and which listed backends answer from there (Prober), plus the pure
 * helpers that turn stamps into results.
 */
import type { ClusterLab } from './cluster-lab.js';
import { LbWatcher, nowMs } from './lb-watch.js';
import { Prober } from './prober.js';

export { nowMs };

export interface HostObservers {
  watcher: LbWatcher;
  prober: Prober;
}

export class Observers {
  readonly byHost = new Map<string, HostObservers>();
  private phase = 0;

  constructor(private readonly lab: ClusterLab) {}

  async start(): Promise<void> {
    for (const h of this.lab.hosts) {
      const netns = this.lab.ingressNetns(h);
      const watcher = new LbWatcher(h.name, netns, this.lab.ingressNetworkId);
      const prober = new Prober(netns);
      this.byHost.set(h.name, { watcher, prober });
      prober.start();
      watcher.onNamespaceReplaced(() => prober.restart());
      await watcher.start();
    }
  }

  stop(): void {
    for (const { watcher, prober } of this.byHost.values()) {
      watcher.stop();
      prober.stop();
    }
  }

  of(host: string): HostObservers {
    const o = this.byHost.get(host);
    if (o === undefined) throw new Error(`no observers for host ${host}`);
    return o;
  }

  /**
   * From now on, each host's prober is given every backend its LB lists for
   * `port`, under a fresh tag (an address a new task took over is asked again).
   */
  probeListed(hosts: string[], port: number): { tag: string; stop(): void } {
    const tag = `p${++this.phase}`;
    const unsubscribe = hosts.map((host) => {
      const { watcher, prober } = this.of(host);
      const feed = () => {
        const { ports, snatAddress } = watcher.latest;
        if (snatAddress !== null)
          prober.probe(
            [...(ports.get(port) ?? [])].map((a) => targetKey(a, tag)),
            snatAddress,
          );
      };
      feed();
      return watcher.onSnapshot(feed);
    });
    return { tag, stop: () => unsubscribe.forEach((u) => void u()) };
  }

  /**
   * Once `host`'s LB lists exactly `count` backends for `port`: the time the
   * last of them first answered from that host (NaN after `timeoutMs`).
   */
  async reachableAt(host: string, port: number, count: number, tag: string, timeoutMs: number) {
    const { watcher, prober } = this.of(host);
    const deadline = nowMs() + timeoutMs;
    while (nowMs() < deadline) {
      const listed = [...(watcher.latest.ports.get(port) ?? [])];
      const answered = listed.map((a) => prober.answeredAt(targetKey(a, tag)));
      if (listed.length === count && answered.every((t) => t !== undefined))
        return Math.max(...(answered as number[]));
      await new Promise((r) => setTimeout(r, 20));
    }
    return Number.NaN;
  }
}

const targetKey = (address: string, tag: string) => `${address}:80#${tag}`;

/** Pure: the q-quantile (0..1) by nearest rank; NaN for no values. */
export function quantile(values: number[], q: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.ceil(q * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]!;
}

/** Pure: the latest of several stamps, NaN if any is missing (a wait that timed out). */
export function latest(stamps: number[]): number {
  return stamps.some((s) => Number.isNaN(s)) ? Number.NaN : Math.max(...stamps);
}
