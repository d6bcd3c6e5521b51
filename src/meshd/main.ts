import { Command } from 'commander';
import { errorMessage, MeshError } from '../common/errors.js';
import { addDaemonCommands } from './daemon-cli.js';
import { addDataplaneCommands } from './dataplane-cli.js';

/** meshd entry: init/join/run/leave (daemon) and the data-plane commands. */
export async function main(argv: string[]): Promise<number> {
  const program = new Command('meshd')
    .description('meshd: routing-mesh data plane and control plane')
    .exitOverride();
  addDaemonCommands(program);
  addDataplaneCommands(program);
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (typeof code === 'string' && code.startsWith('commander.')) {
      return code === 'commander.helpDisplayed' || code === 'commander.version' ? 0 : 2;
    }
    const prefix = err instanceof MeshError ? `${err.code}: ` : '';
    process.stderr.write(`meshd: ${prefix}${errorMessage(err)}\n`);
    return 1;
  }
}

process.exitCode = await main(process.argv);
