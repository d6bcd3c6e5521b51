import type { Command } from 'commander';
import { type PortConfig, Protocol } from '../api/gen/meshd/v1/dataplane.js';
import {
  ServiceMode,
  ServiceObject,
  type ServiceSpec,
  Task,
  taskStateToJSON,
} from '../api/gen/meshd/v1/objects.js';
import { ValidationError } from '../common/errors.js';
import { type CliContext, collect } from './context.js';
import { age, enumWord, shortId, table } from './format.js';
import { addServiceLogsCommand } from './logs-command.js';
import { convergence, waitForService } from './progress.js';
import { MAX_REPLICAS, parsePublish, type ServiceFlags, serviceSpecFromFlags } from './service-flags.js';
import { parseIntInRange, parseKeyValue } from './units.js';

const POLL_MS = 500;
const WAIT_MS = 300_000;

function portsText(ports: PortConfig[]): string {
  return ports
    .map(
      (p) => `*:${p.publishedPort}->${p.targetPort}/${p.protocol === Protocol.PROTOCOL_UDP ? 'udp' : 'tcp'}`,
    )
    .join(',');
}

/** Flags `service create` takes, as commander names them (the ServiceFlags keys). */
function addSpecOptions(cmd: Command): Command {
  return cmd
    .requiredOption('--name <name>', 'service name (DNS label)')
    .option('--mode <replicated|global>', 'replicated (default) or one task per node')
    .option('--replicas <n>', 'number of tasks (replicated mode)')
    .option(
      '-p, --publish <spec>',
      'publish a port: 8080:80[/udp] or published=..,target=..,mode=.. (repeatable)',
      collect,
    )
    .option('--network <name>', 'attach to an overlay network (repeatable)', collect)
    .option('-e, --env <key=value>', 'environment variable (repeatable)', collect)
    .option('-l, --label <key=value>', 'service label (repeatable)', collect)
    .option('--constraint <expr>', 'placement constraint, e.g. node.role==worker (repeatable)', collect)
    .option('--placement-pref <pref>', 'spread=node.labels.KEY (repeatable)', collect)
    .option('--replicas-max-per-node <n>', 'at most this many tasks per node (0 = no limit)')
    .option('--endpoint-mode <vip|dnsrr>', 'virtual IP (default) or DNS round robin')
    .option('--reserve-cpu <cpus>', 'CPUs reserved per task, e.g. 0.5')
    .option('--reserve-memory <size>', 'memory reserved per task, e.g. 64M')
    .option('--restart-condition <none|on-failure|any>', 'when to restart a task')
    .option('--restart-delay <duration>', 'wait between restarts')
    .option('--restart-max-attempts <n>', 'give up after this many restarts (0 = never)')
    .option('--restart-window <duration>', 'window the attempts are counted in')
    .option('--health-cmd <command>', 'health check command, run with /bin/sh -c')
    .option('--health-interval <duration>', 'between health checks')
    .option('--health-timeout <duration>', 'a check taking longer fails')
    .option('--health-retries <n>', 'failures in a row before unhealthy')
    .option('--health-start-period <duration>', 'failures ignored while starting')
    .option('--update-parallelism <n>', 'tasks updated at once (0 = all)')
    .option('--update-delay <duration>', 'between update batches')
    .option('--update-failure-action <pause|continue|rollback>', 'when an update fails')
    .option('--update-monitor <duration>', 'watch each batch this long')
    .option('--update-max-failure-ratio <0..1>', 'failures tolerated during an update')
    .option('--update-order <stop-first|start-first>', 'replace order')
    .option('--rollback-parallelism <n>', 'tasks rolled back at once')
    .option('--rollback-delay <duration>', 'between rollback batches')
    .option('--rollback-failure-action <pause|continue>', 'when a rollback fails')
    .option('--rollback-monitor <duration>', 'watch each batch this long')
    .option('--rollback-max-failure-ratio <0..1>', 'failures tolerated during a rollback')
    .option('--rollback-order <stop-first|start-first>', 'replace order');
}

