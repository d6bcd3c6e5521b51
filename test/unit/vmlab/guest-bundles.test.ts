/**
 * The VM tier runs bundled programs in the guests. A bundle whose imports
 * cannot load only fails minutes into a VM run, so every guest entry is
 * bundled here, on the host, the way the VM tier bundles it.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';
import { bundleForGuest, bundleProgram } from '../../vm/helpers.js';

const ROOT = new URL('../../..', import.meta.url).pathname;

const GUEST_ENTRIES = [
  'test/vm/guest/driver.ts',
  'test/vm/guest/mesh-node.ts',
  'test/vm/guest/meshd-dataplane.ts',
  'dataplane/lb/ipvs/helper-main.ts',
  'dataplane/netns/helper-main.ts',
  'scripts/bench/dataplane-vm/guest.ts',
];

test('every guest program bundles with its packages external', async () => {
  for (const entry of GUEST_ENTRIES)
    await bundleForGuest(join(ROOT, entry), `unit-${entry.replaceAll('/', '-')}`);
});

test('every guest program bundles whole (packages inside, netlink outside), as the VM tier starts it, and loads', async () => {
  for (const entry of GUEST_ENTRIES) {
    const bundle = await bundleProgram(join(ROOT, entry), `unit-whole-${entry.replaceAll('/', '-')}`);
    // Loading runs every module's top level; with no arguments the programs stop at their usage check.
    const run = spawnSync(process.execPath, [bundle], { encoding: 'utf8', timeout: 30_000 });
    assert.doesNotMatch(
      run.stderr,
      /ERR_MODULE_NOT_FOUND|Cannot find (module|package)|is not defined/,
      entry,
    );
  }
});

test('the guest meshd dataplane CLI loads and answers --help', async () => {
  const bundle = await bundleForGuest(join(ROOT, 'test/vm/guest/meshd-dataplane.ts'), 'unit-meshd-dataplane');
  const out = execFileSync(process.execPath, [bundle, 'dataplane', '--help'], { encoding: 'utf8' });
  assert.match(out, /dump/);
});

test('an entry that imports the CA is refused with a message that says why', async () => {
  await assert.rejects(
    bundleForGuest(join(ROOT, 'src/meshd/main.ts'), 'unit-meshd-main'),
    /imports the CA's x509 library.*bundleProgram/s,
  );
});
