/**
 * Operator tools for a manager's Raft data directory (run with the manager
 * stopped):
 *
 *   npx tsx controlplane/raft/storage/cli.ts repair --wal-dir DIR --truncate-at FILE:OFFSET
 *   npx tsx controlplane/raft/storage/cli.ts force-new-cluster --data-dir DIR --node-id ID
 */
import { errorMessage } from '../../../src/common/errors.js';
import { forceNewCluster } from './disk-storage.js';
import { truncateWalAt } from './wal.js';

function flag(args: string[], name: string): string {
  const at = args.indexOf(name);
  const value = at < 0 ? undefined : args[at + 1];
  if (value === undefined || value.startsWith('--')) throw new Error(`missing required flag ${name} VALUE`);
  return value;
}

async function main(args: string[]): Promise<void> {
  const verb = args[0];
  if (verb === 'repair') {
    const dir = flag(args, '--wal-dir');
    const spec = flag(args, '--truncate-at');
    const m = /^([^:]+):(\d+)$/.exec(spec);
    if (m === null)
      throw new Error(
        `--truncate-at must be FILE:OFFSET (e.g. 0000000000000001-0000000000000001.wal:4096), got "${spec}"`,
      );
    truncateWalAt(dir, m[1]!, Number(m[2]));
    process.stdout.write(`cut ${m[1]} at byte ${m[2]} and removed later segments in ${dir}\n`);
    return;
  }
  if (verb === 'force-new-cluster') {
    const conf = await forceNewCluster(flag(args, '--data-dir'), flag(args, '--node-id'));
    process.stdout.write(`data now describes a single-member cluster: ${JSON.stringify(conf)}\n`);
    return;
  }
  throw new Error(`unknown command "${verb ?? ''}"; accepted: repair, force-new-cluster`);
}

main(process.argv.slice(2)).catch((err: unknown) => {
  process.stderr.write(`error: ${errorMessage(err)}\n`);
  process.exit(1);
});