interface UpdateOpts {
  replicas?: string;
  envAdd?: string[];
  envRm?: string[];
  labelAdd?: string[];
  labelRm?: string[];
  publishAdd?: string[];
  publishRm?: string[];
  constraintAdd?: string[];
  constraintRm?: string[];
  networkAdd?: string[];
  networkRm?: string[];
  force?: boolean;
  detach?: boolean;
}

/** Pure: the spec `service update` asks for, from the current spec and the flags. */
export function updatedSpec(current: ServiceSpec, opts: UpdateOpts, command: string[]): ServiceSpec {
  const spec = structuredClone(current);
  const task = spec.task;
  if (task === undefined) throw new ValidationError('service', `service "${spec.name}" has no task template`);
  let changed = command.length > 0 || opts.force === true;
  if (command.length > 0) task.command = command;
  if (opts.replicas !== undefined) {
    if (spec.mode === ServiceMode.SERVICE_MODE_GLOBAL)
      throw new ValidationError(
        'replicas',
        `service "${spec.name}" is global: --replicas applies to replicated services`,
      );
    spec.replicas = parseIntInRange('replicas', opts.replicas, 0, MAX_REPLICAS);
    changed = true;
  }
  const envRm = new Set(opts.envRm ?? []);
  const envAdd = (opts.envAdd ?? []).map((e) => parseKeyValue('env-add', e));
  if (envRm.size > 0 || envAdd.length > 0) {
    const addKeys = new Set(envAdd.map(([k]) => k));
    task.env = [
      ...task.env.filter((e) => {
        const key = e.split('=')[0] ?? '';
        return !envRm.has(key) && !addKeys.has(key);
      }),
      ...envAdd.map(([k, v]) => `${k}=${v}`),
    ];
    changed = true;
  }
  for (const key of opts.labelRm ?? []) delete spec.labels[key];
  for (const l of opts.labelAdd ?? []) {
    const [k, v] = parseKeyValue('label-add', l);
    spec.labels[k] = v;
  }
  if ((opts.labelRm ?? []).length + (opts.labelAdd ?? []).length > 0) changed = true;
  if (opts.publishRm !== undefined || opts.publishAdd !== undefined) {
    const endpoint = spec.endpoint ?? { mode: 0, ports: [] };
    const rm = new Set(
      (opts.publishRm ?? []).map((t) => parseIntInRange('publish-rm', t.split('/')[0] ?? '', 1, 65535)),
    );
    endpoint.ports = [
      ...endpoint.ports.filter((p) => !rm.has(p.publishedPort)),
      ...(opts.publishAdd ?? []).map(parsePublish),
    ];
    spec.endpoint = endpoint;
    changed = true;
  }
  if (opts.constraintRm !== undefined || opts.constraintAdd !== undefined) {
    const placement = task.placement ?? { constraints: [], preferences: [], maxReplicasPerNode: 0 };
    const rm = new Set((opts.constraintRm ?? []).map((c) => c.replace(/\s+/g, '')));
    placement.constraints = [
      ...placement.constraints.filter((c) => !rm.has(c.replace(/\s+/g, ''))),
      ...(opts.constraintAdd ?? []),
    ];
    task.placement = placement;
    changed = true;
  }
  if (opts.networkRm !== undefined || opts.networkAdd !== undefined) {
    const rm = new Set(opts.networkRm ?? []);
    spec.networks = [...spec.networks.filter((n) => !rm.has(n)), ...(opts.networkAdd ?? [])];
    changed = true;
  }
  if (opts.force === true) task.forceUpdate += 1;
  if (!changed)
    throw new ValidationError(
      'service update',
      'nothing to change: give --replicas, --env-add, --publish-add, --force, ... or a new command after "--"',
    );
  return spec;
}

