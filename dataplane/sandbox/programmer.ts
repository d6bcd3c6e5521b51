import { execFile } from 'node:child_process';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { MeshError } from '../../src/common/errors.js';
import { helperRtnl } from '../netlink/remote.js';
import type { RouteSpec } from '../netlink/types.js';
import { createNetns, deleteNetns, listNetns, netnsPath } from '../netns/netns.js';
import type { NetnsHelperPool } from '../netns/pool.js';
import { BRIDGE_IF, validateHostPrefix } from '../overlay/names.js';
import type { Programmer } from '../reconciler/reconciler.js';
import { desiredSandboxes, type SandboxAttachment, type SandboxesModel, type SandboxModel } from './model.js';
import { planSandboxes, type SandboxChange } from './plan.js';

const execFileAsync = promisify(execFile);

/**
 * iproute2 bind-mounts /etc/netns/<name>/resolv.conf over /etc/resolv.conf for
 * every process started with `ip netns exec <name>`, so this file is what the
 * task sees; an executor that does its own mount namespace binds the same file.
 */
export function resolvConfPath(netns: string, etcNetnsDir = '/etc/netns'): string {
  return `${etcNetnsDir}/${netns}/resolv.conf`;
}

export interface SandboxContext {
  hostPrefix: string;
  /** Helpers of the network namespaces (shared with the overlay programmer). */
  helpers: NetnsHelperPool;
  etcNetnsDir?: string;
}

/** The reconciler's Programmer for the sandbox of one node (describe always present). */
export type SandboxProgrammer = Programmer<SandboxesModel, SandboxChange> & {
  readonly name: 'sandbox';
  describe(model: SandboxesModel): unknown;
};

/** Several `ip -j` listings in one exec: iproute2 prints one JSON array per line, in order. */
async function ipJsonBatch(netns: string, commands: string[]): Promise<unknown[]> {
  const run = execFileAsync('ip', ['-n', netns, '-j', '-batch', '-'], {
    timeout: 10_000,
    maxBuffer: 16 * 1024 * 1024,
  });
  run.child.stdin?.end(`${commands.join('\n')}\n`);
  const { stdout } = await run;
  const lines = stdout.split('\n').filter((l) => l.trim() !== '');
  if (lines.length !== commands.length) {
    throw new MeshError(
      'SANDBOX',
      `sandbox "${netns}": expected ${commands.length} JSON listings from ip, got ${lines.length}`,
    );
  }
  return lines.map((l) => JSON.parse(l) as unknown);
}

/** One `ip -batch` for the in-sandbox settings (see dataplane/netns/README.md for why not a helper). */
async function ipBatch(netns: string, lines: string[]): Promise<void> {
  if (lines.length === 0) return;
  const run = execFileAsync('ip', ['-n', netns, '-batch', '-'], { timeout: 10_000 });
  run.child.stdin?.end(`${lines.join('\n')}\n`);
  try {
    await run;
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr?.trim() ?? String(err);
    throw new MeshError('SANDBOX', `sandbox "${netns}": ip -batch failed: ${stderr}`, { cause: err });
  }
}

function routeLine(verb: 'add' | 'del', r: RouteSpec): string {
  return `route ${verb} ${r.dst}${r.gateway ? ` via ${r.gateway}` : ''}${r.dev ? ` dev ${r.dev}` : ''}`;
}

interface IpLink {
  ifname: string;
  address?: string;
  mtu: number;
  flags: string[];
}
interface IpAddr {
  ifname: string;
  addr_info: { family: string; local: string; prefixlen: number }[];
}
interface IpRoute {
  dst: string;
  gateway?: string;
  dev?: string;
}

