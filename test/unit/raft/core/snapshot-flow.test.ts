import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Raft } from '../../../../controlplane/raft/core/raft.js';
import { SeededRng } from '../../../../src/common/rng.js';
import { bytes, ofType, TestCluster } from './helpers.js';

function settle(c: TestCluster, ticks = 3): void {
  c.stabilize();
  c.tickAll(ticks);
}

/** The leader snapshots its applied state (the joined data) and compacts its log. */
function compactLeader(c: TestCluster, id: string): void {
  const n = c.node(id);
  const applied = n.raft.log.applied;
  const data = bytes(JSON.stringify(c.appliedData(id)));
  n.storage.createSnapshot(applied, n.raft.tracker.confState(), data);
  n.storage.compact(applied);
}

describe('raft §7 snapshots and log compaction', () => {
  test('a slow follower gets the snapshot streamed in chunks and catches up', () => {
    const c = new TestCluster(['1', '2', '3'], { config: { snapshotChunkBytes: 8 } });
    c.elect('1');
    c.isolate('3');
    for (let i = 0; i < 5; i++) c.raft('1').propose(bytes(`value-${i}`));
    settle(c);
    compactLeader(c, '1');
    c.heal();
    c.tickAll(2);
    const chunks = c.node('1').readies.flatMap((rd) => ofType(rd.messages, 'snapshot'));
    assert.ok(chunks.length > 3, `expected several chunks, got ${chunks.length}`);
    assert.ok(chunks.every((m) => m.data.byteLength <= 8));
    assert.equal(chunks.filter((m) => m.done).length, 1);
    const restored = c.node('3').readies.find((rd) => rd.snapshot !== undefined)?.snapshot;
    assert.ok(restored !== undefined);
    assert.deepEqual(JSON.parse(new TextDecoder().decode(restored.data)), c.appliedData('1'));
    c.raft('1').propose(bytes('next'));
    settle(c);
    assert.equal(c.raft('3').log.committed, c.raft('1').log.committed);
    assert.equal(c.raft('1').tracker.progress.get('3')?.state, 'replicate');
  });

  test('a snapshot larger than 4 MiB (swarmkit#2374) streams in chunks and arrives intact', () => {
    const c = new TestCluster(['1', '2', '3'], { config: { snapshotChunkBytes: 256 * 1024 } });
    c.elect('1');
    c.isolate('3');
    c.raft('1').propose(bytes('big'));
    settle(c);
    const n = c.node('1');
    const big = new Uint8Array(6 * 1024 * 1024);
    for (let i = 0; i < big.length; i += 4096) big[i] = i % 251;
    n.storage.createSnapshot(n.raft.log.applied, n.raft.tracker.confState(), big);
    n.storage.compact(n.raft.log.applied);
    c.heal();
    c.tickAll(2);
    const chunks = n.readies.flatMap((rd) => ofType(rd.messages, 'snapshot'));
    assert.equal(chunks.length, 24);
    const restored = c.node('3').readies.find((rd) => rd.snapshot !== undefined)?.snapshot;
    assert.ok(restored !== undefined);
    assert.equal(restored.data.byteLength, big.byteLength);
    assert.deepEqual(Buffer.from(restored.data).equals(Buffer.from(big)), true);
  });

  test('a failed snapshot stream falls back to probe and is retried', () => {
    const c = new TestCluster(['1', '2', '3'], { config: { snapshotChunkBytes: 4 } });
    c.elect('1');
    c.isolate('3');
    for (let i = 0; i < 3; i++) c.raft('1').propose(bytes(`v${i}`));
    settle(c);
    compactLeader(c, '1');
    c.heal();
    const r = c.raft('1');
    // Heartbeat, response, and then the leader starts the stream: drop it.
    for (let i = 0; i < 6 && r.tracker.progress.get('3')?.state !== 'snapshot'; i++) {
      c.tick('1');
      c.processAll();
      c.drop((m) => m.type === 'snapshot');
      c.deliver();
      c.processAll();
    }
    assert.equal(r.tracker.progress.get('3')?.state, 'snapshot');
    c.drop((m) => m.type === 'snapshot');
    r.reportSnapshot('3', false);
    assert.equal(r.tracker.progress.get('3')?.state, 'probe');
    settle(c);
    assert.equal(c.raft('3').log.committed, r.log.committed);
  });

  test('a snapshot stream with a missing chunk is discarded by the follower', () => {
    const c = new TestCluster(['1', '2', '3'], { config: { snapshotChunkBytes: 4 } });
    c.elect('1');
    c.isolate('3');
    for (let i = 0; i < 3; i++) c.raft('1').propose(bytes(`v${i}`));
    settle(c);
    compactLeader(c, '1');
    c.heal();
    const before = c.raft('3').log.lastIndex();
    for (let i = 0; i < 4; i++) {
      c.tick('1');
      c.processAll();
      let dropped = false;
      c.drop((m) => {
        if (m.type === 'snapshot' && m.offset > 0 && !dropped) {
          dropped = true;
          return true;
        }
        return false;
      });
      c.deliver();
      c.processAll();
      c.deliver();
    }
    assert.equal(c.raft('3').log.lastIndex(), before);
    assert.equal(c.raft('3').snapshotAssembly, undefined);
  });

  test('a restart from snapshot plus log reproduces the durable state', () => {
    const c = new TestCluster(['1', '2', '3']);
    c.elect('1');
    for (let i = 0; i < 6; i++) c.raft('1').propose(bytes(`v${i}`));
    settle(c);
    const n2 = c.node('2');
    const snapIndex = n2.raft.log.applied - 2;
    n2.storage.createSnapshot(snapIndex, n2.raft.tracker.confState(), bytes('state'));
    n2.storage.compact(snapIndex);
    const before = {
      hs: n2.raft.hardState(),
      last: n2.raft.log.lastIndex(),
      conf: n2.raft.tracker.confState(),
    };
    const restarted = c.restart('2');
    assert.deepEqual(restarted.raft.hardState(), before.hs);
    assert.equal(restarted.raft.log.lastIndex(), before.last);
    assert.deepEqual(restarted.raft.tracker.confState(), before.conf);
    c.process('2');
    assert.deepEqual(c.appliedData('2'), ['v4', 'v5'], 'only entries after the snapshot are re-applied');
    c.raft('1').propose(bytes('after-restart'));
    settle(c);
    assert.deepEqual(c.appliedData('2'), ['v4', 'v5', 'after-restart']);
  });
});