/** `meshctl service create|ls|ps|inspect|update|scale|rollback|rm|logs`. */
export function addServiceCommands(program: Command, ctx: CliContext): void {
  const service = program.command('service').description('manage services');
  const lookup = () => {
    ctx.listCommand = 'meshctl service ls';
  };
  const wait = async (id: string, detach: boolean | undefined) => {
    if (detach === true || ctx.format === 'json') return;
    await waitForService({
      control: ctx.clients.control,
      serviceId: id,
      out: (l) => ctx.out(l),
      sleep: ctx.deps.sleep,
      nowMs: ctx.deps.nowMs,
      pollMs: POLL_MS,
      timeoutMs: WAIT_MS,
    });
  };

  addSpecOptions(service.command('create').description('create a service; the command to run follows "--"'))
    .argument('[command...]', 'command and arguments of each task')
    .option('-d, --detach', 'return at once instead of waiting for the tasks to run')
    .action(async (command: string[], opts: ServiceFlags & { detach?: boolean }) => {
      const spec = serviceSpecFromFlags(opts, command);
      const { service: created } = await ctx.clients.control.createService({ spec });
      const id = created?.meta?.id ?? '';
      if (ctx.format === 'json')
        ctx.out(JSON.stringify(created === undefined ? null : ServiceObject.toJSON(created), null, 2));
      else ctx.out(id);
      await wait(id, opts.detach);
    });

  service
    .command('ls')
    .description('list services')
    .action(async () => {
      const { services } = await ctx.clients.control.listServices({ read: undefined });
      const { tasks } = await ctx.clients.control.listTasks({
        service: '',
        node: '',
        all: false,
        read: undefined,
      });
      ctx.print(
        services.map((s) => ServiceObject.toJSON(s)),
        () =>
          table(
            ['ID', 'NAME', 'MODE', 'REPLICAS', 'PORTS'],
            services.map((s) => {
              const c = convergence(s, tasks);
              return [
                shortId(s.meta?.id ?? ''),
                s.spec?.name ?? '',
                s.spec?.mode === ServiceMode.SERVICE_MODE_GLOBAL ? 'global' : 'replicated',
                `${c.running}/${c.wanted}`,
                portsText(s.ports.length > 0 ? s.ports : (s.spec?.endpoint?.ports ?? [])),
              ];
            }),
          ),
      );
    });

  service
    .command('ps')
    .description('list the tasks of a service')
    .argument('<service>', 'service ID, ID prefix or name')
    .option('-a, --all', 'include tasks no longer desired to run')
    .action(async (name: string, opts: { all?: boolean }) => {
      lookup();
      const { service: s } = await ctx.clients.control.getService({ service: name, read: undefined });
      const { tasks } = await ctx.clients.control.listTasks({
        service: s?.meta?.id ?? name,
        node: '',
        all: opts.all === true,
        read: undefined,
      });
      const { nodes } = await ctx.clients.control.listNodes({ read: undefined });
      const host = new Map(nodes.map((n) => [n.meta?.id ?? '', n.hostname]));
      const now = ctx.deps.nowMs();
      const sorted = [...tasks].sort((a, b) => Number(a.slot) - Number(b.slot));
      ctx.print(
        sorted.map((t) => Task.toJSON(t)),
        () =>
          table(
            ['ID', 'NAME', 'NODE', 'DESIRED STATE', 'CURRENT STATE', 'ERROR'],
            sorted.map((t) => [
              shortId(t.meta?.id ?? ''),
              `${s?.spec?.name ?? name}.${t.slot === 0 ? shortId(t.nodeId) : t.slot}`,
              host.get(t.nodeId) ?? shortId(t.nodeId),
              enumWord(taskStateToJSON(t.desiredState), 'TASK_STATE_'),
              `${enumWord(taskStateToJSON(t.status?.state ?? 0), 'TASK_STATE_')} ${age(Number(t.status?.timestamp?.unixMs ?? 0), now)}`.trim(),
              t.status?.err ?? '',
            ]),
          ),
      );
    });

  service
    .command('inspect')
    .description('show services in full (JSON)')
    .argument('<service...>', 'service ID, ID prefix or name')
    .action(async (names: string[]) => {
      lookup();
      const found = [];
      for (const name of names) {
        const { service: s } = await ctx.clients.control.getService({ service: name, read: undefined });
        found.push(s === undefined ? null : ServiceObject.toJSON(s));
      }
      ctx.out(JSON.stringify(found, null, 2));
    });

  service
    .command('update')
    .description('change a service; a new command may follow "--"')
    .argument('<service>', 'service ID, ID prefix or name')
    .argument('[command...]', 'new command and arguments')
    .option('--replicas <n>', 'number of tasks')
    .option('--env-add <key=value>', 'add or change an environment variable (repeatable)', collect)
    .option('--env-rm <key>', 'remove an environment variable (repeatable)', collect)
    .option('--label-add <key=value>', 'add or change a label (repeatable)', collect)
    .option('--label-rm <key>', 'remove a label (repeatable)', collect)
    .option('--publish-add <spec>', 'publish a port (repeatable)', collect)
    .option('--publish-rm <port>', 'stop publishing a port (repeatable)', collect)
    .option('--constraint-add <expr>', 'add a placement constraint (repeatable)', collect)
    .option('--constraint-rm <expr>', 'remove a placement constraint (repeatable)', collect)
    .option('--network-add <name>', 'attach a network (repeatable)', collect)
    .option('--network-rm <name>', 'detach a network (repeatable)', collect)
    .option('--force', 'replace every task even if nothing changed')
    .option('-d, --detach', 'return at once instead of waiting for the update')
    .action(async (name: string, command: string[], opts: UpdateOpts) => {
      lookup();
      const { service: s } = await ctx.clients.control.getService({ service: name, read: undefined });
      if (s?.spec === undefined) throw new ValidationError('service', `service "${name}" has no spec`);
      const spec = updatedSpec(s.spec, opts, command);
      const { service: updated } = await ctx.clients.control.updateService({
        service: s.meta?.id ?? name,
        version: s.meta?.version?.index ?? 0,
        spec,
      });
      ctx.out(updated?.meta?.id ?? name);
      await wait(updated?.meta?.id ?? name, opts.detach);
    });

  service
    .command('scale')
    .description('set replicas of services: NAME=N ...')
    .argument('<service=replicas...>', 'e.g. web=5 api=3')
    .option('-d, --detach', 'return at once instead of waiting')
    .action(async (pairs: string[], opts: { detach?: boolean }) => {
      const wanted = pairs.map((p) => {
        const [n, r] = parseKeyValue('scale', p);
        return { name: n, replicas: r };
      });
      lookup();
      for (const w of wanted) {
        const { service: s } = await ctx.clients.control.getService({ service: w.name, read: undefined });
        if (s?.spec === undefined) throw new ValidationError('service', `service "${w.name}" has no spec`);
        const spec = updatedSpec(s.spec, { replicas: w.replicas }, []);
        await ctx.clients.control.updateService({
          service: s.meta?.id ?? w.name,
          version: s.meta?.version?.index ?? 0,
          spec,
        });
        ctx.out(`${w.name} scaled to ${spec.replicas}`);
        await wait(s.meta?.id ?? w.name, opts.detach);
      }
    });

  service
    .command('rollback')
    .description('go back to the previous spec of a service')
    .argument('<service>', 'service ID, ID prefix or name')
    .option('-d, --detach', 'return at once instead of waiting')
    .action(async (name: string, opts: { detach?: boolean }) => {
      lookup();
      const { service: s } = await ctx.clients.control.getService({ service: name, read: undefined });
      const { service: rolled } = await ctx.clients.control.rollbackService({
        service: s?.meta?.id ?? name,
        version: s?.meta?.version?.index ?? 0,
      });
      ctx.out(rolled?.meta?.id ?? name);
      await wait(rolled?.meta?.id ?? name, opts.detach);
    });

  service
    .command('rm')
    .description('remove services')
    .argument('<service...>', 'service ID, ID prefix or name')
    .action(async (names: string[]) => {
      lookup();
      for (const name of names) {
        await ctx.clients.control.deleteService({ service: name });
        ctx.out(name);
      }
    });

  addServiceLogsCommand(service, ctx);
}
