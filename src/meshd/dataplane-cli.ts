import type { Command } from 'commander';
import { parseLbBackendChoice } from '../../dataplane/lb/ipvs/select.js';
import { logLbBackend, type NodeDataplane, selectNodeDataplane } from '../../dataplane/reconciler/node.js';
import type { ProgrammerView } from '../../dataplane/reconciler/reconciler.js';
import type { DesiredState } from '../api/gen/meshd/v1/dataplane.js';
import { systemClock } from '../common/clock.js';
import { errorMessage } from '../common/errors.js';
import { subsystemLogger } from '../common/logger.js';
import { readAppliedState, readDesiredStateFile, writeAppliedState } from './state-file.js';

interface CommonOptions {
  netnsPrefix: string;
  stateDir: string;
  lbBackend: string;
}

const DEFAULT_STATE_DIR = '/var/lib/meshd';
const log = subsystemLogger('meshd');

function nodeDataplane(
  options: CommonOptions,
  state: () => DesiredState | null,
  serveHealth: boolean,
): Promise<NodeDataplane> {
  return selectNodeDataplane({
    hostPrefix: options.netnsPrefix,
    networkIds: () => state()?.networks.map((n) => n.id) ?? [],
    healthListen: serveHealth ? undefined : null,
    lbBackendChoice: parseLbBackendChoice(options.lbBackend, '--lb-backend'),
  });
}

function parseInterval(text: string): number {
  const ms = Number(text);
  if (!Number.isInteger(ms) || ms < 100 || ms > 3_600_000)
    throw new Error(`--resync-interval-ms must be an integer 100..3600000, got "${text}"`);
  return ms;
}

/** Which LB backend is active and why, as `meshd dataplane dump` shows it. */
export interface LbBackendView {
  backend: string;
  reason: string;
}

export function printView(
  views: ProgrammerView[],
  version: number | null,
  json: boolean,
  lbBackend?: LbBackendView,
): void {
  if (json) {
    process.stdout.write(
      `${JSON.stringify({ appliedVersion: version, lbBackend, programmers: views }, null, 2)}\n`,
    );
    return;
  }
  process.stdout.write(`applied version: ${version ?? 'none recorded'}\n`);
  if (lbBackend !== undefined)
    process.stdout.write(`lb backend: ${lbBackend.backend} (${lbBackend.reason})\n`);
  for (const v of views) {
    const count = (model: unknown) => {
      const m = model as { services?: unknown[] } | unknown[];
      return Array.isArray(m) ? m.length : (m.services?.length ?? 0);
    };
    process.stdout.write(
      `${v.name}: desired ${count(v.desired)}, programmed ${count(v.programmed)}, drift ${v.pending.length}\n`,
    );
    for (const p of v.pending) process.stdout.write(`  pending: ${JSON.stringify(p)}\n`);
  }
}

/** `meshd dataplane apply|dump|run`: drive and inspect the data plane without a control plane. */
export function addDataplaneCommands(program: Command): void {
  const dataplane = program.command('dataplane').description("program and inspect this node's data plane");
  const common = (cmd: Command) =>
    cmd
      .option('--netns-prefix <prefix>', "prefix of this host's namespaces (lab hosts share a kernel)", 'md-')
      .option('--state-dir <dir>', 'where the last applied state is recorded', DEFAULT_STATE_DIR)
      .option(
        '--lb-backend <backend>',
        'auto (IPVS when the kernel has it, else nftables), ipvs or nftables',
        'auto',
      );

  common(dataplane.command('apply'))
    .description('validate a desired state (JSON) and make the kernel match it')
    .requiredOption('--state <file>', 'DesiredState in its JSON form')
    .action(async (options: CommonOptions & { state: string }) => {
      const state = readDesiredStateFile(options.state);
      const node = await nodeDataplane(options, () => state, false);
      const result = await node.reconciler.apply(state).finally(() => node.close());
      writeAppliedState(options.stateDir, state);
      process.stdout.write(
        `applied version ${result.version}: ${result.changes} changes, ${result.kernelOperations} kernel operations in ${result.durationMs.toFixed(0)} ms\n`,
      );
    });

  common(dataplane.command('dump'))
    .description('desired (last applied) vs programmed state, with drift')
    .option('--json', 'machine-readable output')
    .action(async (options: CommonOptions & { json?: boolean }) => {
      const state = readAppliedState(options.stateDir);
      const node = await nodeDataplane(options, () => state, false);
      try {
        await printDump(node, state, options.json === true);
      } finally {
        await node.close();
      }
    });

  async function printDump(node: NodeDataplane, state: DesiredState | null, json: boolean): Promise<void> {
    if (state === null) {
      const programmed = await node.lb.dump();
      const services = [...programmed.services.values()];
      printView(
        [
          {
            name: `lb-${node.lb.backendName}`,
            desired: { services: [] },
            programmed: { services },
            pending: [],
          },
        ],
        null,
        json,
        node.lbBackend,
      );
      return;
    }
    printView(await node.reconciler.view(state), state.version, json, node.lbBackend);
  }

  common(dataplane.command('run'))
    .description('apply, serve health ports, resync periodically; SIGHUP re-reads --state, SIGTERM stops')
    .requiredOption('--state <file>', 'DesiredState in its JSON form')
    .option('--resync-interval-ms <ms>', 'period of the drift-repairing resync', '30000')
    .action(async (options: CommonOptions & { state: string; resyncIntervalMs: string }) => {
      const intervalMs = parseInterval(options.resyncIntervalMs);
      let state = readDesiredStateFile(options.state);
      // Signals are taken from the start: the health port answers as soon as
      // it is bound, and node's default for SIGHUP is to exit. Applies run one
      // at a time, in the order they were asked for.
      const stopped = new Promise<void>((resolve) => {
        process.once('SIGTERM', resolve);
        process.once('SIGINT', resolve);
      });
      let node: NodeDataplane | undefined;
      let queue: Promise<unknown> = nodeDataplane(options, () => state, true).then(async (made) => {
        node = made;
        logLbBackend(made.lbBackend);
        await made.reconciler.apply(state);
        writeAppliedState(options.stateDir, state);
      });
      process.on('SIGHUP', () => {
        queue = queue.then(async () => {
          try {
            const next = readDesiredStateFile(options.state);
            await node!.reconciler.apply(next);
            state = next;
            writeAppliedState(options.stateDir, next);
            log.info({ version: next.version }, 'reloaded desired state');
          } catch (err) {
            log.error({ err: errorMessage(err) }, 'reload rejected; keeping the previous state');
          }
        });
      });
      await queue;
      const stop = node!.reconciler.startPeriodicResync(systemClock, intervalMs);
      await stopped;
      await queue;
      stop();
      await node!.close();
    });
}
