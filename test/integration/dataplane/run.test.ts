/** `meshd dataplane run`: health port, SIGHUP reload, periodic resync, SIGTERM (prefix `mdlr`). */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { execa, type ResultPromise } from 'execa';
import { createNetns, deleteNetns, listNetns } from '../../../dataplane/netns/netns.js';
import { networkNetnsName } from '../../../dataplane/reconciler/node.js';
import { DesiredState, PublishMode } from '../../../src/api/gen/meshd/v1/dataplane.js';
import { sampleState } from '../../unit/desired/fixtures.js';
import { httpGet, sh } from './mesh-lab.js';

const MESHD = fileURLToPath(new URL('../../../bin/meshd', import.meta.url));
const HOST = 'mdlr';
const PREFIX = 'mdlr-';
const HEALTH_PORT = 30081;

function localState(nodeId: string): DesiredState {
  const state = sampleState();
  state.node!.id = nodeId;
  state.services[0]!.ports[0]!.publishMode = PublishMode.PUBLISH_MODE_LOCAL;
  state.services[0]!.ports[0]!.healthPort = HEALTH_PORT;
  return state;
}

async function until<T>(what: string, probe: () => Promise<T>, ok: (v: T) => boolean): Promise<T> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const value = await probe();
    if (ok(value)) return value;
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${what}; last: ${JSON.stringify(value)}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

describe('meshd dataplane run', { timeout: 120_000 }, () => {
  let dir: string;
  let daemon: ResultPromise | undefined;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'mdlr-'));
    // The host namespace with the node's underlay address; meshd builds the rest (overlay, sandboxes).
    await createNetns(HOST);
    await execa('ip', ['-n', HOST, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0p']);
    await execa('ip', ['-n', HOST, 'addr', 'add', '192.168.50.1/24', 'dev', 'eth0']);
    await execa('ip', ['-n', HOST, 'link', 'set', 'eth0', 'up']);
  });
  after(async () => {
    daemon?.kill('SIGKILL');
    for (const ns of listNetns(HOST)
      .filter((n) => n === HOST || n.startsWith(PREFIX))
      .reverse())
      await deleteNetns(ns);
    rmSync(dir, { recursive: true, force: true });
  });

  test('serves the health port, reloads on SIGHUP, repairs drift on its own, stops on SIGTERM', async () => {
    const file = join(dir, 'state.json');
    writeFileSync(file, JSON.stringify(DesiredState.toJSON(localState('n1'))));
    daemon = execa(
      'ip',
      [
        'netns',
        'exec',
        HOST,
        MESHD,
        'dataplane',
        'run',
        '--state',
        file,
        '--netns-prefix',
        PREFIX,
        '--state-dir',
        dir,
        '--resync-interval-ms',
        '300',
      ],
      { reject: false },
    );
    const url = `http://127.0.0.1:${HEALTH_PORT}/`;
    await until(
      'health 200',
      () => httpGet(HOST, url),
      (r) => r?.status === 200,
    );

    writeFileSync(file, JSON.stringify(DesiredState.toJSON(localState('n3'))));
    daemon.kill('SIGHUP');
    await until(
      'health 503 after reload',
      () => httpGet(HOST, url),
      (r) => r?.status === 503,
    );

    const appNetns = networkNetnsName(PREFIX, 'app');
    const vips = ['ip', 'netns', 'exec', appNetns, 'nft', 'list', 'map', 'ip', 'meshd', 'vips'];
    await sh([
      'ip',
      'netns',
      'exec',
      appNetns,
      'nft',
      'delete',
      'element',
      'ip',
      'meshd',
      'vips',
      '{ 10.10.0.100 . tcp . 8080 }',
    ]);
    await until(
      'resync restores the element',
      () => sh(vips),
      (out) => out.includes('10.10.0.100 . tcp . 8080'),
    );

    daemon.kill('SIGTERM');
    const result = await daemon;
    assert.equal(result.exitCode, 0, String(result.stderr));
  });
});
