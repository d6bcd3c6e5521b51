import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import type { Command } from 'commander';
import { MeshError } from '../common/errors.js';
import { CONFIG_KEYS, type DaemonConfig, DEFAULTS, resolveConfig } from './config.js';
import { initNode, joinNode, leaveNode, runNode } from './daemon.js';
import { type ExternalCaFlags, externalCaFromFlags } from './external-ca.js';

type Flags = Record<string, string | undefined> & { config?: string };

function withConfigFlags(cmd: Command): Command {
  cmd.option(
    '--config <file>',
    'YAML config file (keys as these flags, e.g. "listen-address: 10.0.0.1:4242")',
  );
  for (const key of Object.keys(CONFIG_KEYS)) {
    const def = (DEFAULTS as Record<string, string>)[key];
    cmd.option(`--${key} <value>`, def === undefined ? '' : `default ${def}`);
  }
  return cmd;
}

function configFrom(flags: Flags): DaemonConfig {
  const byKey: Record<string, string | undefined> = {};
  for (const key of Object.keys(CONFIG_KEYS)) byKey[key] = flags[camel(key)];
  let fileText: string | undefined;
  if (flags.config !== undefined) {
    try {
      fileText = readFileSync(flags.config, 'utf8');
    } catch (err) {
      throw new MeshError('CONFIG', `--config ${flags.config}: ${(err as Error).message}`);
    }
  }
  return resolveConfig({ fileText, filePath: flags.config ?? 'config', flags: byKey, hostname: hostname() });
}

function camel(key: string): string {
  return key.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
}

/** `meshd init|join|run|leave`: the daemon's lifecycle. */
export function addDaemonCommands(program: Command): void {
  withConfigFlags(program.command('init'))
    .description('make this host the first manager of a new mesh (CA, identity); then "meshd run"')
    .option(
      '--external-ca <url>',
      'relay certificate requests to this CFSSL-compatible signer (http or https)',
    )
    .option(
      '--external-ca-root <file>',
      'PEM root certificate the external signer signs with (its O becomes the cluster ID)',
    )
    .option('--external-ca-profile <name>', "the signer's CFSSL profile (default: its default)")
    .option(
      '--external-ca-tls-ca <file>',
      "PEM CA of the signer's HTTPS certificate, when it is a private one",
    )
    .action(async (flags: Flags & ExternalCaFlags) => {
      const cfg = configFrom(flags);
      const node = await initNode(cfg, externalCaFromFlags(flags));
      process.stdout.write(
        `mesh ${node.clusterId} initialized; this node is manager ${node.nodeId}.\n` +
          `Start it with "meshd run" (same flags), then get join tokens with "meshctl join-token worker".\n`,
      );
    });

  withConfigFlags(program.command('join'))
    .description('join a mesh through a manager with a join token; then "meshd run"')
    .requiredOption('--token <token>', 'join token from "meshctl join-token worker|manager"')
    .argument('<manager>', 'manager address HOST:PORT')
    .action(async (manager: string, flags: Flags & { token: string }) => {
      const cfg = configFrom(flags);
      const node = await joinNode(cfg, manager, flags.token);
      process.stdout.write(
        `joined mesh ${node.clusterId} as ${node.role} ${node.nodeId}; start it with "meshd run"\n`,
      );
    });

  withConfigFlags(program.command('leave'))
    .description("forget this host's membership (stop meshd first)")
    .option('-f, --force', 'leave even as a manager')
    .action(async (flags: Flags & { force?: boolean }) => {
      const warnings = await leaveNode(configFrom(flags), flags.force === true);
      for (const w of warnings) process.stderr.write(`meshd: warning: ${w}\n`);
      process.stdout.write('left the mesh\n');
    });

  withConfigFlags(program.command('run'))
    .description(
      'run this node (agent; on managers also Raft, CA, dispatcher, socket); SIGTERM/SIGINT stop it gracefully',
    )
    .action(async (flags: Flags) => {
      const cfg = configFrom(flags);
      const daemon = await runNode(cfg);
      await new Promise<void>((resolve) => {
        let stopping = false;
        const onSignal = (sig: string) => {
          if (stopping) return;
          stopping = true;
          process.stderr.write(`meshd: ${sig}: stopping (handing Raft leadership over first)\n`);
          daemon.stop().then(resolve, (err: unknown) => {
            process.stderr.write(`meshd: stop failed: ${(err as Error).message}\n`);
            resolve();
          });
        };
        process.once('SIGTERM', () => onSignal('SIGTERM'));
        process.once('SIGINT', () => onSignal('SIGINT'));
      });
    });
}
