import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { runToFixpoint } from '../../../controlplane/orchestrator/control-loop.js';
import { withStatus } from '../../../controlplane/orchestrator/task-model.js';
import { MemoryStore } from '../../../controlplane/store/memory-store.js';
import { TransactionBuilder } from '../../../controlplane/store/transaction.js';
import {
  NodeAvailability,
  NodeState,
  RestartCondition,
  StoreSnapshot,
  TaskState,
} from '../../../src/api/gen/meshd/v1/objects.js';
import { harness, replicated } from './helpers.js';

describe('replicated reconciler', () => {
  it('runs one task per slot, spread over the nodes', () => {
    const { h } = harness(3);
    const s = h.createService(replicated('web', 6));
    h.settle();
    assert.deepEqual([...h.runningByNode(s).values()], [2, 2, 2]);
    const slots = h.store
      .find('task', 'service', s)
      .map((t) => t.slot)
      .sort();
    assert.deepEqual(slots, [1, 2, 3, 4, 5, 6]);
  });

  it('scales down by removing tasks from the busiest nodes, and up by filling the lowest free slots', () => {
    const { h, nodeIds } = harness(2);
    const s = h.createService(replicated('web', 4));
    h.settle();
    h.addNode('node-3');
    h.scaleService(s, 3);
    h.settle();
    assert.equal(h.runningCount(s), 3);
    assert.deepEqual(
      nodeIds.map((n) => h.runningByNode(s).get(n)),
      [2, 1],
    );
    h.scaleService(s, 5);
    h.settle();
    assert.equal(h.runningCount(s), 5);
  });

  it('creates no duplicate tasks when a new leader starts from the same store (swarmkit#1054)', () => {
    const { h } = harness(3);
    h.createService(replicated('web', 5));
    h.settle();
    const copy = new MemoryStore();
    copy.restore(StoreSnapshot.fromPartial(h.store.snapshot()));
    const result = runToFixpoint(copy, (tx) => copy.apply(tx), h.ctx);
    assert.equal(result.transactions, 0);
  });

  it('keeps a task PENDING with the reason when no node can take it', () => {
    const { h } = harness(2);
    const s = h.createService(
      replicated('web', 1, { task: { placement: { constraints: ['node.labels.gpu==yes'] } } }),
    );
    h.settle();
    const t = h.store.find('task', 'service', s)[0]!;
    assert.equal(t.status?.state, TaskState.TASK_STATE_PENDING);
    assert.equal(
      t.status?.message,
      'no suitable node (constraint "node.labels.gpu==yes" not met on 2 nodes)',
    );
  });

  it('moves a task whose node stops matching its constraints (constraint enforcer)', () => {
    const { h, nodeIds } = harness(2);
    h.editNode(nodeIds[0]!, (n) => {
      n.labels['zone'] = 'a';
    });
    h.editNode(nodeIds[1]!, (n) => {
      n.labels['zone'] = 'a';
    });
    const s = h.createService(
      replicated('web', 2, { task: { placement: { constraints: ['node.labels.zone==a'] } } }),
    );
    h.settle();
    h.editNode(nodeIds[0]!, (n) => {
      n.labels['zone'] = 'b';
    });
    h.settle();
    assert.deepEqual([...h.runningByNode(s).entries()], [[nodeIds[1], 2]]);
  });
});

