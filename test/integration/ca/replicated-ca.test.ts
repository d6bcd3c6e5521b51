/**
 * The CA replicated across three managers (netns lab `mdpa`, 4 hosts): h1
 * inits, h2 and h3 join as managers, h4 is a worker. Every manager serves
 * the CA and the join tokens from the Raft-replicated store.
 */
import assert from 'node:assert/strict';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { NodeRole } from '../../../src/api/gen/meshd/v1/objects.js';
import { ClusterLab } from './cluster-lab.js';

const MANAGERS = ['h1', 'h2', 'h3'] as const;

describe('CA replicated across three managers', () => {
  const lab = new ClusterLab('mdpa');
  const managerAddresses = () => MANAGERS.map((m) => lab.address(m));

  before(async () => {
    await lab.up(4);
    const init = lab.meshd('h1', 'init');
    assert.equal(init.status, 0, init.stderr);
    lab.start('h1');
    await lab.waitUntil('h1 answers', async () => (await lab.token('h1', 'manager')) !== '', 30_000);
    const managerToken = await lab.token('h1', 'manager');
    for (const h of ['h2', 'h3']) {
      const j = lab.meshd(h, 'join', '--token', managerToken, lab.address('h1'));
      assert.equal(j.status, 0, j.stderr);
      lab.start(h);
    }
    // Joining managers catch up as Raft learners, so no join costs a leader change (and its UNKNOWN grace).
    await lab.waitUntil('3 ready managers', async () => (await lab.readyNodes('h1')).length === 3, 45_000);
  });

  after(async () => {
    await lab.down();
  });

  test('every manager serves the same join tokens, and a worker joins through manager 2 (not the founder)', async () => {
    await lab.waitUntil(
      'tokens on h2 and h3',
      async () => (await lab.token('h2', 'worker')) !== '' && (await lab.token('h3', 'worker')) !== '',
      15_000,
    );
    for (const role of ['worker', 'manager'] as const) {
      const want = await lab.token('h1', role);
      for (const m of MANAGERS) assert.equal(await lab.token(m, role), want, `${role} token on ${m}`);
    }
    const j = lab.meshd('h4', 'join', '--token', await lab.token('h2', 'worker'), lab.address('h2'));
    assert.equal(j.status, 0, j.stderr);
    lab.start('h4');
    await lab.waitUntil(
      'h4 ready as a worker',
      async () => (await lab.readyNodes('h1')).includes('h4 worker'),
      30_000,
    );
  });

  test('a join-token rotation through manager 3 is seen by every manager, which refuses the old token at once', async () => {
    const old = await lab.token('h1', 'worker');
    const next = (
      await lab.clients('h3').ca.rotateJoinToken({ role: NodeRole.NODE_ROLE_WORKER, expiresAt: undefined })
    ).token;
    assert.notEqual(next, old);
    // A join is checked after a ReadIndex barrier: every manager refuses at once, no waiting.
    const answers = lab.probe('h4', 'join', managerAddresses(), old);
    for (const [i, a] of answers.entries()) {
      assert.equal(a.code, grpc.status.UNAUTHENTICATED, `${MANAGERS[i]}: ${JSON.stringify(a)}`);
      assert.match(a.details ?? '', /join token is wrong, expired or was rotated out/);
    }
    await lab.waitUntil(
      'the new token shown by every manager',
      async () => (await Promise.all(MANAGERS.map((m) => lab.token(m, 'worker')))).every((t) => t === next),
      5_000,
    );
  });

  test('node rm puts the worker on the denylist: each of the 3 managers refuses its certificate with a clear error', async () => {
    for (const [i, a] of lab.probe('h4', 'status', managerAddresses()).entries())
      assert.equal(a.code, undefined, `h4 accepted by ${MANAGERS[i]} before rm: ${JSON.stringify(a)}`);
    const rm = lab.meshctl('h2', 'node', 'rm', '--force', 'h4');
    assert.equal(rm.status, 0, rm.stderr);
    let answers = lab.probe('h4', 'status', managerAddresses());
    if (answers.some((a) => a.code === undefined)) {
      // Followers apply the commit a moment after the leader.
      await new Promise((r) => setTimeout(r, 1000));
      answers = lab.probe('h4', 'status', managerAddresses());
    }
    for (const [i, a] of answers.entries()) {
      assert.equal(a.code, grpc.status.PERMISSION_DENIED, `${MANAGERS[i]}: ${JSON.stringify(a)}`);
      assert.match(a.details ?? '', /node \w+ was removed from the cluster/);
    }
    await lab.kill('h4');
  });

  test('kill -9 of the founder: a new worker still joins through a survivor', async () => {
    await lab.kill('h1');
    rmSync(lab.stateDir('h4'), { recursive: true, force: true });
    // The join's barrier and proposal wait out the election of a new leader.
    const joined = lab.meshd('h4', 'join', '--token', await lab.token('h2', 'worker'), lab.address('h3'));
    assert.equal(joined.status, 0, joined.stderr);
    lab.start('h4');
    await lab.waitUntil(
      'h4 ready again',
      async () => (await lab.readyNodes('h3')).includes('h4 worker'),
      30_000,
    );
  });

  test('meshd leave --force on the killed founder takes it out of the Raft voters through a survivor', async () => {
    // kill -9 left its socket file behind; leave refuses while one exists.
    rmSync(join(lab.dir, 'h1.sock'), { force: true });
    const left = lab.meshd('h1', 'leave', '--force');
    assert.equal(left.status, 0, left.stderr);
    assert.doesNotMatch(left.stderr, /warning/, 'LeaveRaft was not confirmed');
    assert.equal(existsSync(lab.stateDir('h1')), false);
  });
});
