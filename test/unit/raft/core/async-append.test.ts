import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { bytes, ofType, TestCluster } from './helpers.js';

const asyncAppend = { config: { asyncLeaderAppend: true } };

describe('raft thesis §10.2.1 leader writes in parallel with replication (asyncLeaderAppend)', () => {
  test('the leader counts its own entry toward commit only after the Ready that carried it is persisted', () => {
    const c = new TestCluster(['1', '2', '3'], asyncAppend);
    c.elect('1');
    c.tickAll(1);
    const r = c.raft('1');
    const before = r.log.committed;
    r.propose(bytes('x'));
    const rd = r.ready();
    const appendTo2 = ofType(rd.messages, 'append').find((m) => m.to === '2')!;
    assert.equal(appendTo2.entries.length, 1, 'the append may leave before the leader’s own write');
    c.raft('2').step(appendTo2);
    const ack = ofType(c.process('2'), 'appendResponse')[0]!;
    r.step(ack);
    assert.equal(r.log.committed, before, 'one durable replica of three is no quorum');
    c.node('1').storage.append(rd.entries);
    r.advance();
    assert.equal(r.log.committed, before + 1);
    assert.ok(ofType(r.ready().messages, 'append').length > 0, 'the new commit index is broadcast');
  });

  test('a single-node leader commits only after advance()', () => {
    const c = new TestCluster(['1'], asyncAppend);
    c.elect('1');
    const r = c.raft('1');
    r.propose(bytes('solo'));
    const rd = r.ready();
    assert.equal(rd.entries.length, 1);
    assert.equal(rd.committedEntries.length, 0);
    c.node('1').storage.append(rd.entries);
    r.advance();
    assert.deepEqual(
      r.ready().committedEntries.map((e) => new TextDecoder().decode(e.data)),
      ['solo'],
    );
  });

  test('a cluster replicates and applies everything with asyncLeaderAppend on', () => {
    const c = new TestCluster(['1', '2', '3'], asyncAppend);
    c.elect('1');
    for (let i = 0; i < 10; i++) c.raft(i % 3 === 0 ? '2' : '1').propose(bytes(`v${i}`));
    c.stabilize();
    c.tickAll(2);
    const expected = c.appliedData('1');
    assert.equal(expected.length, 10);
    for (const id of c.ids()) assert.deepEqual(c.appliedData(id), expected);
  });
});
