/**
 * The IPVS helper: started inside one network namespace (`ip netns exec NS
 * node ... helper-main`) because a netlink socket acts in the namespace it was
 * opened in and Node cannot setns. Serves IpvsOps calls from its parent over
 * the IPC channel and exits when the channel closes (a dead daemon leaves no
 * helper behind).
 */
import { errorMessage } from '../../../src/common/errors.js';
import { IpvsClient } from '../../netlink/ipvs/client.js';
import { Rtnl } from '../../netlink/rtnl.js';
import { IPVS_HELPER_METHODS, type IpvsHelperReply, type IpvsHelperRequest } from './helper-protocol.js';

let client: Promise<IpvsClient> | undefined;

async function handle(req: IpvsHelperRequest): Promise<IpvsHelperReply> {
  try {
    if (!(IPVS_HELPER_METHODS as readonly string[]).includes(req.method)) {
      throw new Error(`unknown IPVS method ${JSON.stringify(req.method)}`);
    }
    if (req.method === 'addresses') {
      const rtnl = Rtnl.open();
      try {
        return { id: req.id, ok: true, result: await rtnl.addrs() };
      } finally {
        rtnl.close();
      }
    }
    client ??= IpvsClient.open();
    const c = await client;
    const fn = c[req.method] as (...args: unknown[]) => Promise<unknown>;
    const result = await fn.apply(c, req.args);
    return { id: req.id, ok: true, result: result ?? null };
  } catch (err) {
    const code = typeof err === 'object' && err !== null && 'code' in err ? String(err.code) : 'IPVS_HELPER';
    // A failed open is retried by the next request.
    if (code === 'IPVS_UNAVAILABLE') client = undefined;
    return { id: req.id, ok: false, code, message: errorMessage(err) };
  }
}

process.on('message', (msg: IpvsHelperRequest) => {
  void handle(msg).then((reply) => process.send?.(reply));
});
process.on('disconnect', () => process.exit(0));
process.send?.({ ready: true, pid: process.pid });
