import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FAILING_ENV } from '../../../controlplane/orchestrator/harness.js';
import { withDesired, withStatus } from '../../../controlplane/orchestrator/task-model.js';
import {
  NodeAvailability,
  NodeState,
  TaskState,
  UpdateFailureAction,
  UpdateOrder,
  UpdateState,
} from '../../../src/api/gen/meshd/v1/objects.js';
import { MeshError } from '../../../src/common/errors.js';
import { global, harness, replicated } from './helpers.js';

describe('task model', () => {
  it('refuses to move an observed state backwards (a stale agent report)', () => {
    const { h } = harness(1);
    const s = h.createService(replicated('web', 1));
    h.settle();
    const t = h.store.find('task', 'service', s)[0]!;
    assert.throws(
      () => withStatus(t, TaskState.TASK_STATE_PENDING, 'late', 0),
      (e: unknown) => e instanceof MeshError && e.code === 'STATE_REGRESSION',
    );
    const stopped = withDesired(t, TaskState.TASK_STATE_SHUTDOWN);
    assert.throws(
      () => withDesired(stopped, TaskState.TASK_STATE_RUNNING),
      /desired state may only move forward/,
    );
  });
});

describe('global reconciler', () => {
  it('runs one task per eligible node, and follows nodes joining, draining and label changes', () => {
    const { h, nodeIds } = harness(3);
    const s = h.createService(global('agent', ['node.labels.role!=edge']));
    h.settle();
    assert.equal(h.runningCount(s), 3);
    const joined = h.addNode('node-4');
    h.settle();
    assert.equal(h.runningByNode(s).get(joined), 1);
    h.editNode(nodeIds[0]!, (n) => {
      n.availability = NodeAvailability.NODE_AVAILABILITY_DRAIN;
    });
    h.editNode(nodeIds[1]!, (n) => {
      n.labels['role'] = 'edge';
    });
    h.settle();
    assert.deepEqual([...h.runningByNode(s).keys()].sort(), [nodeIds[2]!, joined].sort());
    h.editNode(nodeIds[1]!, (n) => {
      n.labels = {};
    });
    h.settle();
    assert.equal(h.runningCount(s), 3);
  });

  it('keeps the task of a paused node but gives a node that goes down none', () => {
    const { h, nodeIds } = harness(2);
    const s = h.createService(global('agent'));
    h.settle();
    h.editNode(nodeIds[0]!, (n) => {
      n.availability = NodeAvailability.NODE_AVAILABILITY_PAUSE;
    });
    h.editNode(nodeIds[1]!, (n) => {
      n.state = NodeState.NODE_STATE_DOWN;
    });
    h.settle();
    assert.deepEqual([...h.runningByNode(s).entries()], [[nodeIds[0], 1]]);
    const pending = h.store
      .find('task', 'service', s)
      .filter(
        (t) =>
          t.desiredState <= TaskState.TASK_STATE_RUNNING && t.status?.state !== TaskState.TASK_STATE_RUNNING,
      );
    assert.equal(pending.length, 0);
  });
});

