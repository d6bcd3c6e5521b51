/**
 * `meshctl node promote` / `demote` end to end on a 2-host netns lab
 * (`mdpb`): the CA reissues with the new OU, the node's certificate keeper
 * renews, and its daemon starts the manager role (Raft voter through
 * JoinRaft) or leaves Raft and stops it.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ClusterLab } from './cluster-lab.js';

describe('promote and demote a node of a 1-manager cluster', () => {
  const lab = new ClusterLab('mdpb');
  const socket = (h: string) => join(lab.dir, `${h}.sock`);
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
    assert.equal(existsSync(socket('h2')), false, 'a worker serves no control socket');
    const promoted = lab.meshctl('h1', 'node', 'promote', 'h2');
    assert.equal(promoted.status, 0, promoted.stderr);
    await lab.waitUntil(
      'h2 answers a ReadIndex read as a Raft member',
      async () => (await linearizableNodes('h2')) === 2,
      45_000,
    );
    assert.deepEqual(await lab.readyNodes('h2'), ['h1 manager', 'h2 manager']);
    // Its certificate says manager: the CA on h2 serves join tokens to it over mTLS-only methods.
    assert.notEqual(await lab.token('h2', 'manager'), '');
  });

  test('demote: the node leaves Raft and stops its manager role; h1 alone commits again (1 voter)', async () => {
    const demoted = lab.meshctl('h1', 'node', 'demote', 'h2');
    assert.equal(demoted.status, 0, demoted.stderr);
    await lab.waitUntil('h2 stopped its control socket', async () => !existsSync(socket('h2')), 45_000);
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
