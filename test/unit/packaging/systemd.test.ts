/**
 * The systemd unit users install (packaging/systemd): systemd itself checks
 * it, its example config is one meshd accepts, and its stop rules leave room
 * for the task drain.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { resolveConfig } from '../../../src/meshd/config.js';

const ROOT = new URL('../../..', import.meta.url).pathname.replace(/\/$/, '');
const unit = readFileSync(join(ROOT, 'packaging/systemd/meshd.service'), 'utf8');
const dir = mkdtempSync(join(tmpdir(), 'meshd-unit-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const setting = (key: string): string | undefined => new RegExp(`^${key}=(.*)$`, 'm').exec(unit)?.[1];

test('systemd-analyze verify accepts the unit (ExecStart pointed at this checkout)', (t) => {
  const probe = spawnSync('systemd-analyze', ['--version']);
  if (probe.error !== undefined) {
    t.skip('SKIPPED: systemd-analyze is not installed (Debian package systemd)');
    return;
  }
  const path = join(dir, 'meshd.service');
  writeFileSync(path, unit.replaceAll('/opt/meshd', ROOT));
  const r = spawnSync('systemd-analyze', ['verify', path], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stderr.trim(), '', 'no warnings');
});

test('stop sends SIGTERM to meshd alone and waits past the task drain and grace period', () => {
  assert.equal(setting('KillMode'), 'mixed', 'the tasks must not get SIGTERM before their drain');
  const stopSec = Number(/^(\d+)s$/.exec(setting('TimeoutStopSec') ?? '')?.[1]);
  assert.ok(stopSec >= 30 + 10 + 10, `TimeoutStopSec ${stopSec}s: 30 s drain + 10 s grace + margin`);
  assert.equal(setting('ConditionPathExists'), '/var/lib/meshd/node.json');
});

test('the example config is one meshd accepts, with the paths the unit uses', () => {
  const cfg = resolveConfig({
    hostname: 'h1',
    flags: {},
    fileText: readFileSync(join(ROOT, 'packaging/systemd/meshd.yaml'), 'utf8'),
    filePath: 'meshd.yaml',
  });
  assert.equal(cfg.stateDir, '/var/lib/meshd');
  assert.equal(cfg.socketPath, '/run/meshd/meshd.sock');
  assert.match(setting('ExecStart') ?? '', /run --config \/etc\/meshd\/meshd\.yaml$/);
});
