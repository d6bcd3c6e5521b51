import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, it } from 'node:test';
import { labName, VmLab } from '../../scripts/vmlab/lab.js';

const NAME = labName('mdvkill');
let lab: VmLab | undefined;
after(async () => {
  await (lab ?? VmLab.attach({ name: NAME })).down();
});

const alive = (pid: number): boolean =>
  existsSync(`/proc/${pid}`) && !readFileSync(`/proc/${pid}/stat`, 'utf8').includes(') Z ');
const netnsExists = (): boolean =>
  execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
    .split('\n')
    .some((line) => line.split(' ')[0] === NAME);

it('up after a run that never called down replaces it; exec returns output and exit code; down leaves nothing and may repeat', async () => {
  const first = await VmLab.up(1, { name: NAME });
  const pidFile = join(first.stateDir, 'vm1', 'qemu.pid');
  const firstPid = Number(readFileSync(pidFile, 'utf8').trim());
  assert.ok(alive(firstPid));

  // The first run "dies" here without down; the next up must clean up after it.
  lab = await VmLab.up(1, { name: NAME });
  assert.ok(!alive(firstPid), 'the old qemu is gone');
  const result = await lab.exec('vm1', 'echo out; echo err >&2; ipvsadm -Ln | head -1; exit 7');
  assert.deepEqual(result, {
    stdout: 'out\nIP Virtual Server version 1.2.1 (size=4096)\n',
    stderr: 'err\n',
    exitCode: 7,
  });

  const pid = Number(readFileSync(join(lab.stateDir, 'vm1', 'qemu.pid'), 'utf8').trim());
  await lab.down();
  assert.ok(!alive(pid), 'qemu is gone after down');
  assert.ok(!netnsExists(), 'the lab namespace is gone');
  assert.ok(!existsSync(lab.stateDir), 'the state dir is gone');
  await lab.down();
});
