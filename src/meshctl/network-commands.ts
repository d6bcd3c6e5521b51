import type { Command } from 'commander';
import { NetworkObject } from '../api/gen/meshd/v1/objects.js';
import { type CliContext, collect } from './context.js';
import { shortId, table } from './format.js';
import { parseKeyValue } from './units.js';

/** `meshctl network create|ls|inspect|rm`. */
export function addNetworkCommands(program: Command, ctx: CliContext): void {
  const network = program.command('network').description('manage overlay networks');
  const lookup = () => {
    ctx.listCommand = 'meshctl network ls';
  };

  network
    .command('create')
    .description('create an overlay network')
    .argument('<name>', 'network name')
    .option('--subnet <cidr>', 'subnet; allocated from the cluster pools when absent', '')
    .option('-o, --opt <key=value>', 'driver option (repeatable)', collect)
    .option('-l, --label <key=value>', 'label (repeatable)', collect)
    .action(async (name: string, opts: { subnet: string; opt?: string[]; label?: string[] }) => {
      const { network: n } = await ctx.clients.control.createNetwork({
        name,
        subnet: opts.subnet,
        options: Object.fromEntries((opts.opt ?? []).map((o) => parseKeyValue('opt', o))),
        labels: Object.fromEntries((opts.label ?? []).map((l) => parseKeyValue('label', l))),
      });
      if (ctx.format === 'json')
        ctx.out(JSON.stringify(n === undefined ? null : NetworkObject.toJSON(n), null, 2));
      else ctx.out(n?.meta?.id ?? name);
    });

  network
    .command('ls')
    .description('list networks')
    .action(async () => {
      const { networks } = await ctx.clients.control.listNetworks({ read: undefined });
      ctx.print(
        networks.map((n) => NetworkObject.toJSON(n)),
        () =>
          table(
            ['ID', 'NAME', 'DRIVER', 'SUBNET', 'VNI', 'INGRESS'],
            networks.map((n) => [
              shortId(n.meta?.id ?? ''),
              n.name,
              n.driver || 'overlay',
              n.subnet || n.allocationMessage,
              n.vni === 0 ? '' : String(n.vni),
              n.ingress ? 'yes' : '',
            ]),
          ),
      );
    });

  network
    .command('inspect')
    .description('show networks in full (JSON)')
    .argument('<network...>', 'network ID, ID prefix or name')
    .action(async (names: string[]) => {
      lookup();
      const found = [];
      for (const name of names) {
        const { network: n } = await ctx.clients.control.getNetwork({ network: name, read: undefined });
        found.push(n === undefined ? null : NetworkObject.toJSON(n));
      }
      ctx.out(JSON.stringify(found, null, 2));
    });

  network
    .command('rm')
    .description('remove networks (no service may use them)')
    .argument('<network...>', 'network ID, ID prefix or name')
    .action(async (names: string[]) => {
      lookup();
      for (const name of names) {
        await ctx.clients.control.deleteNetwork({ network: name });
        ctx.out(name);
      }
    });
}
