import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { MeshError } from '../../../src/common/errors.js';
import { IpvsClient } from '../../netlink/ipvs/client.js';
import type { IpvsDestination, IpvsService, IpvsServiceKey, IpvsTimeouts } from '../../netlink/ipvs/types.js';
import { Rtnl } from '../../netlink/rtnl.js';
import type { AddrInfo } from '../../netlink/types.js';
import { netnsIdentity } from '../../netns/netns.js';
import type { LbProtocol } from '../types.js';
import { IpvsHelper } from './helper.js';
import { SNAT_MARK } from './translate.js';

const run = promisify(execFile);

/** The IPVS operations the backend needs (IpvsClient, or a helper in another namespace). */
export type IpvsOps = Pick<
  IpvsClient,
  | 'listServices'
  | 'listDestinations'
  | 'addService'
  | 'updateService'
  | 'deleteService'
  | 'addDestination'
  | 'updateDestination'
  | 'deleteDestination'
  | 'getTimeouts'
  | 'setTimeouts'
  | 'batch'
>;

/** What one scope's network namespace must hold besides IPVS objects. */
export interface ScopeNetfilter {
  /** SNAT source for balanced connections; null = keep the client's address. */
  snatAddress: string | null;
  /** VIP services: their addresses become local (so IPVS sees the packets) and their traffic is SNATed. */
  vips: { protocol: LbProtocol; address: string; port: number }[];
  /** Published ports: any local address + port gets the service's mark. */
  published: { protocol: LbProtocol; port: number; mark: number }[];
}

/** Kernel access for one scope namespace; the backend's only I/O. */
export interface IpvsNamespace {
  ipvs(): Promise<IpvsOps>;
  /** Writes sysctls of this namespace (full names, e.g. net.ipv4.vs.conntrack), in one process. */
  setSysctls(values: Readonly<Record<string, number>>): Promise<void>;
  /** Makes exactly this netfilter/address state current (idempotent). */
  syncNetfilter(spec: ScopeNetfilter): Promise<void>;
  /** Deletes UDP conntrack entries whose reply comes from address:port; returns how many. */
  flushUdpConntrack(address: string, port: number): Promise<number>;
  /**
   * The SNAT source this namespace's table holds (null: none, or no table).
   * IPVS does not keep it, so a process that did not program the scope (a
   * fresh `meshd dataplane dump`) reads it back from here.
   */
  readSnatAddress(): Promise<string | null>;
  close(): void;
}

export const VIP_LINK = 'mdipvs0';
/**
 * Same bound as the nftables backend's `nft` runs: `nft -f` of a table with
 * 1k VIPs took over 10 s in the emulated VM lab on a loaded host.
 */
const COMMAND_TIMEOUT_MS = 120_000;
export const NFT_TABLE = 'meshd_ipvs';

const vipElement = (v: ScopeNetfilter['vips'][number]): string => `${v.address} . ${v.protocol} . ${v.port}`;
const markElement = (p: ScopeNetfilter['published'][number]): string =>
  `${p.protocol} . ${p.port} : ${p.mark}`;
const markKey = (p: ScopeNetfilter['published'][number]): string => `${p.protocol} . ${p.port}`;

/** The nft script for a scope: one table, replaced whole (it holds a few rules and two sets). */
export function renderNetfilter(spec: ScopeNetfilter): string {
  const vipElems = spec.vips.map(vipElement);
  const markElems = spec.published.map(markElement);
  const lines = [
    `table ip ${NFT_TABLE} {}`,
    `delete table ip ${NFT_TABLE}`,
    `table ip ${NFT_TABLE} {`,
    '  set vips { type ipv4_addr . inet_proto . inet_service; }',
    '  map port_marks { type inet_proto . inet_service : mark; }',
    // Mangle priority: before IPVS sees the packet in LOCAL_IN, so the fwmark matches.
    '  chain prerouting { type filter hook prerouting priority mangle; policy accept;',
    '    fib daddr type local meta mark set meta l4proto . th dport map @port_marks',
    `    ip daddr . meta l4proto . th dport @vips meta mark set meta mark | ${SNAT_MARK}`,
    '  }',
    '  chain output { type route hook output priority mangle; policy accept;',
    '    fib daddr type local meta mark set meta l4proto . th dport map @port_marks',
    `    ip daddr . meta l4proto . th dport @vips meta mark set meta mark | ${SNAT_MARK}`,
    '  }',
    '  chain postrouting { type nat hook postrouting priority srcnat; policy accept;',
    spec.snatAddress === null
      ? ''
      : `    meta mark & ${SNAT_MARK} == ${SNAT_MARK} snat ip to ${spec.snatAddress}`,
    '  }',
    '}',
  ];
  if (vipElems.length > 0) lines.push(`add element ip ${NFT_TABLE} vips { ${vipElems.join(', ')} }`);
  if (markElems.length > 0) lines.push(`add element ip ${NFT_TABLE} port_marks { ${markElems.join(', ')} }`);
  return `${lines.filter((l) => l !== '').join('\n')}\n`;
}

