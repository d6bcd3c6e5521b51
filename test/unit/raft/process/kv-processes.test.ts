import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { KvProcessCluster } from '../../../../controlplane/raft/driver/kv-cluster.js';
import { mintTlsFixture } from '../transport/tls-fixture.js';

/**
 * Managers as separate OS processes on loopback with real WALs (fdatasync)
 * and gRPC over mutual TLS. Faults are real signals: SIGKILL for a crash,
 * SIGSTOP/SIGCONT for a paused process. Timers are shortened (heartbeat
 * 50 ms, election 500 ms) to keep the suite inside its CI budget.
 */
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Load {
  acked: Map<string, string>;
  stop(): Promise<void>;
}

/** Concurrent writers of distinct keys, spread over the live nodes; bounded in count and time. */
function startLoad(cluster: KvProcessCluster, paused: Set<string>, writers: number, maxWrites: number): Load {
  const acked = new Map<string, string>();
  let stopping = false;
  let issued = 0;
  const deadline = Date.now() + 60_000;
  const loops = Array.from({ length: writers }, async (_, w) => {
    for (let i = 0; !stopping && issued < maxWrites && Date.now() < deadline; i++) {
      const live = cluster.running().filter((id) => !paused.has(id));
      if (live.length === 0) {
        await sleep(20);
        continue;
      }
      const target = live[(w + i) % live.length]!;
      const k = `w${w}-${i}`;
      issued += 1;
      const r = await cluster.request(target, { op: 'put', k, v: `${target}:${i}` }, 4000);
      if (r.ok) acked.set(k, `${target}:${i}`);
      else await sleep(20);
    }
  });
  return {
    acked,
    async stop() {
      stopping = true;
      await Promise.all(loops);
    },
  };
}

interface Dump {
  status: { commit: number; applied: number };
  log: Array<[number, number, string]>;
  kv: Record<string, string>;
}

async function converge(cluster: KvProcessCluster, timeoutMs = 15_000): Promise<Map<string, Dump>> {
  const leader = await cluster.leader();
  // A write through the leader after the faults makes every live node catch up to it.
  const barrier = await cluster.request(leader, { op: 'put', k: 'barrier', v: 'done' }, 5000);
  assert.ok(barrier.ok, `barrier write failed: ${barrier.error}`);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const dumps = new Map<string, Dump>();
    for (const id of cluster.running()) {
      const r = await cluster.request(id, { op: 'dump' }, 5000);
      if (r.ok) dumps.set(id, r as unknown as Dump);
    }
    const commits = new Set([...dumps.values()].map((d) => d.status.applied));
    const allHaveBarrier = [...dumps.values()].every((d) => d.kv['barrier'] === 'done');
    if (dumps.size === cluster.running().length && commits.size === 1 && allHaveBarrier) return dumps;
    if (Date.now() > deadline)
      throw new Error(
        `nodes did not converge: ${JSON.stringify([...dumps].map(([id, d]) => [id, d.status]))}`,
      );
    await sleep(100);
  }
}

function checkAgreement(dumps: Map<string, Dump>, acked: Map<string, string>): void {
  const byIndex = new Map<number, { id: string; term: number; hash: string }>();
  for (const [id, d] of dumps) {
    for (const [index, term, hash] of d.log) {
      const seen = byIndex.get(index);
      if (seen === undefined) byIndex.set(index, { id, term, hash });
      else
        assert.deepEqual(
          [term, hash],
          [seen.term, seen.hash],
          `entry ${index} differs between ${seen.id} and ${id}`,
        );
    }
  }
  for (const [id, d] of dumps) {
    for (const [k, v] of acked) assert.equal(d.kv[k], v, `acknowledged write ${k}=${v} missing on ${id}`);
  }
}

async function withCluster(
  ids: string[],
  body: (c: KvProcessCluster, paused: Set<string>) => Promise<void>,
): Promise<void> {
  const root = mkdtempSync(join(tmpdir(), 'meshd-kvproc-'));
  const tls = mintTlsFixture().writeTo(root);
  const cluster = new KvProcessCluster({ ids, root, ...tls, heartbeatMs: 50, electionMs: 500 });
  try {
    await cluster.startAll();
    await body(cluster, new Set());
  } finally {
    await cluster.shutdown();
    rmSync(root, { recursive: true, force: true });
  }
}

