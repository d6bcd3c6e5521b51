import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { rootLogger, subsystemLogger } from '../../../src/common/logger.js';

describe('logger', () => {
  it('is silent under the test runner unless LOG_LEVEL is set', () => {
    if (process.env['LOG_LEVEL']) return;
    assert.equal(rootLogger.level, 'silent');
  });

  it('gives each subsystem a child logger that carries its name', () => {
    const log = subsystemLogger('raft', { nodeId: 'n1' });
    assert.deepEqual(log.bindings(), { subsystem: 'raft', nodeId: 'n1' });
  });
});
