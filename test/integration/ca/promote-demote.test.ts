/**
 * `meshctl node promote` / `demote` end to end on a 2-host netns lab
 * (`mdpb`): the CA reissues with the new OU, the node's certificate keeper
 * renews, and its daemon starts the manager role (Raft voter through
 * JoinRaft) or leaves Raft and stops it.
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
  /** A write through h1 commits only when a quorum of the Raft voters is alive. */
  const h1Commits = async (name: string) => {
    try {
      await lab.clients('h1').control.updateNode({
        node: 'h1',
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
    // A leader change while the new voter catches up puts nodes in the UNKNOWN grace for a moment.
    await lab.waitUntil(
      'both nodes ready as managers, seen through h2',
      async () => JSON.stringify(await lab.readyNodes('h2')) === JSON.stringify(['h1 manager', 'h2 manager']),
      30_000,
    );
    // Its certificate says manager: the CA on h2 serves join tokens to it over mTLS-only methods.
    assert.notEqual(await lab.token('h2', 'manager'), '');
  });

  test('demote: the node leaves Raft and stops its manager role; h1 alone commits again (1 voter)', async () => {
    const demoted = lab.meshctl('h1', 'node', 'demote', 'h2');
    assert.equal(demoted.status, 0, demoted.stderr);
    // The daemon says worker only once its manager role stopped, after the leader took it out of the voters.
    await lab.waitUntil('h2 stopped its manager role', async () => runningRole('h2') === 'worker', 45_000);
    // With h2's Raft stopped, a commit through h1 proves h2 is no longer a voter.
    assert.equal(await h1Commits('after-demote'), true);
    await lab.waitUntil(
      'h2 ready as a worker again',
      async () => (await lab.readyNodes('h1')).includes('h2 worker'),
      30_000,
    );
    const last = lab.meshctl('h1', 'node', 'demote', 'h1');
    assert.equal(last.status, 1);
    assert.match(last.stderr.trim(), /^meshctl: [^\n]*last manager[^\n]*$/);
  });
});
