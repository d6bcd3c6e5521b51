import { spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { MeshError } from '../../src/common/errors.js';
import { helperRtnl } from '../netlink/remote.js';
import { Rtnl, type RtnlOps } from '../netlink/rtnl.js';
import type { NetnsHelper } from './helper.js';
import type { ExecResult } from './protocol.js';

/**
 * The node's own ("host") namespace as the data plane sees it. On a real host
 * meshd runs there (`localHostAccess`); in the lab each host is a namespace
 * reached through its helper (`helperHostAccess`), so tests never program the
 * root namespace of the machine they run on.
 */
export interface HostAccess {
  rtnl: RtnlOps;
  sysctl(key: string, value: string): Promise<void>;
  exec(argv: string[], input?: string): Promise<ExecResult>;
}

export function helperHostAccess(helper: NetnsHelper): HostAccess {
  return {
    rtnl: helperRtnl(helper),
    sysctl: (key, value) => helper.sysctl(key, value),
    exec: (argv, input) => helper.exec(argv, input === undefined ? {} : { input }),
  };
}

const SYSCTL_KEY_PATTERN = /^net\.[a-z0-9_.-]+$/;

export function localHostAccess(): HostAccess {
  let rtnl: Rtnl | undefined;
  return {
    get rtnl(): RtnlOps {
      rtnl ??= Rtnl.open();
      return rtnl;
    },
    async sysctl(key, value) {
      if (!SYSCTL_KEY_PATTERN.test(key)) {
        throw new MeshError('INVALID_ARGUMENT', `sysctl key must match ${SYSCTL_KEY_PATTERN}, got "${key}"`);
      }
      await writeFile(`/proc/sys/${key.replaceAll('.', '/')}`, `${value}\n`);
    },
    exec(argv, input) {
      return new Promise((resolve, reject) => {
        const [cmd, ...args] = argv;
        if (cmd === undefined) {
          reject(new MeshError('INVALID_ARGUMENT', 'exec: argv must name a command, got []'));
          return;
        }
        const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], timeout: 30_000 });
        let stdout = '';
        let stderr = '';
        child.stdout.on('data', (d: Buffer) => {
          stdout += d.toString();
        });
        child.stderr.on('data', (d: Buffer) => {
          stderr += d.toString();
        });
        child.on('error', reject);
        child.stdin.on('error', () => {});
        child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
        child.stdin.end(input ?? '');
      });
    },
  };
}

/** Runs a command through `access` and throws with its stderr when it fails. */
export async function execOrThrow(access: HostAccess, argv: string[], input?: string): Promise<string> {
  const r = await access.exec(argv, input);
  if (r.code !== 0) {
    throw new MeshError('EXEC_FAILED', `${argv.join(' ')} exited with ${r.code}: ${r.stderr.trim()}`);
  }
  return r.stdout;
}
