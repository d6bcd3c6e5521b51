import { execa } from 'execa';
import { MeshError } from '../../../src/common/errors.js';

/** Runs the `nft` tool in a network namespace (null = the caller's own). */
export interface NftExecutor {
  /** Applies `script` as one atomic `nft -f` transaction. */
  run(namespace: string | null, script: string): Promise<void>;
  /** `nft -j list table ip NAME`; null when the table does not exist. */
  listTableJson(namespace: string | null, table: string): Promise<unknown | null>;
  /** Deletes UDP conntrack entries whose reply comes from `address:port`; returns how many. */
  flushUdpConntrack(namespace: string | null, address: string, port: number): Promise<number>;
}

const NFT_TIMEOUT_MS = 120_000;
const MAX_BUFFER_BYTES = 1024 * 1024 * 1024;

function command(namespace: string | null, args: string[], tool = 'nft'): [string, string[]] {
  return namespace === null ? [tool, args] : ['ip', ['netns', 'exec', namespace, tool, ...args]];
}

/** The real executor: spawns `nft` (through `ip netns exec` for a namespace). */
export const nftToolExecutor: NftExecutor = {
  async run(namespace, script) {
    const [file, args] = command(namespace, ['-f', '-']);
    const result = await execa(file, args, {
      input: script,
      reject: false,
      timeout: NFT_TIMEOUT_MS,
      maxBuffer: MAX_BUFFER_BYTES,
    });
    if (result.exitCode !== 0)
      throw new MeshError(
        'NFT_FAILED',
        `nft -f in namespace ${namespace ?? '(current)'} failed (exit ${result.exitCode}): ${String(result.stderr).slice(0, 2000)}`,
        { details: { namespace } },
      );
  },
  async flushUdpConntrack(namespace, address, port) {
    const [file, args] = command(
      namespace,
      ['-D', '-p', 'udp', '--reply-src', address, '--reply-port-src', String(port)],
      'conntrack',
    );
    const result = await execa(file, args, { reject: false, timeout: NFT_TIMEOUT_MS });
    const deleted = /(\d+) flow entries have been deleted/.exec(String(result.stderr));
    // conntrack exits 1 when nothing matched; anything else without the summary line is a failure.
    if (deleted === null)
      throw new MeshError(
        'CONNTRACK_FAILED',
        `conntrack -D for ${address}:${port} in namespace ${namespace ?? '(current)'} failed: ${String(result.stderr).slice(0, 500)}`,
      );
    return Number(deleted[1]);
  },
  async listTableJson(namespace, table) {
    const [file, args] = command(namespace, ['-j', 'list', 'table', 'ip', table]);
    const result = await execa(file, args, {
      reject: false,
      timeout: NFT_TIMEOUT_MS,
      maxBuffer: MAX_BUFFER_BYTES,
    });
    if (result.exitCode !== 0) {
      if (/No such file or directory/.test(String(result.stderr))) return null;
      throw new MeshError(
        'NFT_FAILED',
        `nft list table ip ${table} in namespace ${namespace ?? '(current)'} failed: ${String(result.stderr).slice(0, 2000)}`,
      );
    }
    try {
      return JSON.parse(String(result.stdout)) as unknown;
    } catch (cause) {
      throw new MeshError(
        'NFT_FAILED',
        `nft -j output in namespace ${namespace ?? '(current)'} is not JSON`,
        {
          cause,
        },
      );
    }
  },
};