test('a restart whose applied index is ahead of the durable commit index does not re-apply entries', () => {
  const c = new TestCluster(['1', '2', '3']);
  c.elect('1');
  for (let i = 0; i < 4; i++) c.raft('1').propose(bytes(`v${i}`));
  settle(c);
  const n2 = c.node('2');
  const applied = n2.raft.log.applied;
  // The commit index is not fsynced: simulate a crash that lost its last update.
  n2.storage.setHardState({ ...n2.raft.hardState(), commit: 1 });
  const raft = new Raft({ ...c.configFor('2'), applied }, n2.storage, new SeededRng(3));
  assert.equal(raft.log.committed, applied);
  assert.equal(raft.log.applied, applied);
  assert.equal(raft.ready().committedEntries.length, 0);
});

describe('raft flow control', () => {
  test('replicate state pauses at maxInflightMsgs and resumes as acks arrive', () => {
    const c = new TestCluster(['1', '2', '3'], { config: { maxInflightMsgs: 2 } });
    c.elect('1');
    settle(c);
    const r = c.raft('1');
    for (let i = 0; i < 5; i++) r.propose(bytes(`p${i}`));
    const toTwo = ofType(c.process('1'), 'append').filter((m) => m.to === '2');
    assert.equal(toTwo.length, 2);
    assert.equal(r.tracker.progress.get('2')?.isPaused(), true);
    c.stabilize();
    assert.equal(c.raft('2').log.lastIndex(), r.log.lastIndex());
    assert.equal(r.tracker.progress.get('2')?.isPaused(), false);
  });

  test('probe state sends one append at a time until the follower answers', () => {
    const c = new TestCluster(['1', '2', '3']);
    c.elect('1');
    settle(c);
    const r = c.raft('1');
    r.tracker.progress.get('2')!.becomeProbe();
    for (let i = 0; i < 3; i++) r.propose(bytes(`p${i}`));
    const toTwo = ofType(c.process('1'), 'append').filter((m) => m.to === '2');
    assert.equal(toTwo.length, 1);
    c.stabilize();
    assert.equal(r.tracker.progress.get('2')?.state, 'replicate');
  });

  test('one append carries at most maxSizePerMsg bytes of entries (at least one entry)', () => {
    const c = new TestCluster(['1', '2', '3'], { config: { maxSizePerMsg: 100 } });
    c.elect('1');
    c.isolate('2');
    for (let i = 0; i < 10; i++) c.raft('1').propose(new Uint8Array(40));
    c.stabilize();
    c.heal();
    c.tickAll(3);
    const appends = c
      .node('1')
      .readies.flatMap((rd) => ofType(rd.messages, 'append'))
      .filter((m) => m.to === '2');
    assert.ok(
      appends.every(
        (m) => m.entries.length <= 1 || m.entries.reduce((n, e) => n + e.data.byteLength + 24, 0) <= 100,
      ),
    );
    assert.equal(c.raft('2').log.lastIndex(), c.raft('1').log.lastIndex());
  });

  test('the uncommitted log is bounded while quorum is lost', () => {
    const c = new TestCluster(['1', '2', '3'], { config: { maxUncommittedEntriesSize: 1000 } });
    c.elect('1');
    settle(c);
    c.isolate('1');
    let accepted = 0;
    assert.throws(
      () => {
        for (let i = 0; i < 1000; i++) {
          c.raft('1').propose(new Uint8Array(100));
          accepted++;
        }
      },
      { code: 'RAFT_PROPOSAL_DROPPED' },
    );
    assert.ok(accepted >= 1 && accepted <= 10, `accepted ${accepted}`);
    c.heal();
    settle(c);
    c.raft('1').propose(new Uint8Array(100));
  });

  test('an invalid configuration is refused with the field named', () => {
    const storage = new TestCluster(['1']).node('1').storage;
    const base = new TestCluster(['1']).configFor('1');
    assert.throws(
      () => new Raft({ ...base, heartbeatTicks: 10, electionTicks: 10 }, storage, new SeededRng(1)),
      {
        code: 'INVALID_ARGUMENT',
        message: /heartbeatTicks/,
      },
    );
  });
});