describe('KV managers as separate processes', () => {
  it('3 managers: kill -9 of the leader under load, its restart, and a SIGSTOPped follower lose no acknowledged write and leave identical logs', async (t) => {
    await withCluster(['m1', 'm2', 'm3'], async (cluster, paused) => {
      const first = await cluster.leader();
      const load = startLoad(cluster, paused, 8, 3000);
      await sleep(600);
      await cluster.kill9(first);
      const second = await cluster.leader();
      assert.notEqual(second, first);
      await sleep(300);
      await cluster.startNode(first);
      await sleep(400);
      const follower = cluster.running().find((id) => id !== second && id !== first)!;
      cluster.pause(follower);
      paused.add(follower);
      await sleep(1200);
      cluster.resume(follower);
      paused.delete(follower);
      await sleep(400);
      await load.stop();
      assert.ok(load.acked.size > 50, `only ${load.acked.size} writes acknowledged`);
      const dumps = await converge(cluster);
      checkAgreement(dumps, load.acked);
      t.diagnostic(
        `acknowledged ${load.acked.size} writes; leaders ${first} -> ${second}; commit ${[...dumps.values()][0]!.status.applied}`,
      );
    });
  });

  it('5 managers: kill -9 of the leader while another is paused keeps quorum, and everything agrees after both return', async (t) => {
    await withCluster(['m1', 'm2', 'm3', 'm4', 'm5'], async (cluster, paused) => {
      const first = await cluster.leader(15_000);
      const load = startLoad(cluster, paused, 8, 2000);
      await sleep(400);
      const other = cluster.running().find((id) => id !== first)!;
      cluster.pause(other);
      paused.add(other);
      await cluster.kill9(first);
      const second = await cluster.leader(15_000);
      assert.notEqual(second, first);
      await sleep(500);
      cluster.resume(other);
      paused.delete(other);
      await cluster.startNode(first);
      await sleep(500);
      await load.stop();
      assert.ok(load.acked.size > 50, `only ${load.acked.size} writes acknowledged`);
      const dumps = await converge(cluster);
      checkAgreement(dumps, load.acked);
      t.diagnostic(
        `acknowledged ${load.acked.size} writes; leaders ${first} -> ${second}; commit ${[...dumps.values()][0]!.status.applied}`,
      );
    });
  });

  it('a corrupt WAL stops the manager with an error naming file, offset and recovery commands, and those commands recover it', async () => {
    await withCluster(['m1', 'm2', 'm3'], async (cluster) => {
      const leader = await cluster.leader();
      for (let i = 0; i < 30; i++)
        assert.ok((await cluster.request(leader, { op: 'put', k: `c${i}`, v: 'v' })).ok);
      const victim = cluster.running().find((id) => id !== leader)!;
      await cluster.shutdown();
      const walDir = join(cluster.opts.root, victim, 'wal');
      const segment = readdirSync(walDir)
        .filter((f) => f.endsWith('.wal'))
        .map((f) => ({ f, size: statSync(join(walDir, f)).size }))
        .sort((a, b) => b.size - a.size)[0]!;
      const bytes = readFileSync(join(walDir, segment.f));
      bytes[Math.floor(bytes.length / 2)]! ^= 0x40;
      writeFileSync(join(walDir, segment.f), bytes);
      const err = await cluster.startNode(victim).then(
        () => new Error('started on a corrupt WAL'),
        (e: Error) => e,
      );
      assert.match(err.message, /WAL is corrupt/);
      assert.ok(err.message.includes(join(walDir, segment.f)), err.message);
      assert.match(err.message, /byte offset \d+/);
      // The last-copy recovery path the message spells out: cut the log, then force a new cluster.
      const repair = /run: npx tsx (\S+) (repair --wal-dir \S+ --truncate-at \S+)/.exec(err.message);
      const force = /npx tsx (\S+) (force-new-cluster --data-dir \S+) --node-id/.exec(err.message);
      assert.ok(repair !== null && force !== null, err.message);
      const repoRoot = fileURLToPath(new URL('../../../../', import.meta.url));
      const cli = (args: string[]) =>
        execFileSync(process.execPath, ['--import', 'tsx', ...args], { cwd: repoRoot });
      cli([repair[1]!, ...repair[2]!.split(' ')]);
      cli([force[1]!, ...force[2]!.split(' '), '--node-id', victim]);
      await cluster.startNode(victim);
      assert.equal(await cluster.leader(), victim, 'the survivor leads its new single-member cluster');
      assert.ok((await cluster.request(victim, { op: 'put', k: 'after', v: 'repair' })).ok);
      const r = await cluster.request(victim, { op: 'get', k: 'c0' });
      assert.equal(r['value'], 'v', JSON.stringify(r));
    });
  });
});
