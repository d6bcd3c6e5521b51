/**
 * Issue 7 acceptance: the 7 data-plane scenarios of issue 6 (the same
 * definitions the namespace lab runs, test/lib/mesh-scenarios.ts) across 3 VMs
 * with the IPVS backend: tasks on vm1 and vm2, clients on vm3. Each VM's node
 * data plane is built as `meshd run` builds it, with lb-backend auto.
 * Lab `mdvi1`, namespaces inside the guests prefixed `mdi-`.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { labName, VmLab } from '../../scripts/vmlab/lab.js';
import { MESH_SCENARIOS } from '../lib/mesh-scenarios.js';
import { bundleProgram } from './helpers.js';
import { VmMesh } from './mesh-vm.js';

const LAB = labName('mdvi1');
const ROOT = new URL('../..', import.meta.url).pathname;
let mesh: VmMesh | undefined;

describe('issue 6 scenarios on IPVS across 3 VMs (issue 7 acceptance)', { timeout: 600_000 }, () => {
  before(async () => {
    mesh = await VmMesh.up(LAB, 'mdi-');
    assert.equal(await mesh.applyAll(), 0, 'the same states again change nothing');
  });
  after(async () => {
    await (mesh?.down() ?? VmLab.attach({ name: LAB }).down());
  });

  test('lb-backend auto picks IPVS in the VMs and says why; meshd dataplane dump shows it', async () => {
    assert.ok(mesh !== undefined);
    for (const selection of mesh.selections)
      assert.deepEqual(selection, {
        backend: 'ipvs',
        reason: 'auto: the IPVS generic-netlink family resolved',
      });
    const meshd = await bundleProgram(join(ROOT, 'test/vm/guest/meshd-dataplane.ts'), 'meshd-dataplane');
    const out = await mesh.bash(
      3,
      `node ${meshd} dataplane dump --netns-prefix mdi- --state-dir /tmp/mdi-state`,
    );
    assert.match(out, /^lb backend: ipvs \(auto: the IPVS generic-netlink family resolved\)$/m);
    assert.match(out, /^lb-ipvs: desired 0, programmed [1-9]/m);
    // The published port is a fwmark service in the host namespace.
    assert.match(await mesh.bash(3, 'ipvsadm -Ln'), /FWM {2}\d+ rr/);
  });

  for (const scenario of MESH_SCENARIOS) {
    test(scenario.title, async () => {
      assert.ok(mesh !== undefined, 'the mesh did not come up');
      await scenario.run(mesh);
    });
  }
});
