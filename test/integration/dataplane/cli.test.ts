/** `meshd dataplane apply|dump` end to end in namespaces (prefix `mdlc`), through bin/meshd. */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { createNetns, deleteNetns, listNetns } from '../../../dataplane/netns/netns.js';
import { DesiredState } from '../../../src/api/gen/meshd/v1/dataplane.js';
import { sampleState } from '../../unit/desired/fixtures.js';

const MESHD = fileURLToPath(new URL('../../../bin/meshd', import.meta.url));
const HOST = 'mdlch';
const PREFIX = 'mdlch-';
let dir: string;

function writeState(name: string, state: DesiredState): string {
  const path = join(dir, name);
  writeFileSync(path, JSON.stringify(DesiredState.toJSON(state)));
  return path;
}

async function meshd(...args: string[]) {
  return execa(
    'ip',
    ['netns', 'exec', HOST, MESHD, 'dataplane', ...args, '--netns-prefix', PREFIX, '--state-dir', dir],
    {
      reject: false,
      timeout: 60_000,
    },
  );
}

describe('meshd dataplane apply/dump', { timeout: 120_000 }, () => {
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'mdlc-'));
    // The host namespace with the node's underlay address; meshd builds the rest (overlay, sandboxes).
    await createNetns(HOST);
    await execa('ip', ['-n', HOST, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0p']);
    await execa('ip', ['-n', HOST, 'addr', 'add', '192.168.50.1/24', 'dev', 'eth0']);
    await execa('ip', ['-n', HOST, 'link', 'set', 'eth0', 'up']);
  });
  after(async () => {
    for (const ns of listNetns(HOST)
      .filter((n) => n === HOST || n.startsWith(PREFIX))
      .reverse())
      await deleteNetns(ns);
    rmSync(dir, { recursive: true, force: true });
  });

  test('apply programs a state file; the same file again changes nothing; dump shows no drift', async () => {
    const file = writeState('good.json', sampleState());
    const first = await meshd('apply', '--state', file);
    assert.equal(first.exitCode, 0, String(first.stderr));
    assert.match(String(first.stdout), /applied version 1: [1-9]\d* changes/);
    const again = await meshd('apply', '--state', file);
    assert.match(String(again.stdout), /applied version 1: 0 changes, 0 kernel operations/);
    const dump = await meshd('dump', '--json');
    assert.equal(dump.exitCode, 0, String(dump.stderr));
    const view = JSON.parse(String(dump.stdout)) as {
      appliedVersion: number;
      programmers: { name: string; pending: unknown[] }[];
    };
    assert.equal(view.appliedVersion, 1);
    assert.deepEqual(
      view.programmers.map((p) => [p.name, p.pending.length]),
      [
        ['overlay', 0],
        ['sandbox', 0],
        ['lb-nftables', 0],
      ],
    );
    const human = await meshd('dump');
    assert.match(String(human.stdout), /lb-nftables: desired 4, programmed 4, drift 0/);
  });

  test('a bad state file fails with the field named and exit code 1', async () => {
    const bad = sampleState();
    bad.networks[1]!.subnet = '10.10.0.0/16';
    const result = await meshd('apply', '--state', writeState('bad.json', bad));
    assert.equal(result.exitCode, 1);
    assert.match(
      String(result.stderr),
      /INVALID_ARGUMENT: invalid desired state: networks\[1\]\.subnet: 10\.10\.0\.0\/16 overlaps/,
    );
    const missing = await meshd('apply', '--state', join(dir, 'nope.json'));
    assert.equal(missing.exitCode, 1);
    assert.match(String(missing.stderr), /--state: cannot read/);
  });
});
