/**
 * Issue 6 acceptance, scenarios 1-7, on a 3-host namespace lab (see mesh-lab.ts)
 * with the nftables LB. The scenarios are test/lib/mesh-scenarios.ts, which the
 * VM lab runs too with IPVS (test/vm/mesh-ipvs.test.ts).
 * Root only; namespaces use the prefix `mdla`.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { execa } from 'execa';
import { MESH_SCENARIOS, type MeshDriver } from '../../lib/mesh-scenarios.js';
import { MeshLab } from './mesh-lab.js';

let mesh: MeshLab;

/** The shared scenarios' view of the namespace lab: host `i` is lab host `i`, its reconciler in-process. */
function driver(lab: MeshLab): MeshDriver {
  const reconciler = (host: number) => lab.reconcilers[host - 1]!;
  return {
    lbBackend: 'nftables',
    address: (host) => lab.host(host).address,
    sandboxNetns: (taskId) => lab.sandboxNetns(taskId),
    networkNetns: (host, networkId) => lab.networkNetns(lab.host(host), networkId),
    async bash(host, script, timeoutMs = 60_000) {
      const result = await execa('ip', ['netns', 'exec', lab.host(host).netns, 'bash', '-c', script], {
        reject: false,
        timeout: timeoutMs,
      });
      if (result.exitCode !== 0)
        throw new Error(`on h${host} (exit ${result.exitCode}): ${script}\n${String(result.stderr).trim()}`);
      return String(result.stdout);
    },
    get web() {
      return lab.endpoints.web;
    },
    applyAll: () => lab.applyAll(),
    stateFor: (host) => lab.stateFor(host),
    apply: (host, state) => reconciler(host).apply(state),
    resync: (host) => reconciler(host).resync(),
    view: (host) => reconciler(host).view(),
    status: async (host) => reconciler(host).status(),
    metrics: (host) => reconciler(host).registry.metrics(),
  };
}

describe('issue 6 acceptance (3-host namespace lab, nftables LB)', { timeout: 240_000 }, () => {
  before(async () => {
    mesh = await MeshLab.up('mdla');
    // MeshLab.up applied every host's state already: the same states again change nothing.
    assert.equal(await mesh.applyAll(), 0);
  });
  after(async () => {
    await mesh?.down();
  });

  for (const scenario of MESH_SCENARIOS) test(scenario.title, () => scenario.run(driver(mesh)));
});
