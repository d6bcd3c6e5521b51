/**
 * Three managers on a 3-host netns lab (prefix `mde3`, mesh-lab.ts): init on
 * h1, h2 and h3 join with the manager token (Raft voters), then kill -9 of
 * the leader.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { type MeshLab, startMeshLab, TASK_SERVER } from './mesh-lab.js';

describe('three managers on a 3-host netns lab', () => {
  let lab: MeshLab;
  let via = 'h1';
  const meshctl = (...argv: string[]) => lab.meshctl(argv, via);

  before(async () => {
    lab = await startMeshLab({ prefix: 'mde3', joinAs: 'manager' });
  });

  after(async () => {
    await lab?.teardown();
  });

  test('kill -9 of the leader: another manager answers, no task lost, the dead node is marked down', async () => {
    const created = meshctl(
      'service',
      'create',
      '--name',
      'web',
      '--replicas',
      '3',
      '--',
      '/usr/bin/env',
      'node',
      TASK_SERVER,
      lab.marker,
      '80',
    );
    assert.equal(
      created.status,
      0,
      `${created.stdout}${created.stderr}\n${meshctl('service', 'ps', 'web').stdout}\n${meshctl('node', 'ls').stdout}`,
    );
    assert.match(meshctl('node', 'ls').stdout, /h3\s+ready\s+active\s+manager/);
    lab.killDaemon('h1');
    via = 'h2';
    await lab.waitFor(
      'h1 down and 3 tasks running on h2/h3 (asked through h2)',
      () => {
        const nodes = meshctl('node', 'ls');
        const ps = meshctl('service', 'ps', 'web').stdout;
        return (
          nodes.status === 0 &&
          /h1\s+down/.test(nodes.stdout) &&
          (ps.match(/web\.\d+\s+h[23]\s+running\s+running/g) ?? []).length === 3
        );
      },
      45_000,
    );
  });
});
