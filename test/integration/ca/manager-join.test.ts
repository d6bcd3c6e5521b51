/**
 * Adding a manager does not disturb the cluster (netns lab `mdlj`, 3 hosts):
 * h1 inits, h2 joins as a manager, then h3 joins as a manager while a client
 * loop writes through h1. The newcomer catches up as a Raft learner and is
 * promoted to voter by the leader, so the leader and its term stay the same
 * and no write fails.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { DiagManagers } from '../../../src/api/gen/meshd/v1/diag.js';
import { ClusterLab } from './cluster-lab.js';

/** Bounds of the client loop: it stops at whichever comes first. */
const MAX_WRITES = 2_000;
const MAX_LOOP_MS = 120_000;

describe('a manager joining while clients write', () => {
  const lab = new ClusterLab('mdlj');
  const raft = async (via: string): Promise<DiagManagers | undefined> => {
    try {
      return (await lab.clients(via).diag.diagnose({ probeTimeoutMs: 200 })).managers;
    } catch {
      return undefined;
    }
  };
  const nodeId = async (via: string) =>
    (await lab.clients(via).diag.diagnose({ probeTimeoutMs: 200 })).node?.nodeId;

  before(async () => {
    await lab.up(3);
    const init = lab.meshd('h1', 'init');
    assert.equal(init.status, 0, init.stderr);
    lab.start('h1');
    await lab.waitUntil('h1 answers', async () => (await lab.token('h1', 'manager')) !== '', 30_000);
    const j = lab.meshd('h2', 'join', '--token', await lab.token('h1', 'manager'), lab.address('h1'));
    assert.equal(j.status, 0, j.stderr);
    lab.start('h2');
    await lab.waitUntil(
      '2 ready managers',
      async () => JSON.stringify(await lab.readyNodes('h1')) === '["h1 manager","h2 manager"]',
      45_000,
    );
  });

  after(async () => {
    await lab.down();
  });

  test('adding a third manager under a write loop changes neither the leader nor the term, and every write commits', async () => {
    const before = await raft('h1');
    assert.ok(before?.thisNodeLeads, 'h1 leads before the join');
    assert.equal(before.raftVoters.length, 2);
    let stop = false;
    let writes = 0;
    const failures: string[] = [];
    const started = Date.now();
    const loop = (async () => {
      while (!stop && writes < MAX_WRITES && Date.now() - started < MAX_LOOP_MS) {
        try {
          await lab.clients('h1').control.updateNode({
            node: 'h1',
            version: 0,
            availability: undefined,
            role: undefined,
            labelsAdd: { write: String(writes) },
            labelsRemove: [],
          });
          writes++;
        } catch (err) {
          failures.push((err as Error).message);
          if (failures.length > 20) return;
        }
      }
    })();
    try {
      await lab.waitUntil(
        'a few writes before the join',
        async () => writes >= 5 || failures.length > 0,
        30_000,
      );
      const j = lab.meshd('h3', 'join', '--token', await lab.token('h1', 'manager'), lab.address('h1'));
      assert.equal(j.status, 0, j.stderr);
      lab.start('h3');
      await lab.waitUntil(
        'h3 a Raft voter (3 voters seen by h1 and h3)',
        async () =>
          (await raft('h1'))?.raftVoters.length === 3 && (await raft('h3'))?.raftVoters.length === 3,
        60_000,
      );
      const atPromotion = writes;
      await lab.waitUntil('writes after the promotion', async () => writes >= atPromotion + 5, 30_000);
    } finally {
      stop = true;
      await loop;
    }
    assert.deepEqual(failures, [], 'no write failed while h3 joined');
    const h3 = await nodeId('h3');
    for (const via of ['h1', 'h2', 'h3']) {
      const now = await raft(via);
      assert.equal(now?.raftLeaderNodeId, before.raftLeaderNodeId, `leader seen by ${via}`);
      assert.equal(now?.raftTerm, before.raftTerm, `term on ${via}`);
      assert.ok(now?.raftVoters.includes(h3 ?? '?'), `${via} counts h3 as a voter`);
      assert.deepEqual(now?.raftLearners, [], `no learner left on ${via}`);
    }
  });
});
