import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { describe, it } from 'node:test';
import { selectLbBackend } from '../../../dataplane/lb/ipvs/select.js';
import { IPVS_UNAVAILABLE } from '../../../dataplane/netlink/ipvs/client.js';
import { buildNodeDataplane, selectNodeDataplane } from '../../../dataplane/reconciler/node.js';
import { MeshError } from '../../../src/common/errors.js';

const noIpvs = async () => {
  throw new MeshError(
    IPVS_UNAVAILABLE,
    'IPVS is not available: the generic-netlink family "IPVS" does not resolve',
  );
};
const withIpvs = async () => {};
const base = { hostPrefix: 'mdiu-', networkIds: () => [], healthListen: null, overlay: false } as const;

describe('node data plane: load-balancer backend selection', () => {
  it('auto builds the IPVS backend when the IPVS family resolves', async () => {
    const node = await selectNodeDataplane({ ...base, lbBackendChoice: 'auto', probeIpvs: withIpvs });
    try {
      assert.equal(node.lb.backendName, 'ipvs');
      assert.deepEqual(node.lbBackend, {
        backend: 'ipvs',
        reason: 'auto: the IPVS generic-netlink family resolved',
      });
    } finally {
      await node.close();
    }
  });

  it('auto falls back to nftables when IPVS is missing, and the reason says why', async () => {
    const node = await selectNodeDataplane({ ...base, lbBackendChoice: 'auto', probeIpvs: noIpvs });
    try {
      assert.equal(node.lb.backendName, 'nftables');
      assert.equal(node.lbBackend.backend, 'nftables');
      assert.match(node.lbBackend.reason, /^auto: IPVS is not available/);
    } finally {
      await node.close();
    }
  });

  it('nftables configured is used without probing the kernel', async () => {
    let probed = false;
    const node = await selectNodeDataplane({
      ...base,
      lbBackendChoice: 'nftables',
      probeIpvs: async () => {
        probed = true;
      },
    });
    await node.close();
    assert.equal(node.lb.backendName, 'nftables');
    assert.equal(probed, false);
    assert.equal(node.lbBackend.reason, 'configured: nftables');
  });

  it('ipvs configured on a kernel without IPVS refuses to start, naming lb-backend', async () => {
    await assert.rejects(
      selectNodeDataplane({ ...base, lbBackendChoice: 'ipvs', probeIpvs: noIpvs }),
      (err: unknown) =>
        err instanceof MeshError &&
        err.code === IPVS_UNAVAILABLE &&
        /lb-backend is configured as "ipvs"/.test(err.message),
    );
  });

  it('an unexpected probe failure is not mistaken for a missing IPVS', async () => {
    await assert.rejects(
      selectNodeDataplane({
        ...base,
        lbBackendChoice: 'auto',
        probeIpvs: async () => {
          throw new Error('EPERM opening netlink');
        },
      }),
      /EPERM/,
    );
  });

  it('without a selection the node keeps the nftables backend (existing callers)', async () => {
    const node = buildNodeDataplane(base);
    await node.close();
    assert.equal(node.lb.backendName, 'nftables');
    assert.equal(node.lbBackend.backend, 'nftables');
  });

  it('auto on this kernel agrees with the kernel: IPVS only where /proc/net/ip_vs exists', async () => {
    const selection = await selectLbBackend('auto');
    // Checked after the probe: it may have loaded the module.
    assert.equal(selection.backend, existsSync('/proc/net/ip_vs') ? 'ipvs' : 'nftables', selection.reason);
  });
});
