import type { Command } from 'commander';
import {
  Node,
  NodeAvailability,
  NodeRole,
  nodeAvailabilityToJSON,
  nodeRoleToJSON,
  nodeStateToJSON,
} from '../api/gen/meshd/v1/objects.js';
import { ValidationError } from '../common/errors.js';
import { type CliContext, collect } from './context.js';
import { enumWord, shortId, table } from './format.js';
import { parseKeyValue } from './units.js';

export function nodeRow(n: Node): string[] {
  return [
    shortId(n.meta?.id ?? ''),
    n.hostname,
    enumWord(nodeStateToJSON(n.state), 'NODE_STATE_'),
    enumWord(nodeAvailabilityToJSON(n.availability), 'NODE_AVAILABILITY_'),
    enumWord(nodeRoleToJSON(n.role), 'NODE_ROLE_'),
    n.addresses.join(','),
  ];
}

const AVAILABILITY: Record<string, NodeAvailability> = {
  active: NodeAvailability.NODE_AVAILABILITY_ACTIVE,
  pause: NodeAvailability.NODE_AVAILABILITY_PAUSE,
  drain: NodeAvailability.NODE_AVAILABILITY_DRAIN,
};

/** `meshctl node ls|inspect|update|promote|demote|rm`. */
export function addNodeCommands(program: Command, ctx: CliContext): void {
  const node = program.command('node').description('manage the nodes of the mesh');
  const nodeList = () => {
    ctx.listCommand = 'meshctl node ls';
  };

  node
    .command('ls')
    .description('list nodes')
    .action(async () => {
      const { nodes } = await ctx.clients.control.listNodes({ read: undefined });
      ctx.print(
        nodes.map((n) => Node.toJSON(n)),
        () => table(['ID', 'HOSTNAME', 'STATUS', 'AVAILABILITY', 'ROLE', 'ADDRESSES'], nodes.map(nodeRow)),
      );
    });

  node
    .command('inspect')
    .description('show nodes in full (JSON)')
    .argument('<node...>', 'node ID, ID prefix or hostname')
    .action(async (names: string[]) => {
      nodeList();
      const found = [];
      for (const name of names) {
        const { node: n } = await ctx.clients.control.getNode({ node: name, read: undefined });
        found.push(n === undefined ? null : Node.toJSON(n));
      }
      ctx.out(JSON.stringify(found, null, 2));
    });

  node
    .command('update')
    .description('change availability or labels of a node')
    .argument('<node>', 'node ID, ID prefix or hostname')
    .option('--availability <active|pause|drain>', 'whether the scheduler places tasks here')
    .option('--label-add <key=value>', 'add or change a label (repeatable)', collect)
    .option('--label-rm <key>', 'remove a label (repeatable)', collect)
    .action(
      async (name: string, opts: { availability?: string; labelAdd?: string[]; labelRm?: string[] }) => {
        let availability: NodeAvailability | undefined;
        if (opts.availability !== undefined) {
          availability = AVAILABILITY[opts.availability];
          if (availability === undefined)
            throw new ValidationError(
              'availability',
              `--availability must be one of active, pause, drain; got "${opts.availability}"`,
            );
        }
        const labelsAdd = Object.fromEntries((opts.labelAdd ?? []).map((l) => parseKeyValue('label-add', l)));
        if (
          availability === undefined &&
          Object.keys(labelsAdd).length === 0 &&
          (opts.labelRm ?? []).length === 0
        )
          throw new ValidationError(
            'node update',
            'nothing to change: give --availability, --label-add or --label-rm',
          );
        await updateNode(ctx, name, { availability, labelsAdd, labelsRemove: opts.labelRm ?? [] });
      },
    );

  for (const [verb, role] of [
    ['promote', NodeRole.NODE_ROLE_MANAGER],
    ['demote', NodeRole.NODE_ROLE_WORKER],
  ] as const)
    node
      .command(verb)
      .description(verb === 'promote' ? 'make workers managers' : 'make managers workers')
      .argument('<node...>', 'node ID, ID prefix or hostname')
      .action(async (names: string[]) => {
        for (const name of names) await updateNode(ctx, name, { role, labelsAdd: {}, labelsRemove: [] });
      });

  node
    .command('rm')
    .description('remove nodes from the mesh (they must be down unless --force)')
    .argument('<node...>', 'node ID, ID prefix or hostname')
    .option('-f, --force', 'remove even a node that is not down; its certificate is refused from now on')
    .action(async (names: string[], opts: { force?: boolean }) => {
      nodeList();
      for (const name of names) {
        const { node: n } = await ctx.clients.control.getNode({ node: name, read: undefined });
        await ctx.clients.control.deleteNode({ node: name, force: opts.force === true });
        // Then every manager refuses its certificate until it would have expired.
        const nodeId = n?.meta?.id;
        if (nodeId !== undefined && nodeId !== '') await ctx.clients.ca.removeNode({ nodeId });
        ctx.out(name);
      }
    });

  async function updateNode(
    c: CliContext,
    name: string,
    change: {
      availability?: NodeAvailability | undefined;
      role?: NodeRole;
      labelsAdd: Record<string, string>;
      labelsRemove: string[];
    },
  ): Promise<void> {
    nodeList();
    const { node: current } = await c.clients.control.getNode({ node: name, read: undefined });
    const { node: updated } = await c.clients.control.updateNode({
      node: current?.meta?.id ?? name,
      version: current?.meta?.version?.index ?? 0,
      availability: change.availability,
      role: change.role,
      labelsAdd: change.labelsAdd,
      labelsRemove: change.labelsRemove,
    });
    c.out(updated?.meta?.id ?? name);
  }
}
