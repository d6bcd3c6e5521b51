import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  decideStatusUpdate,
  diffTaskLists,
  tasksForNode,
} from '../../../controlplane/dispatcher/task-updates.js';
import { TaskState } from '../../../src/api/gen/meshd/v1/objects.js';
import { task } from './fixtures.js';

const status = (state: TaskState, message = '') => ({ state, message, err: '', timestamp: undefined });

test('a node is sent its tasks from ASSIGNED until they are observed terminal', () => {
  const tasks = [
    task('a', 's', 'n1', 1, TaskState.TASK_STATE_PENDING, {}),
    task('b', 's', 'n1', 2, TaskState.TASK_STATE_ASSIGNED, {}),
    task('c', 's', 'n1', 3, TaskState.TASK_STATE_RUNNING, {}, TaskState.TASK_STATE_SHUTDOWN),
    task('d', 's', 'n1', 4, TaskState.TASK_STATE_FAILED, {}),
    task('e', 's', 'n2', 5, TaskState.TASK_STATE_RUNNING, {}),
  ];
  assert.deepEqual(
    tasksForNode(tasks, 'n1').map((t) => t.meta?.id),
    ['b', 'c'],
  );
});

test('a task is sent again only when its stored version changed', () => {
  const a1 = task('a', 's', 'n1', 1, TaskState.TASK_STATE_ASSIGNED, {});
  const b1 = task('b', 's', 'n1', 2, TaskState.TASK_STATE_ASSIGNED, {});
  const a2 = structuredClone(a1);
  a2.meta!.version = { index: 7 };
  const c = task('c', 's', 'n1', 3, TaskState.TASK_STATE_ASSIGNED, {});
  const d = diffTaskLists([a1, b1], [a2, c]);
  assert.deepEqual(
    d.upsert.map((t) => t.meta?.id),
    ['a', 'c'],
  );
  assert.deepEqual(d.remove, ['b']);
});

test('observed task states only move forward and only for the reporter’s own tasks', () => {
  const running = task('a', 's', 'n1', 1, TaskState.TASK_STATE_RUNNING, {});
  assert.equal(decideStatusUpdate(running, 'n1', status(TaskState.TASK_STATE_STARTING)).apply, false);
  assert.equal(decideStatusUpdate(running, 'n1', status(TaskState.TASK_STATE_FAILED)).apply, true);
  assert.equal(
    decideStatusUpdate(running, 'n1', status(TaskState.TASK_STATE_RUNNING, 'unhealthy')).apply,
    true,
  );
  assert.equal(decideStatusUpdate(running, 'n1', status(TaskState.TASK_STATE_RUNNING)).apply, false);
  assert.equal(decideStatusUpdate(running, 'n2', status(TaskState.TASK_STATE_FAILED)).apply, false);
  assert.equal(decideStatusUpdate(undefined, 'n1', status(TaskState.TASK_STATE_FAILED)).apply, false);
  assert.equal(decideStatusUpdate(running, 'n1', status(TaskState.TASK_STATE_REMOVE)).apply, false);
  const failed = task('f', 's', 'n1', 1, TaskState.TASK_STATE_FAILED, {});
  assert.equal(decideStatusUpdate(failed, 'n1', status(TaskState.TASK_STATE_REJECTED)).apply, false);
});
