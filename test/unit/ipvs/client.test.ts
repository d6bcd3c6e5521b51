import assert from 'node:assert/strict';
import { it } from 'node:test';
import { IPVS_UNAVAILABLE, IpvsClient } from '../../../dataplane/netlink/ipvs/client.js';
import { MeshError } from '../../../src/common/errors.js';

// The host kernel of the unit tier has no IPVS (LAB.md); the VM tier covers a kernel that has it.
it('when the IPVS generic-netlink family does not resolve, open() fails with IPVS_UNAVAILABLE naming the fix', async (t) => {
  let client: IpvsClient | undefined;
  try {
    client = await IpvsClient.open({ modprobe: false });
  } catch (err) {
    assert.ok(err instanceof MeshError);
    assert.equal(err.code, IPVS_UNAVAILABLE);
    assert.match(err.message, /family "IPVS" does not resolve/);
    assert.match(err.message, /nftables/);
    return;
  }
  client.close();
  t.skip('this kernel has IPVS: the unavailable path cannot be observed here');
});