describe('rolling updater', () => {
  it('replaces tasks one at a time (parallelism 1, stop-first) and completes at the new version', () => {
    const { h } = harness(3);
    const s = h.createService(replicated('web', 3));
    h.settle();
    h.updateService(s, (spec) => {
      spec.task!.env = ['V=2'];
    });
    let maxNew = 0;
    for (let i = 0; i < 20 && h.service(s)!.updateStatus?.state === UpdateState.UPDATE_STATE_UPDATING; i++) {
      h.settle();
      const fresh = h.store
        .find('task', 'service', s)
        .filter(
          (t) =>
            t.specVersion === 2 &&
            t.desiredState <= TaskState.TASK_STATE_RUNNING &&
            t.status?.state !== TaskState.TASK_STATE_RUNNING,
        );
      maxNew = Math.max(maxNew, fresh.length);
      assert.ok(
        h.runningCount(s) >= 2,
        'stop-first with parallelism 1 takes down at most one task at a time',
      );
      h.tick(1000);
    }
    assert.equal(h.service(s)!.updateStatus?.state, UpdateState.UPDATE_STATE_COMPLETED);
    const running = h.store
      .find('task', 'service', s)
      .filter(
        (t) =>
          t.status?.state === TaskState.TASK_STATE_RUNNING && t.desiredState === TaskState.TASK_STATE_RUNNING,
      );
    assert.deepEqual(
      running.map((t) => t.spec?.env),
      [['V=2'], ['V=2'], ['V=2']],
    );
    assert.ok(maxNew <= 1);
  });

  it('start-first never runs fewer than the replicas during the update', () => {
    const { h } = harness(2);
    const s = h.createService(
      replicated('web', 2, {
        update: { parallelism: 1, order: UpdateOrder.UPDATE_ORDER_START_FIRST, monitorMs: 1000 },
      }),
    );
    h.settle();
    h.updateService(s, (spec) => {
      spec.task!.env = ['V=2'];
    });
    for (let i = 0; i < 10; i++) {
      h.settle();
      assert.ok(h.runningCount(s) >= 2);
      h.tick(1000);
    }
    assert.equal(h.service(s)!.updateStatus?.state, UpdateState.UPDATE_STATE_COMPLETED);
    assert.equal(h.runningCount(s), 2);
  });

  it('rolls back to the previous spec when the new tasks fail and the failure action is rollback', () => {
    const { h } = harness(2);
    const s = h.createService(
      replicated('web', 2, {
        update: {
          parallelism: 1,
          failureAction: UpdateFailureAction.UPDATE_FAILURE_ACTION_ROLLBACK,
          monitorMs: 2000,
        },
      }),
    );
    h.settle();
    h.updateService(s, (spec) => {
      spec.task!.env = [FAILING_ENV];
    });
    for (let i = 0; i < 15; i++) h.tick(1000);
    const svc = h.service(s)!;
    assert.equal(svc.updateStatus?.state, UpdateState.UPDATE_STATE_ROLLBACK_COMPLETED);
    assert.deepEqual(svc.spec?.task?.env, []);
    assert.equal(h.runningCount(s), 2);
  });

  it('pauses with a message naming the failed task when the failure action is pause', () => {
    const { h } = harness(2);
    const s = h.createService(replicated('web', 2));
    h.settle();
    h.updateService(s, (spec) => {
      spec.task!.env = [FAILING_ENV];
    });
    for (let i = 0; i < 5; i++) h.tick(1000);
    const status = h.service(s)!.updateStatus!;
    assert.equal(status.state, UpdateState.UPDATE_STATE_PAUSED);
    assert.match(
      status.message,
      /^update paused: 1 of \d+ updated tasks failed \(task \w+: task exited with code 1/,
    );
    assert.equal(h.runningCount(s), 1, 'the paused update leaves the other task on the old spec');
  });
});

describe('reaper and rebalance', () => {
  it('removes every task of a removed service once they have stopped', () => {
    const { h } = harness(2);
    const s = h.createService(replicated('web', 3));
    h.settle();
    h.removeService(s);
    h.settle();
    assert.equal(h.store.find('task', 'service', s).length, 0);
  });

  it('orphans the tasks of a removed node, which frees their addresses', () => {
    const { h, nodeIds } = harness(2);
    const s = h.createService(replicated('web', 2));
    h.settle();
    h.removeNode(nodeIds[0]!);
    h.settle();
    const orphaned = h.store.find('task', 'node', nodeIds[0]!);
    assert.ok(orphaned.every((t) => t.status?.state === TaskState.TASK_STATE_ORPHANED));
    assert.equal(h.runningCount(s), 2);
  });

  it('moves tasks onto a node that joins only when rebalance is switched on (swarmkit#1296)', () => {
    for (const rebalanceOnJoin of [false, true]) {
      const { h } = harness(2, { rebalanceOnJoin });
      const s = h.createService(replicated('web', 6));
      h.settle();
      const joined = h.addNode('node-3');
      for (let i = 0; i < 6; i++) h.tick(1000);
      assert.equal(h.runningByNode(s).get(joined) ?? 0, rebalanceOnJoin ? 2 : 0);
      assert.equal(h.runningCount(s), 6);
    }
  });
});
