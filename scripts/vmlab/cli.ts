// The VM lab from a shell:
//   node --import tsx scripts/vmlab/cli.ts up 3
//   node --import tsx scripts/vmlab/cli.ts exec vm1 'ipvsadm -Ln'
//   node --import tsx scripts/vmlab/cli.ts down
// `--lab NAME` picks another lab (default mdvlab). Root is required.
import { Command } from 'commander';
import { errorMessage } from '../../src/common/errors.js';
import { VmLab } from './lab.js';

const program = new Command('vmlab').option('--lab <name>', 'lab name (namespace and link prefix)', 'mdvlab');

program
  .command('up')
  .argument('<count>', 'number of VMs (1..5)')
  .description('boot COUNT VMs (tears down a previous run of the same lab first)')
  .action(async (count: string) => {
    const started = Date.now();
    const lab = await VmLab.up(Number(count), { name: program.opts<{ lab: string }>().lab });
    for (const vm of lab.vms) console.log(`${vm.name} ${vm.address}`);
    console.log(`up in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  });

program
  .command('exec')
  .argument('<vm>', 'vm1..vmN')
  .argument('<command...>', 'bash command line run in the guest, cwd = the checkout')
  .option('--timeout <ms>', 'give up after this many milliseconds', '60000')
  .description('run a command in a VM; prints its stdout/stderr, exits with its exit code')
  .action(async (vm: string, command: string[], opts: { timeout: string }) => {
    const lab = VmLab.attach({ name: program.opts<{ lab: string }>().lab });
    const result = await lab.exec(vm, command.join(' '), { timeoutMs: Number(opts.timeout) });
    process.stdout.write(result.stdout);
    process.stderr.write(result.stderr);
    process.exitCode = result.exitCode;
  });

program
  .command('down')
  .description('power off every VM, kill leftovers by pidfile, delete the lab namespace')
  .action(async () => {
    await VmLab.attach({ name: program.opts<{ lab: string }>().lab }).down();
  });

program.parseAsync().catch((err: unknown) => {
  console.error(errorMessage(err));
  process.exitCode = 1;
});