export function sandboxProgrammer(ctx: SandboxContext): SandboxProgrammer {
  validateHostPrefix(ctx.hostPrefix);
  const etc = ctx.etcNetnsDir ?? '/etc/netns';
  let ops = 0;

  async function dumpSandbox(netns: string): Promise<SandboxModel> {
    const [links, addrs, routes] = (await ipJsonBatch(netns, ['link show', 'addr show', 'route show'])) as [
      IpLink[],
      IpAddr[],
      IpRoute[],
    ];
    const attachments: SandboxAttachment[] = [];
    for (const l of links) {
      if (!/^eth\d+$/.test(l.ifname) || !l.flags.includes('UP')) continue;
      const inet = addrs.find((a) => a.ifname === l.ifname)?.addr_info.find((x) => x.family === 'inet');
      attachments.push({
        ifname: l.ifname,
        networkNetns: '',
        vethName: '',
        mac: l.address ?? '',
        address: inet?.local ?? '',
        prefixLength: inet?.prefixlen ?? 0,
        mtu: l.mtu,
      });
    }
    const kept = routes
      .filter((r) => r.gateway !== undefined)
      .map((r) => {
        const dst = r.dst === 'default' || r.dst.includes('/') ? r.dst : `${r.dst}/32`;
        const spec: RouteSpec = { dst };
        if (r.gateway !== undefined) spec.gateway = r.gateway;
        if (r.dev !== undefined) spec.dev = r.dev;
        return spec;
      })
      .sort((x, y) => x.dst.localeCompare(y.dst));
    const resolvConf = await readFile(resolvConfPath(netns, etc), 'utf8').catch(() => '');
    const loopbackUp = links.some((l) => l.ifname === 'lo' && l.flags.includes('UP'));
    return { netns, taskId: '', attachments, routes: kept, resolvConf, loopbackUp };
  }

  async function addAttachment(netns: string, a: SandboxAttachment): Promise<void> {
    const nl = helperRtnl(await ctx.helpers.get(a.networkNetns));
    // The peer is created directly inside the sandbox: no helper is needed there.
    ops++;
    await nl.addLink({
      name: a.vethName,
      kind: 'veth',
      mtu: a.mtu,
      veth: { peerName: a.ifname, peerNetnsPath: netnsPath(netns), peerMac: a.mac, peerMtu: a.mtu },
    });
    ops++;
    await nl.setLink(a.vethName, { master: BRIDGE_IF, up: true });
    ops += 2;
    await ipBatch(netns, [
      `addr add ${a.address}/${a.prefixLength} dev ${a.ifname}`,
      `link set ${a.ifname} up`,
    ]);
  }

  async function removeVeth(a: SandboxAttachment): Promise<void> {
    if (a.networkNetns === '') return;
    const nl = helperRtnl(await ctx.helpers.get(a.networkNetns));
    if ((await nl.links()).some((l) => l.name === a.vethName)) {
      ops++;
      await nl.delLink(a.vethName);
    }
  }

  async function writeResolvConf(netns: string, content: string): Promise<void> {
    await mkdir(`${etc}/${netns}`, { recursive: true });
    await writeFile(resolvConfPath(netns, etc), content);
  }

  async function apply(c: SandboxChange): Promise<void> {
    switch (c.type) {
      case 'create-sandbox': {
        await createNetns(c.sandbox.netns);
        for (const a of c.sandbox.attachments) {
          await removeVeth(a);
          await addAttachment(c.sandbox.netns, a);
        }
        ops += c.sandbox.routes.length;
        await ipBatch(
          c.sandbox.netns,
          c.sandbox.routes.map((r) => routeLine('add', r)),
        );
        await writeResolvConf(c.sandbox.netns, c.sandbox.resolvConf);
        return;
      }
      case 'delete-sandbox':
        ops++;
        await deleteNetns(c.netns);
        await rm(`${etc}/${c.netns}`, { recursive: true, force: true });
        return;
      case 'replace-attachment':
        if (c.existed) {
          ops++;
          await ipBatch(c.netns, [`link del ${c.attachment.ifname}`]);
        }
        await removeVeth(c.attachment);
        await addAttachment(c.netns, c.attachment);
        return;
      case 'set-routes':
        ops += c.add.length + c.remove.length;
        await ipBatch(c.netns, [
          ...c.remove.map((r) => routeLine('del', r)),
          ...c.add.map((r) => routeLine('add', r)),
        ]);
        return;
      case 'write-resolv-conf':
        await writeResolvConf(c.netns, c.content);
        return;
      case 'loopback-up':
        ops++;
        await ipBatch(c.netns, ['link set lo up']);
        return;
      default: {
        const never: never = c;
        throw new Error(`unknown sandbox change ${JSON.stringify(never)}`);
      }
    }
  }

  return {
    name: 'sandbox',
    desired: (state) => desiredSandboxes(state, ctx.hostPrefix),
    async dump() {
      const out: SandboxesModel = { sandboxes: new Map() };
      for (const netns of listNetns(`${ctx.hostPrefix}t`)) out.sandboxes.set(netns, await dumpSandbox(netns));
      return out;
    },
    plan: planSandboxes,
    async apply(changes) {
      ops = 0;
      for (const c of changes) await apply(c);
      return { kernelOperations: ops };
    },
    describe: (model) => ({ sandboxes: [...model.sandboxes.values()] }),
  };
}
