import type { Command } from 'commander';
import { NodeRole } from '../api/gen/meshd/v1/objects.js';
import { MeshError, ValidationError } from '../common/errors.js';
import type { CliContext } from './context.js';

function roleOf(text: string): NodeRole {
  if (text === 'worker') return NodeRole.NODE_ROLE_WORKER;
  if (text === 'manager') return NodeRole.NODE_ROLE_MANAGER;
  throw new ValidationError('role', `join-token takes worker or manager, got "${text}"`);
}

/**
 * `meshctl init|join|leave` act on this host's daemon state, so they run
 * `meshd init|join|leave` with the same arguments; `join-token` asks the
 * running manager over the socket.
 */
export function addClusterCommands(program: Command, ctx: CliContext): void {
  const passThrough = (verb: 'init' | 'join' | 'leave', description: string) =>
    program
      .command(verb)
      .description(`${description} (runs "meshd ${verb}"; see "meshd ${verb} --help")`)
      .allowUnknownOption()
      .allowExcessArguments()
      .helpOption(false)
      .argument('[args...]', `arguments for "meshd ${verb}"`)
      .action(async (args: string[]) => {
        const code = await ctx.deps.runMeshd([verb, ...args]);
        if (code !== 0)
          throw new MeshError(
            'MESHD_FAILED',
            `"meshd ${verb}" exited with code ${code}; its message is above`,
          );
      });
  passThrough('init', 'make this host the first manager of a new mesh');
  passThrough('join', 'join this host to a mesh with a join token');
  passThrough('leave', 'take this host out of the mesh');

  program
    .command('join-token')
    .description('show (or --rotate) the token that joins a worker or a manager')
    .argument('<worker|manager>', 'which role the token grants')
    .option('--rotate', 'replace the token; the old one stops working')
    .option('-q, --quiet', 'print only the token')
    .action(async (role: string, opts: { rotate?: boolean; quiet?: boolean }) => {
      const r = roleOf(role);
      let token: string;
      if (opts.rotate === true) {
        token = (await ctx.clients.ca.rotateJoinToken({ role: r, expiresAt: undefined })).token;
      } else {
        const t = await ctx.clients.ca.getJoinTokens({});
        token = r === NodeRole.NODE_ROLE_MANAGER ? t.managerToken : t.workerToken;
      }
      if (opts.quiet === true || ctx.format === 'json') {
        ctx.out(ctx.format === 'json' ? JSON.stringify({ role, token }) : token);
        return;
      }
      const { nodes } = await ctx.clients.control.listNodes({ read: { localRead: true } });
      const managers = nodes
        .filter((n) => n.role === NodeRole.NODE_ROLE_MANAGER)
        .flatMap((n) => n.addresses.slice(0, 1));
      if (opts.rotate === true) ctx.out(`Rotated the ${role} join token.`);
      ctx.out(`To add a ${role} to this mesh, run on it:\n`);
      ctx.out(`    meshctl join --token ${token} ${managers[0] ?? 'MANAGER-ADDRESS:4242'}\n`);
    });
}
