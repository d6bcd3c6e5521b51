import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { LogStream } from '../../../src/api/gen/meshd/v1/logs.js';
import { formatLogLine, logPrefix } from '../../../src/meshctl/log-format.js';

const context = {
  serviceId: 'svc',
  serviceName: 'web',
  taskId: 'abcdefghijklmnopqrstuvwxy',
  slot: 2,
  nodeId: 'node3idxxxxxxxxxxxxx',
  nodeName: 'node3',
};
const plain = { noTaskIds: false, raw: false };

describe('service logs line format', () => {
  test('a replicated task is SERVICE.SLOT.TASKID@NODE with a 12-character task ID', () => {
    assert.equal(logPrefix(context, plain), 'web.2.abcdefghijkl@node3');
  });

  test('a global task (slot 0) is named by its node ID instead of a slot', () => {
    assert.equal(logPrefix({ ...context, slot: 0 }, plain), 'web.node3idxxxxx.abcdefghijkl@node3');
  });

  test('--no-task-ids leaves the task ID out; --raw prints the line alone', () => {
    const msg = { context, stream: LogStream.LOG_STREAM_STDOUT, data: Buffer.from('héllo') };
    assert.equal(formatLogLine(msg, { noTaskIds: true, raw: false }), 'web.2@node3 | héllo');
    assert.equal(formatLogLine(msg, { noTaskIds: false, raw: true }), 'héllo');
    assert.equal(formatLogLine(msg, plain), 'web.2.abcdefghijkl@node3 | héllo');
  });
});
