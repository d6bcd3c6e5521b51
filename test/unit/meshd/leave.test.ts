/**
 * `meshd leave` on a worker: refused while a daemon answers on the local
 * socket, allowed when the socket file is only a leftover of a killed meshd.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { resolveConfig } from '../../../src/meshd/config.js';
import { leaveNode } from '../../../src/meshd/daemon.js';

const dir = mkdtempSync(join(tmpdir(), 'meshd-leave-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function workerStateDir(name: string) {
  const cfg = resolveConfig({
    hostname: name,
    flags: {
      'state-dir': join(dir, name),
      socket: join(dir, `${name}.sock`),
      'listen-address': '127.0.0.1:0',
      'data-plane': 'none',
    },
  });
  mkdirSync(cfg.stateDir, { recursive: true });
  const node = { nodeId: 'n1', clusterId: 'c1', role: 'worker', founder: false, bootstrapped: true };
  writeFileSync(join(cfg.stateDir, 'node.json'), JSON.stringify(node));
  return cfg;
}

test('leave is refused while a daemon answers on the local socket', async () => {
  const cfg = workerStateDir('live');
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(cfg.socketPath, resolve));
  try {
    await assert.rejects(leaveNode(cfg, false), /meshd runs here \(.*live\.sock answers\): stop it first/);
    assert.ok(existsSync(join(cfg.stateDir, 'node.json')), 'state kept');
  } finally {
    await new Promise((resolve) => server.close(resolve));
  }
});

test('a socket file left by a killed meshd does not block leave', async () => {
  const cfg = workerStateDir('stale');
  // A process that binds the socket and dies by SIGKILL leaves the file behind, as a killed meshd does.
  spawnSync(process.execPath, [
    '-e',
    `require('net').createServer().listen(${JSON.stringify(cfg.socketPath)}, () => process.kill(process.pid, 'SIGKILL'))`,
  ]);
  assert.ok(existsSync(cfg.socketPath), 'the killed process left its socket file');
  assert.deepEqual(await leaveNode(cfg, false), []);
  assert.equal(existsSync(cfg.stateDir), false, 'state dir removed');
  assert.equal(existsSync(cfg.socketPath), false, 'stale socket removed');
});
