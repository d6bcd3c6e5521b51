/**
 * CLI for the network-namespace lab:
 *   node --import tsx scripts/lab/netns-lab.ts up --prefix P --hosts N [--json]
 *   node --import tsx scripts/lab/netns-lab.ts down --prefix P
 */
import { Command, InvalidArgumentError } from 'commander';
import { errorMessage } from '../../src/common/errors.js';
import { labDown, labUp } from './lab.js';

function parseHosts(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n)) throw new InvalidArgumentError(`--hosts must be an integer, got "${value}"`);
  return n;
}

const program = new Command('netns-lab')
  .description('N "host" namespaces on an underlay bridge')
  .exitOverride();

program
  .command('up')
  .requiredOption('--prefix <prefix>', 'namespace-name prefix, e.g. mdk')
  .requiredOption('--hosts <n>', 'number of hosts', parseHosts)
  .option('--underlay-net <a.b.c>', 'first three octets of the underlay /24', '10.99.0')
  .option('--json', 'print the lab description as JSON')
  .action(async (o: { prefix: string; hosts: number; underlayNet: string; json?: boolean }) => {
    const lab = await labUp({ prefix: o.prefix, hosts: o.hosts, underlayNet: o.underlayNet });
    if (o.json) {
      process.stdout.write(`${JSON.stringify(lab, null, 2)}\n`);
      return;
    }
    for (const h of lab.hosts)
      process.stdout.write(`${h.name}\t${h.netns}\t${h.address}/${h.prefixLength}\n`);
  });

program
  .command('down')
  .requiredOption('--prefix <prefix>', 'namespace-name prefix used with up')
  .option('--hosts <n>', 'ignored: every host namespace of the prefix is removed', parseHosts)
  .action(async (o: { prefix: string }) => {
    const removed = await labDown(o.prefix);
    process.stdout.write(
      `removed ${removed.length} namespaces${removed.length ? `: ${removed.join(' ')}` : ''}\n`,
    );
  });

try {
  await program.parseAsync(process.argv);
} catch (err) {
  const code = (err as { code?: string }).code;
  if (code === 'commander.helpDisplayed' || code === 'commander.version') process.exit(0);
  if (typeof code === 'string' && code.startsWith('commander.')) process.exit(2);
  process.stderr.write(`netns-lab: ${errorMessage(err)}\n`);
  process.exit(1);
}
