import * as grpc from '@grpc/grpc-js';
import type { Command } from 'commander';
import { LogStream, type SubscribeLogsResponse } from '../api/gen/meshd/v1/logs.js';
import type { CliContext } from './context.js';
import { formatLogLine } from './log-format.js';
import { parseIntInRange } from './units.js';

interface LogsFlags {
  follow?: boolean;
  tail?: string;
  taskIds: boolean;
  raw?: boolean;
}

/**
 * `meshctl service logs SERVICE`: every task's output from every node, via
 * the managers' log broker. Standard output lines go to stdout, standard
 * error lines to stderr; warnings (a node that is down or did not answer)
 * are one line each on stderr, and the command still prints what it got.
 */
export function addServiceLogsCommand(service: Command, ctx: CliContext): void {
  service
    .command('logs')
    .description("print the output of a service's tasks, from every node")
    .argument('<service>', 'service ID, ID prefix or name')
    .option('-f, --follow', 'keep printing new lines until interrupted (Ctrl-C)')
    .option(
      '-n, --tail <lines>',
      'only the last LINES lines of each task stream ("all" for everything)',
      'all',
    )
    .option('--no-task-ids', 'leave task IDs out of the line prefix')
    .option('--raw', 'print the lines only, without the task@node prefix')
    .action(async (name: string, flags: LogsFlags) => {
      ctx.listCommand = 'meshctl service ls';
      const tail =
        flags.tail === undefined || flags.tail === 'all'
          ? undefined
          : parseIntInRange('tail', flags.tail, 0, 1_000_000);
      const format = { noTaskIds: !flags.taskIds, raw: flags.raw === true };
      const stream = ctx.clients.subscribeLogs({ service: name, follow: flags.follow === true, tail });
      let interrupted = false;
      const stopInterrupt = ctx.deps.onInterrupt?.(() => {
        interrupted = true;
        stream.cancel();
      });
      try {
        await new Promise<void>((resolve, reject) => {
          stream.on('data', (msg: SubscribeLogsResponse) => {
            for (const w of msg.warnings) ctx.deps.output.err(`warning: ${w}`);
            for (const m of msg.messages) {
              const line = formatLogLine(m, format);
              if (m.stream === LogStream.LOG_STREAM_STDERR) ctx.deps.output.err(line);
              else ctx.out(line);
            }
          });
          stream.on('end', () => resolve());
          stream.on('error', (err: grpc.ServiceError) => {
            if (interrupted && err.code === grpc.status.CANCELLED) resolve();
            else reject(err);
          });
        });
      } finally {
        stopInterrupt?.();
      }
    });
}
