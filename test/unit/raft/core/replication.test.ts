import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { RAFT_MESSAGE_TYPES } from '../../../../controlplane/raft/core/types.js';
import { bytes, clusterWithLogs, logTerms, noPreVote, ofType, TestCluster } from './helpers.js';

describe('raft §5.3–5.4 log replication', () => {
  test('the consistency check truncates only the conflicting suffix', () => {
    const c = clusterWithLogs({ '1': [1, 1, 1], '2': [1, 1, 1], '3': [1, 1, 1] });
    const r = c.raft('2');
    const e = (term: number, index: number) => ({
      term,
      index,
      type: 'normal' as const,
      data: bytes(`${term}/${index}`),
    });
    // Same entries again (duplicate delivery) change nothing.
    r.step({
      type: 'append',
      from: '1',
      to: '2',
      term: 2,
      prevLogIndex: 1,
      prevLogTerm: 1,
      entries: [e(1, 2)],
      commit: 0,
    });
    assert.deepEqual(logTerms(c, '2'), [1, 1, 1]);
    // A conflict at index 3 replaces index 3 and keeps 1..2.
    r.step({
      type: 'append',
      from: '1',
      to: '2',
      term: 2,
      prevLogIndex: 2,
      prevLogTerm: 1,
      entries: [e(2, 3), e(2, 4)],
      commit: 0,
    });
    assert.deepEqual(logTerms(c, '2'), [1, 1, 2, 2]);
    // An append whose previous entry does not match is rejected and changes nothing.
    r.step({
      type: 'append',
      from: '1',
      to: '2',
      term: 2,
      prevLogIndex: 4,
      prevLogTerm: 1,
      entries: [e(2, 5)],
      commit: 0,
    });
    assert.deepEqual(logTerms(c, '2'), [1, 1, 2, 2]);
    const resp = ofType(c.process('2'), 'appendResponse');
    assert.equal(resp[resp.length - 1]?.reject, true);
  });

  test('Figure 7: a new leader repairs every divergent follower log', () => {
    // Leader's log from Figure 7 (terms of entries 1..10) and followers a–f.
    const leaderLog = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6];
    const c = clusterWithLogs(
      {
        '1': leaderLog,
        a: [1, 1, 1, 4, 4, 5, 5, 6, 6],
        b: [1, 1, 1, 4],
        c: [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6],
        d: [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7],
        e: [1, 1, 1, 4, 4, 4, 4],
        f: [1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3],
      },
      noPreVote,
    );
    // d has the longest log of term 7; make 1 leader in term 8 with votes from a, b, e, f.
    c.cut.add('1->d');
    c.cut.add('d->1');
    c.cut.add('1->c');
    const r = c.raft('1');
    r.term = 7;
    r.campaign();
    c.stabilize();
    assert.equal(r.role, 'leader');
    c.heal();
    r.propose(bytes('x'));
    c.stabilize();
    c.tickAll(3);
    const expected = logTerms(c, '1');
    for (const id of c.ids()) assert.deepEqual(logTerms(c, id), expected, `follower ${id}`);
  });

  test('Figure 8: a leader never commits an entry of an older term by counting replicas', () => {
    // S1 leads term 2 with entry 2 replicated on S2 only; S5 led term 3 with its own entry 2.
    const c = clusterWithLogs({ '1': [1, 2], '2': [1, 2], '3': [1], '4': [1], '5': [1, 3] }, noPreVote);
    c.partition(['1', '2', '3', '4'], ['5']);
    const r = c.raft('1');
    r.term = 3;
    r.campaign();
    c.drop((m) => m.type === 'append');
    c.processAll();
    // Deliver only the votes so the leader has not yet sent its term-4 entry.
    c.deliver((m) => m.type === 'vote' || m.type === 'voteResponse');
    c.processAll();
    c.deliver((m) => m.type === 'voteResponse');
    assert.equal(r.role, 'leader');
    assert.equal(r.term, 4);
    // Replicate only index 2 (term 2) to S3: a majority holds it but it is not of term 4.
    const ack = {
      type: 'appendResponse' as const,
      from: '3',
      to: '1',
      term: 4,
      index: 2,
      reject: false,
      rejectHint: 0,
      logTerm: 0,
    };
    r.step(ack);
    r.step({ ...ack, from: '2' });
    assert.equal(r.log.committed, 0, 'index 2 of term 2 must not commit by counting');
    r.step({ ...ack, from: '2', index: 3 });
    r.step({ ...ack, from: '3', index: 3 });
    assert.equal(r.log.committed, 3, 'committing the term-4 entry commits index 2 with it');
  });

  test('a new leader overwrites a follower’s uncommitted entries, even of a higher term', () => {
    const c = clusterWithLogs({ '1': [1, 2], '2': [1, 2], '3': [1, 3] }, noPreVote);
    c.partition(['3'], ['1', '2']);
    const r = c.raft('1');
    r.term = 3;
    r.campaign();
    c.stabilize();
    assert.equal(r.role, 'leader');
    c.heal();
    r.propose(bytes('y'));
    c.stabilize();
    c.tickAll(2);
    assert.deepEqual(logTerms(c, '3'), logTerms(c, '1'));
    assert.equal(logTerms(c, '3')[1], 2);
  });

  test('fast back-tracking: one rejection skips a whole conflicting term', () => {
    const c = clusterWithLogs(
      { '1': [1, 1, 1, 4, 4, 4, 4, 4], '2': [1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2], '3': [1, 1, 1] },
      noPreVote,
    );
    const r = c.raft('1');
    r.term = 4;
    r.campaign();
    c.stabilize();
    r.propose(bytes('z'));
    c.stabilize();
    assert.deepEqual(logTerms(c, '2'), logTerms(c, '1'));
    const rejections = c
      .node('2')
      .readies.flatMap((rd) => ofType(rd.messages, 'appendResponse'))
      .filter((m) => m.reject);
    assert.equal(rejections.length, 1, 'eight conflicting entries of term 2 cost one round trip');
  });

  test('reordered and duplicated append responses never move progress backwards', () => {
    const c = new TestCluster(['1', '2', '3']);
    c.elect('1');
    const r = c.raft('1');
    for (const d of ['a', 'b', 'c']) r.propose(bytes(d));
    c.stabilize();
    const pr = r.tracker.progress.get('2')!;
    const match = pr.match;
    const next = pr.next;
    const stale = {
      type: 'appendResponse' as const,
      from: '2',
      to: '1',
      term: r.term,
      index: 1,
      reject: false,
      rejectHint: 0,
      logTerm: 0,
    };
    r.step(stale);
    r.step(stale);
    r.step({ ...stale, index: 1, reject: true, rejectHint: 0 });
    assert.equal(pr.match, match);
    assert.ok(pr.next >= next);
    assert.equal(r.log.committed, match);
  });

  test('a follower’s commit index never decreases on a stale heartbeat', () => {
    const c = new TestCluster(['1', '2', '3']);
    c.elect('1');
    c.raft('1').propose(bytes('a'));
    c.stabilize();
    c.tickAll(2);
    const f = c.raft('2');
    const commit = f.log.committed;
    f.step({ type: 'heartbeat', from: '1', to: '2', term: f.term, commit: 0, context: new Uint8Array() });
    assert.equal(f.log.committed, commit);
  });

  test('a proposal on a follower is forwarded to the leader and committed', () => {
    const c = new TestCluster(['1', '2', '3']);
    c.elect('1');
    c.raft('3').propose(bytes('via-follower'));
    const sent = c.process('3');
    assert.equal(ofType(sent, 'propose')[0]?.to, '1');
    c.stabilize();
    c.tickAll(1);
    for (const id of c.ids()) assert.deepEqual(c.appliedData(id), ['via-follower']);
  });

  test('a proposal without a known leader is refused with RAFT_PROPOSAL_DROPPED', () => {
    const c = new TestCluster(['1', '2', '3']);
    assert.throws(() => c.raft('1').propose(bytes('x')), { code: 'RAFT_PROPOSAL_DROPPED' });
  });

  test('a committed entry is applied exactly once, in order, on every node (§5.3)', () => {
    const c = new TestCluster(['1', '2', '3']);
    c.elect('1');
    for (let i = 0; i < 20; i++) c.raft(i % 2 === 0 ? '1' : '2').propose(bytes(`v${i}`));
    c.stabilize();
    c.tickAll(2);
    const expected = c.appliedData('1');
    assert.equal(expected.length, 20);
    for (const id of c.ids()) assert.deepEqual(c.appliedData(id), expected);
  });

  test('malformed or misaddressed peer messages are ignored, never thrown', () => {
    const c = new TestCluster(['1', '2', '3']);
    c.elect('1');
    const r = c.raft('2');
    const before = { term: r.term, commit: r.log.committed, last: r.log.lastIndex() };
    const junk: unknown[] = [
      null,
      { type: 'nope', from: '1', to: '2', term: 1 },
      {
        type: 'append',
        from: '1',
        to: '3',
        term: 1,
        prevLogIndex: 0,
        prevLogTerm: 0,
        entries: [],
        commit: 0,
      },
      {
        type: 'append',
        from: '1',
        to: '2',
        term: -1,
        prevLogIndex: 0,
        prevLogTerm: 0,
        entries: [],
        commit: 0,
      },
      {
        type: 'append',
        from: '1',
        to: '2',
        term: 1,
        prevLogIndex: 0,
        prevLogTerm: 0,
        entries: [{ index: 7 }],
        commit: 0,
      },
      { type: 'heartbeat', from: '1', to: '2', term: 1e300, commit: 0, context: new Uint8Array() },
      { type: 'heartbeat', from: '3', to: '2', term: 0, commit: 99, context: new Uint8Array() },
      {
        type: 'append',
        from: '1',
        to: '2',
        term: 1,
        prevLogIndex: 1,
        prevLogTerm: 1,
        entries: [null],
        commit: 0,
      },
      { type: 'propose', from: '3', to: '2', term: 0, entries: [null] },
      {
        type: 'snapshot',
        from: '1',
        to: '2',
        term: 1,
        metadata: { index: 9, term: 1, confState: { voters: [7], learners: [] } },
        offset: 0,
        totalBytes: 0,
        data: new Uint8Array(),
        done: true,
      },
      {
        type: 'append',
        from: '1',
        to: '2',
        term: 1,
        prevLogIndex: 0,
        prevLogTerm: 0,
        entries: [],
        commit: 'x',
      },
      {
        type: 'snapshot',
        from: '1',
        to: '2',
        term: 1,
        metadata: null,
        offset: 0,
        totalBytes: 0,
        data: new Uint8Array(),
        done: true,
      },
    ];
    for (const m of junk) r.step(m as never);
    assert.deepEqual({ term: r.term, commit: r.log.committed, last: r.log.lastIndex() }, before);
  });

  test('random malformed peer messages never throw and never move the term backwards (property)', () => {
    const c = new TestCluster(['1', '2', '3']);
    c.elect('1');
    const r = c.raft('2');
    const field = fc.oneof(fc.anything(), fc.nat(5), fc.constant(new Uint8Array(3)), fc.constant([]));
    const message = fc.record({
      type: fc.constantFrom(...RAFT_MESSAGE_TYPES),
      from: fc.constantFrom('1', '3', '', '2'),
      to: fc.constantFrom('2', '1'),
      term: fc.oneof(fc.nat(4), fc.double(), fc.constant(-1)),
      prevLogIndex: field,
      prevLogTerm: field,
      entries: fc.oneof(field, fc.array(fc.anything(), { maxLength: 3 })),
      commit: field,
      index: field,
      context: field,
      metadata: field,
      data: field,
      offset: field,
      totalBytes: field,
      lastLogIndex: field,
      lastLogTerm: field,
      reject: fc.boolean(),
      rejectHint: field,
      logTerm: field,
      target: field,
      transfer: fc.boolean(),
      done: fc.boolean(),
    });
    fc.assert(
      fc.property(fc.array(message, { maxLength: 20 }), (messages) => {
        const term = r.term;
        for (const m of messages) r.step(m as never);
        c.process('2');
        c.inFlight = [];
        return r.term >= term;
      }),
      { seed: 7, numRuns: 300 },
    );
  });
});