/**
 * The nft script that turns the table of `from` into that of `to` by set
 * elements alone; undefined when the chains differ (the SNAT address), "" when
 * nothing differs. A port whose mark changes is deleted, then added.
 */
export function renderNetfilterDelta(from: ScopeNetfilter, to: ScopeNetfilter): string | undefined {
  if (from.snatAddress !== to.snatAddress) return undefined;
  const lines: string[] = [];
  const diff = (before: string[], after: string[]): { added: string[]; removed: string[] } => {
    const b = new Set(before);
    const a = new Set(after);
    return { added: after.filter((e) => !b.has(e)), removed: before.filter((e) => !a.has(e)) };
  };
  const vips = diff(from.vips.map(vipElement), to.vips.map(vipElement));
  const marks = diff(from.published.map(markElement), to.published.map(markElement));
  const markKeyOf = new Map([...from.published, ...to.published].map((p) => [markElement(p), markKey(p)]));
  if (vips.removed.length > 0)
    lines.push(`delete element ip ${NFT_TABLE} vips { ${vips.removed.join(', ')} }`);
  if (marks.removed.length > 0) {
    const keys = marks.removed.map((e) => markKeyOf.get(e) ?? e);
    lines.push(`delete element ip ${NFT_TABLE} port_marks { ${keys.join(', ')} }`);
  }
  if (vips.added.length > 0) lines.push(`add element ip ${NFT_TABLE} vips { ${vips.added.join(', ')} }`);
  if (marks.added.length > 0)
    lines.push(`add element ip ${NFT_TABLE} port_marks { ${marks.added.join(', ')} }`);
  return lines.length === 0 ? '' : `${lines.join('\n')}\n`;
}

/**
 * One network namespace: the current one (`netns` null) or a named one, where
 * commands run through `ip netns exec` and IPVS requests through a helper
 * process (a netlink socket acts in the namespace it was opened in).
 */
export class LocalIpvsNamespace implements IpvsNamespace {
  private client: IpvsClient | undefined;
  private helper: Promise<IpvsHelper> | undefined;
  /** Which namespace (device:inode of its /run/netns file) the helper was started in. */
  private helperNetnsId: string | undefined;
  private vipsOnLink = new Set<string>();
  /** `ip link add` of the VIP link ran (it may have existed already: EEXIST is ignored). */
  private vipLinkMade = false;
  /** The script (which names every VIP) the last successful syncNetfilter made current. */
  private lastScript: string | undefined;
  /** The spec of that script. */
  private lastSpec: ScopeNetfilter | undefined;

  /**
   * `netns` null = this process's namespace (netlink in-process); a name =
   * commands through `ip netns exec`, IPVS through a helper process started
   * there with `helperCommand` (default: node + tsx on helper-main.ts).
   */
  constructor(
    private readonly netns: string | null = null,
    private readonly helperCommand?: string[],
  ) {}

  private async cmd(file: string, args: string[], input?: string): Promise<string> {
    const [f, a] = this.netns === null ? [file, args] : ['ip', ['netns', 'exec', this.netns, file, ...args]];
    if (input === undefined) return (await run(f, a, { timeout: COMMAND_TIMEOUT_MS })).stdout;
    return new Promise((resolve, reject) => {
      const child = execFile(f, a, { timeout: COMMAND_TIMEOUT_MS }, (err, stdout, stderr) => {
        if (err) {
          const killed = err.killed ? ` (killed after ${COMMAND_TIMEOUT_MS} ms)` : '';
          reject(
            new MeshError(
              'IPVS_NETFILTER',
              `${file} ${args.join(' ')} failed${killed}: ${stderr || err.message}`,
            ),
          );
        } else resolve(stdout);
      });
      child.stdin?.end(input);
    });
  }

  async ipvs(): Promise<IpvsOps> {
    if (this.netns === null) {
      this.client ??= await IpvsClient.open();
      return this.client;
    }
    const netns = this.netns;
    // A namespace deleted and made again under the same name (the overlay
    // recreates one it finds half set up) leaves a helper programming the old,
    // unreachable one, whose dumps then show no drift: seen in the VM lab as a
    // node whose published port never answered. Follow the name.
    const netnsId = netnsIdentity(netns);
    if (this.helper !== undefined && netnsId !== this.helperNetnsId) {
      void this.helper.then((h) => h.close()).catch(() => {});
      this.helper = undefined;
    }
    if (this.helper === undefined) {
      this.helper = IpvsHelper.start(netns, this.helperCommand);
      this.helperNetnsId = netnsId;
    }
    try {
      return (await this.helper).ops();
    } catch (err) {
      this.helper = undefined;
      throw err;
    }
  }

