import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ManagerNode, type ManagerNodeOptions } from '../../../controlplane/manager/manager-node.js';
import { mintTlsFixture, type TlsFixture } from '../raft/transport/tls-fixture.js';

export const MANAGER_IDS = ['m1', 'm2', 'm3'];

/**
 * Three ManagerNodes in one process: real WALs in a temp dir, real Raft over
 * mutual TLS on 127.0.0.1 (OS-chosen ports), shortened timers (heartbeat
 * 20 ms, election 300 ms) so the suite stays fast on a loaded machine.
 */
export class ManagerCluster {
  readonly root = mkdtempSync(join(tmpdir(), 'meshd-manager-'));
  readonly managers = new Map<string, ManagerNode>();
  private readonly ports = new Map<string, number>();
  private tls: TlsFixture | undefined;

  constructor(private readonly extra: Partial<ManagerNodeOptions> = {}) {}

  async start(): Promise<void> {
    this.tls = mintTlsFixture();
    for (const id of MANAGER_IDS) await this.startOne(id);
  }

  /** Starts (or restarts, on the same data directory and port) one manager. */
  async startOne(id: string): Promise<ManagerNode> {
    const tls = this.tls!;
    const m = await ManagerNode.start({
      id,
      dataDir: join(this.root, id),
      listenAddress: `127.0.0.1:${this.ports.get(id) ?? 0}`,
      serverCredentials: tls.serverCredentials(),
      channelCredentials: tls.channelCredentials(),
      peers: {},
      bootstrap: { voters: MANAGER_IDS, learners: [] },
      heartbeatMs: 20,
      electionMs: 300,
      requestTimeoutMs: 5000,
      ...this.extra,
    });
    this.managers.set(id, m);
    this.ports.set(id, m.raft.port());
    for (const [a, node] of this.managers)
      for (const [b, port] of this.ports) if (a !== b) node.raft.addPeer(b, `127.0.0.1:${port}`);
    return m;
  }

  async leader(timeoutMs = 10_000): Promise<ManagerNode> {
    return waitFor('a single leader', timeoutMs, () => {
      const leaders = [...this.managers.values()].filter((m) => m.isLeader());
      return leaders.length === 1 ? leaders[0] : undefined;
    });
  }

  followers(): ManagerNode[] {
    return [...this.managers.values()].filter((m) => !m.isLeader());
  }

  async stopOne(id: string): Promise<void> {
    await this.managers.get(id)?.stop({ transferLeadership: false });
    this.managers.delete(id);
  }

  async close(): Promise<void> {
    for (const id of [...this.managers.keys()]) await this.stopOne(id);
    rmSync(this.root, { recursive: true, force: true });
  }
}

/** Polls `probe` every 20 ms until it returns a value; fails naming `what` after `timeoutMs`. */
export async function waitFor<T>(what: string, timeoutMs: number, probe: () => T | undefined): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
