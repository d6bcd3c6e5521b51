import { MeshError } from '../../src/common/errors.js';
import type { NetnsHelper } from '../netns/helper.js';
import { RTNL_METHODS, Rtnl, type RtnlOps } from './rtnl.js';

let local: Rtnl | undefined;

/**
 * Runs one rtnetlink operation by name inside the current process's
 * namespace; the namespace helper calls this for requests from the daemon.
 * Only the methods of RtnlOps run.
 */
export async function runRtnlMethod(method: string, args: unknown[]): Promise<unknown> {
  if (!(RTNL_METHODS as readonly string[]).includes(method)) {
    throw new MeshError(
      'INVALID_ARGUMENT',
      `rtnl method ${JSON.stringify(method)} is not one of ${RTNL_METHODS.join(', ')}`,
    );
  }
  local ??= Rtnl.open();
  const fn = local[method as keyof RtnlOps] as (...a: unknown[]) => Promise<unknown>;
  return await fn.apply(local, args);
}

/** RtnlOps that run inside the helper's namespace. */
export function helperRtnl(helper: NetnsHelper): RtnlOps {
  const call =
    (method: keyof RtnlOps) =>
    (...args: unknown[]) =>
      helper.rtnl(method, args);
  const ops: Record<string, unknown> = {};
  for (const m of RTNL_METHODS) ops[m] = call(m);
  return ops as unknown as RtnlOps;
}