describe('restart supervisor', () => {
  it('replaces a failed task in the same slot only after the restart delay', () => {
    const { h } = harness(2);
    const s = h.createService(replicated('web', 1));
    h.settle();
    const first = h.store.find('task', 'service', s)[0]!;
    h.failTask(first.meta!.id);
    h.settle();
    assert.equal(h.runningCount(s), 0);
    h.tick(1000);
    assert.equal(h.runningCount(s), 1);
    const slot = h.store.find('task', 'slot', `${s}/1`);
    assert.equal(slot.length, 2);
    assert.equal(h.store.get('task', first.meta!.id)!.desiredState, TaskState.TASK_STATE_SHUTDOWN);
  });

  it('does not restart with condition none, and does not restart a completed task with on-failure', () => {
    const { h } = harness(1);
    const none = h.createService(
      replicated('a', 1, { task: { restart: { condition: RestartCondition.RESTART_CONDITION_NONE } } }),
    );
    const onFailure = h.createService(
      replicated('b', 1, { task: { restart: { condition: RestartCondition.RESTART_CONDITION_ON_FAILURE } } }),
    );
    h.settle();
    h.failTask(h.store.find('task', 'service', none)[0]!.meta!.id);
    const b = h.store.find('task', 'service', onFailure)[0]!;
    h.apply(
      new TransactionBuilder(h.nowMs).update(
        'task',
        withStatus(b, TaskState.TASK_STATE_COMPLETE, 'exit 0', h.nowMs),
      ),
    );
    h.tick(10_000);
    assert.equal(h.store.find('task', 'service', none).length, 1);
    assert.equal(h.store.find('task', 'service', onFailure).length, 1);
    assert.equal(h.store.find('task', 'service', none)[0]!.desiredState, TaskState.TASK_STATE_COMPLETE);
  });

  it('stops restarting after max attempts inside the window', () => {
    const { h } = harness(1);
    const s = h.createService(
      replicated('a', 1, {
        task: {
          restart: {
            condition: RestartCondition.RESTART_CONDITION_ANY,
            delayMs: 100,
            maxAttempts: 2,
            windowMs: 60_000,
          },
        },
      }),
    );
    h.settle();
    for (let i = 0; i < 4; i++) {
      const live = h.store
        .find('task', 'service', s)
        .find((t) => t.status?.state === TaskState.TASK_STATE_RUNNING);
      if (live !== undefined) h.failTask(live.meta!.id);
      h.tick(200);
      h.tick(200);
    }
    assert.equal(h.store.find('task', 'service', s).length, 3);
    assert.equal(h.runningCount(s), 0);
  });
});

describe('node failures', () => {
  it('replaces the tasks of a node that goes down on the other nodes', () => {
    const { h, nodeIds } = harness(3);
    const s = h.createService(replicated('web', 6));
    h.settle();
    h.editNode(nodeIds[0]!, (n) => {
      n.state = NodeState.NODE_STATE_DOWN;
    });
    h.settle();
    assert.equal(h.runningCount(s), 6);
    assert.equal(h.runningByNode(s).get(nodeIds[0]!), undefined);
  });

  it('keeps tasks on UNKNOWN nodes during the grace after a leader change, and replaces them after it', () => {
    const { h, nodeIds } = harness(3, { unknownGraceMs: 30_000 });
    const s = h.createService(replicated('web', 3));
    h.settle();
    for (const id of nodeIds)
      h.editNode(id, (n) => {
        n.state = NodeState.NODE_STATE_UNKNOWN;
      });
    h.tick(29_000);
    assert.equal(
      h.store.find('task', 'service', s).filter((t) => t.desiredState === TaskState.TASK_STATE_RUNNING)
        .length,
      3,
    );
    for (const id of nodeIds.slice(1))
      h.editNode(id, (n) => {
        n.state = NodeState.NODE_STATE_READY;
      });
    h.tick(2_000);
    assert.equal(h.runningCount(s), 3);
    assert.equal(h.runningByNode(s).get(nodeIds[0]!), undefined);
  });

  it('moves tasks off a drained node but leaves a paused node alone', () => {
    const { h, nodeIds } = harness(2);
    const s = h.createService(replicated('web', 4));
    h.settle();
    h.editNode(nodeIds[1]!, (n) => {
      n.availability = NodeAvailability.NODE_AVAILABILITY_PAUSE;
    });
    h.settle();
    assert.equal(h.runningByNode(s).get(nodeIds[1]!), 2);
    h.editNode(nodeIds[0]!, (n) => {
      n.availability = NodeAvailability.NODE_AVAILABILITY_DRAIN;
    });
    h.settle();
    assert.equal(h.runningByNode(s).get(nodeIds[0]!), undefined);
    assert.equal(h.runningCount(s), 2);
    assert.match(
      h.store.find('task', 'service', s).find((t) => t.status?.state === TaskState.TASK_STATE_PENDING)!
        .status!.message,
      /node drained or paused on 2 nodes/,
    );
  });
});
