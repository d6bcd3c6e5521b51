import { Command } from 'commander';
import { addCaCommands } from './ca-commands.js';
import { DEFAULT_SOCKET } from './client.js';
import { addClusterCommands } from './cluster-commands.js';
import { CliContext, type CliDeps } from './context.js';
import { addDiagCommand } from './diag.js';
import { describeError } from './format.js';
import { addNetworkCommands } from './network-commands.js';
import { addNodeCommands } from './node-commands.js';
import { addServiceCommands } from './service-commands.js';

/**
 * Runs one meshctl invocation. `argv` excludes the node and script paths.
 * Exit codes: 0 success, 1 the command failed (one line on stderr saying
 * what to do), 2 usage error (commander's message).
 */
export async function runMeshctl(
  argv: string[],
  deps: CliDeps,
  env: NodeJS.ProcessEnv = {},
): Promise<number> {
  const program = new Command('meshctl')
    .description('meshctl: control a meshd mesh through the local meshd socket')
    .option('--socket <path>', 'meshd Unix socket', env['MESHD_SOCKET'] ?? DEFAULT_SOCKET)
    .option('--format <table|json>', 'output format', 'table')
    .option('--timeout <seconds>', 'bound on each call to meshd', '20')
    .exitOverride()
    .configureOutput({
      writeOut: (s) => deps.output.out(s.trimEnd()),
      writeErr: (s) => deps.output.err(s.trimEnd()),
    })
    .showSuggestionAfterError(true);
  const ctx = new CliContext(deps, program);
  addClusterCommands(program, ctx);
  addCaCommands(program, ctx);
  addNodeCommands(program, ctx);
  addServiceCommands(program, ctx);
  addNetworkCommands(program, ctx);
  addDiagCommand(program, ctx);
  for (const cmd of program.commands) {
    cmd.exitOverride();
    for (const sub of cmd.commands) sub.exitOverride();
  }
  try {
    await program.parseAsync(argv, { from: 'user' });
    return 0;
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (typeof code === 'string' && code.startsWith('commander.'))
      return code === 'commander.helpDisplayed' || code === 'commander.version' || code === 'commander.help'
        ? 0
        : 2;
    deps.output.err(
      `meshctl: ${describeError(err, { socketPath: ctx.socketPath, listCommand: ctx.listCommand })}`,
    );
    return 1;
  } finally {
    ctx.close();
  }
}
