/**
 * `meshctl node promote` / `demote` end to end on a 2-host netns lab
 * (`mdpb`): the CA reissues with the new OU, the node's certificate keeper
 * renews, and its daemon starts the manager role (a Raft learner through
 * JoinRaft, promoted to voter once caught up) or leaves Raft and stops it;
 * a demoted leader hands leadership over first (2 voters need its ack).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { ClusterLab } from './cluster-lab.js';

describe('promote and demote a node of a 1-manager cluster', () => {
  const lab = new ClusterLab('mdpb');
  /** The role a node's daemon runs now, from `meshctl diag` on its own socket (every node serves diag). */
  const runningRole = (h: string): string | undefined => {
    const r = lab.meshctl(h, '--format', 'json', 'diag');
    try {
      return (JSON.parse(r.stdout) as { facts: { node: { role: string } } }).facts.node.role;
    } catch {
      return undefined;
    }
  };
  /** A ReadIndex read through `via`: only a Raft member with a leader can answer it. */
  const linearizableNodes = async (via: string) => {
    try {
      return (await lab.clients(via).control.listNodes({ read: undefined })).nodes.length;
    } catch {
      return 0;
    }
  };
  /** A write through `via` commits only when a quorum of the Raft voters is alive. */
  const commits = async (via: string, name: string) => {
    try {
      await lab.clients(via).control.updateNode({
        node: via,
        version: 0,
        availability: undefined,
        role: undefined,
        labelsAdd: { probe: name },
        labelsRemove: [],
      });
      return true;
    } catch {
      return false;
    }
  };
  const leaderSeenBy = async (via: string) => {
    try {
      return (await lab.clients(via).diag.diagnose({ probeTimeoutMs: 200 })).managers?.raftLeaderNodeId ?? '';
    } catch {
      return '';
    }
  };
  const nodeIdOf = async (h: string) =>
    (await lab.clients(h).diag.diagnose({ probeTimeoutMs: 200 })).node?.nodeId ?? '';

  before(async () => {
    await lab.up(2);
    const init = lab.meshd('h1', 'init');
    assert.equal(init.status, 0, init.stderr);
    lab.start('h1');
    await lab.waitUntil('h1 answers', async () => (await lab.token('h1', 'worker')) !== '', 30_000);
    const j = lab.meshd('h2', 'join', '--token', await lab.token('h1', 'worker'), lab.address('h1'));
    assert.equal(j.status, 0, j.stderr);
    lab.start('h2');
    await lab.waitUntil(
      'h2 ready as a worker',
      async () => (await lab.readyNodes('h1')).includes('h2 worker'),
      30_000,
    );
  });

  after(async () => {
    await lab.down();
  });

  test('promote: the worker renews with a manager certificate and joins Raft as a voter (2 managers)', async () => {
    assert.equal(runningRole('h2'), 'worker');
    assert.equal(await linearizableNodes('h2'), 0, 'a worker serves no control API');
    const promoted = lab.meshctl('h1', 'node', 'promote', 'h2');
    assert.equal(promoted.status, 0, promoted.stderr);
    await lab.waitUntil(
      'h2 answers a ReadIndex read as a Raft member',
      async () => (await linearizableNodes('h2')) === 2,
      45_000,
    );
    // The newcomer catches up as a learner: no leader change, so no UNKNOWN grace to wait out.
    await lab.waitUntil(
      'both nodes ready as managers, seen through h2',
      async () => JSON.stringify(await lab.readyNodes('h2')) === JSON.stringify(['h1 manager', 'h2 manager']),
      30_000,
    );
    // Its certificate says manager: the CA on h2 serves join tokens to it over mTLS-only methods.
    assert.notEqual(await lab.token('h2', 'manager'), '');
  });

  test('demote the leader of a 2-manager cluster: it hands leadership over, leaves Raft, and h2 alone commits', async () => {
    const h1 = await nodeIdOf('h1');
    await lab.waitUntil('h1 leads', async () => (await leaderSeenBy('h2')) === h1, 30_000);
    const demoted = lab.meshctl('h2', 'node', 'demote', 'h1');
    assert.equal(demoted.status, 0, demoted.stderr);
    // The daemon says worker only once its manager role stopped, after the new leader took it out of Raft.
    await lab.waitUntil('h1 stopped its manager role', async () => runningRole('h1') === 'worker', 45_000);
    // With h1's Raft stopped, a commit through h2 proves h1 is no longer a voter (2 voters would need it).
    await lab.waitUntil('a commit through h2 alone', () => commits('h2', 'after-leader-demote'), 30_000);
    assert.equal(await leaderSeenBy('h2'), await nodeIdOf('h2'));
    await lab.waitUntil(
      'h1 ready as a worker',
      async () => (await lab.readyNodes('h2')).includes('h1 worker'),
      30_000,
    );
  });

  test('a demoted node promoted again rejoins as a learner and becomes a voter; demoting it again (a follower) leaves h2 alone', async () => {
    const promoted = lab.meshctl('h2', 'node', 'promote', 'h1');
    assert.equal(promoted.status, 0, promoted.stderr);
    await lab.waitUntil(
      'h1 answers a ReadIndex read as a Raft member',
      async () => (await linearizableNodes('h1')) === 2,
      45_000,
    );
    const demoted = lab.meshctl('h2', 'node', 'demote', 'h1');
    assert.equal(demoted.status, 0, demoted.stderr);
    await lab.waitUntil('h1 stopped its manager role', async () => runningRole('h1') === 'worker', 45_000);
    assert.equal(await commits('h2', 'after-follower-demote'), true);
    const last = lab.meshctl('h2', 'node', 'demote', 'h2');
    assert.equal(last.status, 1);
    assert.match(last.stderr.trim(), /^meshctl: [^\n]*last manager[^\n]*$/);
  });
});
