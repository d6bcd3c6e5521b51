import { MeshError } from '../../src/common/errors.js';

/**
 * Runs one rtnetlink operation by name inside the current process's
 * namespace; the namespace helper calls this for requests from the daemon.
 * Filled in by the netlink layer (rtnl.ts); only names listed there run.
 */
export async function runRtnlMethod(method: string, _args: unknown[]): Promise<unknown> {
  throw new MeshError('INVALID_ARGUMENT', `rtnl method ${JSON.stringify(method)} is not available`);
}
