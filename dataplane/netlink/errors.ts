import { getSystemErrorMap } from 'node:util';
import { MeshError } from '../../src/common/errors.js';

/**
 * A failed rtnetlink request: names the operation and its object, and carries
 * the kernel's errno name and text (`EEXIST: file already exists`).
 */
export class NetlinkError extends MeshError {
  readonly errno: string | undefined;

  constructor(operation: string, detail: string, errno?: string, cause?: unknown) {
    super('NETLINK', `netlink ${operation}: ${detail}`, { cause, details: { operation, errno } });
    this.name = 'NetlinkError';
    this.errno = errno;
  }
}

const errnoText = new Map<string, string>();
for (const [, [name, text]] of getSystemErrorMap()) errnoText.set(name, text);

/** The errno name inside the netlink package's "Request rejected: EEXIST" errors. */
export function errnoOf(err: unknown): string | undefined {
  const message = err instanceof Error ? err.message : String(err);
  const m = /Request rejected: ([A-Z0-9]+)/.exec(message);
  if (m?.[1] !== undefined) return m[1];
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' && /^E[A-Z0-9]+$/.test(code) ? code : undefined;
}

export async function wrapNetlink<T>(operation: string, run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (err) {
    if (err instanceof NetlinkError) throw err;
    const errno = errnoOf(err);
    const detail = errno === undefined ? String(err) : `${errno}: ${errnoText.get(errno) ?? 'unknown error'}`;
    throw new NetlinkError(operation, detail, errno, err);
  }
}
