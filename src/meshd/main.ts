import { Command } from 'commander';
import { errorMessage, MeshError } from '../common/errors.js';
import { addDataplaneCommands } from './dataplane-cli.js';

/** meshd entry. Today: the data-plane commands; the daemon roles arrive with the control plane. */
export async function main(argv: string[]): Promise<number> {
  const program = new Command('meshd')
    .description('meshd: routing-mesh data plane and control plane')
    .exitOverride();
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