  async setSysctls(values: Readonly<Record<string, number>>): Promise<void> {
    // One process for all: each costs ~1 s in an emulated VM on a loaded host.
    const args = Object.entries(values).map(([name, value]) => `${name}=${value}`);
    if (args.length > 0) await this.cmd('sysctl', ['-q', '-w', ...args]);
  }

  async syncNetfilter(spec: ScopeNetfilter): Promise<void> {
    // Unchanged spec, nothing to do; a spec that differs from the last one only
    // in its sets' elements is one small transaction of adds and deletes, not
    // the whole table again (5k VIP elements re-rendered for every new service).
    const script = renderNetfilter(spec);
    if (script === this.lastScript) return;
    const delta = this.lastSpec === undefined ? undefined : renderNetfilterDelta(this.lastSpec, spec);
    this.lastScript = undefined;
    this.lastSpec = undefined;
    if (delta === undefined) await this.cmd('nft', ['-f', '-'], script);
    else if (delta !== '') {
      // The table may have been changed by hand: a failed delta falls back to the whole table.
      await this.cmd('nft', ['-f', '-'], delta).catch(() => this.cmd('nft', ['-f', '-'], script));
    }
    const want = new Set(spec.vips.map((v) => v.address));
    if (want.size > 0 || this.vipsOnLink.size > 0) {
      if (!this.vipLinkMade) {
        await this.cmd('ip', ['link', 'add', VIP_LINK, 'type', 'dummy']).catch(() => '');
        this.vipLinkMade = true;
      }
      const have = await this.vipLinkAddresses();
      const batch = [
        `link set ${VIP_LINK} up`,
        ...[...want].filter((a) => !have.has(a)).map((a) => `addr add ${a}/32 dev ${VIP_LINK}`),
        ...[...have].filter((a) => !want.has(a)).map((a) => `addr del ${a}/32 dev ${VIP_LINK}`),
      ];
      // One `ip -batch` process, not one per address: a process costs ~60 ms under
      // the VM lab's emulation (~1 s on a loaded host), which made 5k VIPs take 5 minutes.
      try {
        await this.cmd('ip', ['-batch', '-'], `${batch.join('\n')}\n`);
      } catch (err) {
        // The link may have been deleted by hand: make it again next time.
        this.vipLinkMade = false;
        throw err;
      }
      this.vipsOnLink = want;
    }
    this.lastScript = script;
    this.lastSpec = spec;
  }

  /**
   * The /32 addresses on the VIP link, read by an rtnetlink dump (in the
   * helper for a named namespace): `ip addr show` output went past execFile's
   * 1 MB cap above ~10k VIPs.
   */
  private async vipLinkAddresses(): Promise<Set<string>> {
    let addrs: AddrInfo[];
    if (this.netns === null) {
      const rtnl = Rtnl.open();
      try {
        addrs = await rtnl.addrs();
      } finally {
        rtnl.close();
      }
    } else {
      await this.ipvs();
      const helper = await this.helper;
      if (helper === undefined) throw new MeshError('IPVS_HELPER', `no IPVS helper in "${this.netns}"`);
      addrs = await helper.addresses();
    }
    return new Set(addrs.filter((a) => a.ifname === VIP_LINK && a.prefixLength === 32).map((a) => a.address));
  }

  async readSnatAddress(): Promise<string | null> {
    const listing = await this.cmd('nft', ['list', 'chain', 'ip', NFT_TABLE, 'postrouting']).catch(() => '');
    return /snat (?:ip )?to (\d+\.\d+\.\d+\.\d+)/.exec(listing)?.[1] ?? null;
  }

  async flushUdpConntrack(address: string, port: number): Promise<number> {
    try {
      const out = await run(
        this.netns === null ? 'conntrack' : 'ip',
        [
          ...(this.netns === null ? [] : ['netns', 'exec', this.netns, 'conntrack']),
          '-D',
          '-p',
          'udp',
          '--reply-src',
          address,
          '--reply-port-src',
          String(port),
        ],
        { timeout: 10_000 },
      );
      return Number(/(\d+) flow entries have been deleted/.exec(out.stderr)?.[1] ?? 0);
    } catch (err) {
      // conntrack exits 1 when nothing matched.
      const stderr = (err as { stderr?: string }).stderr ?? '';
      if (/0 flow entries have been deleted/.test(stderr)) return 0;
      throw new MeshError('IPVS_CONNTRACK', `conntrack -D for ${address}:${port} failed: ${stderr}`, {
        cause: err,
      });
    }
  }

  close(): void {
    this.client?.close();
    this.client = undefined;
    void this.helper?.then((h) => h.close()).catch(() => {});
    this.helper = undefined;
  }
}

export type { IpvsDestination, IpvsService, IpvsServiceKey, IpvsTimeouts };
