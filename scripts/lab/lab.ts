/**
 * The network-namespace lab: N "host" namespaces on one underlay bridge that
 * lives in a lab namespace, each host with an underlay address (eth0). Tests,
 * benchmarks and `make demo` import `labUp`/`labDown`; the CLI in
 * netns-lab.ts wraps them.
 *
 *   <prefix>lab   br0 (no address) ── vh1 ─┐ ... ── vhN ─┐
 *   <prefix>h1    eth0 10.99.0.11/24 ───────┘             │
 *   <prefix>hN    eth0 10.99.0.(10+N)/24 ─────────────────┘
 *
 * Every namespace meshd creates for host i starts with `<prefix>h<i>-`, so
 * `labDown` removes a lab's namespaces by exact names and that per-host
 * pattern, also after a killed run; nothing outside the prefix is touched.
 */
import { execFile } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { promisify } from 'node:util';
import { createNetns, deleteNetns, listNetns, validateNetnsName } from '../../dataplane/netns/netns.js';
import { ValidationError } from '../../src/common/errors.js';

const execFileAsync = promisify(execFile);

export const UNDERLAY_BRIDGE = 'br0';
export const UNDERLAY_IF = 'eth0';
export const MAX_LAB_HOSTS = 32;
const PREFIX_PATTERN = /^[a-z][a-z0-9]{1,11}$/;

export interface LabOptions {
  prefix: string;
  hosts: number;
  /** First three octets of the underlay /24; default "10.99.0". */
  underlayNet?: string;
  underlayMtu?: number;
}

export interface LabHost {
  index: number;
  /** "h1".."hN" */
  name: string;
  netns: string;
  /** Prefix for every namespace meshd creates on this host. */
  netnsPrefix: string;
  underlayIf: string;
  address: string;
  prefixLength: number;
}

export interface NetnsLab {
  prefix: string;
  labNetns: string;
  bridge: string;
  underlaySubnet: string;
  underlayMtu: number;
  hosts: LabHost[];
}

function validateOptions(o: LabOptions): Required<LabOptions> {
  if (!PREFIX_PATTERN.test(o.prefix)) {
    throw new ValidationError(
      'prefix',
      `--prefix must match ${PREFIX_PATTERN}, got ${JSON.stringify(o.prefix)}`,
    );
  }
  if (!Number.isInteger(o.hosts) || o.hosts < 1 || o.hosts > MAX_LAB_HOSTS) {
    throw new ValidationError('hosts', `--hosts must be an integer 1..${MAX_LAB_HOSTS}, got ${o.hosts}`);
  }
  const underlayNet = o.underlayNet ?? '10.99.0';
  if (
    !/^(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.test(underlayNet) ||
    underlayNet.split('.').some((x) => +x > 255)
  ) {
    throw new ValidationError(
      'underlayNet',
      `underlayNet must be three octets like "10.99.0", got "${underlayNet}"`,
    );
  }
  const underlayMtu = o.underlayMtu ?? 1500;
  if (!Number.isInteger(underlayMtu) || underlayMtu < 1280 || underlayMtu > 65535) {
    throw new ValidationError(
      'underlayMtu',
      `underlayMtu must be an integer 1280..65535, got ${underlayMtu}`,
    );
  }
  return { prefix: o.prefix, hosts: o.hosts, underlayNet, underlayMtu };
}

/** The lab's names and addresses, computed without touching the kernel. */
export function describeLab(options: LabOptions): NetnsLab {
  const o = validateOptions(options);
  const hosts: LabHost[] = [];
  for (let i = 1; i <= o.hosts; i++) {
    const netns = validateNetnsName(`${o.prefix}h${i}`);
    hosts.push({
      index: i,
      name: `h${i}`,
      netns,
      netnsPrefix: `${netns}-`,
      underlayIf: UNDERLAY_IF,
      address: `${o.underlayNet}.${10 + i}`,
      prefixLength: 24,
    });
  }
  return {
    prefix: o.prefix,
    labNetns: `${o.prefix}lab`,
    bridge: UNDERLAY_BRIDGE,
    underlaySubnet: `${o.underlayNet}.0/24`,
    underlayMtu: o.underlayMtu,
    hosts,
  };
}

async function ipBatch(netns: string, lines: string[]): Promise<void> {
  const child = execFileAsync('ip', ['-n', netns, '-batch', '-'], { timeout: 20_000 });
  child.child.stdin?.end(`${lines.join('\n')}\n`);
  try {
    await child;
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr?.trim() ?? String(err);
    throw new Error(`lab: ip -n ${netns} -batch failed: ${stderr}`, { cause: err });
  }
}

/** Builds the lab from scratch; a leftover lab with the same prefix is removed first. */
export async function labUp(options: LabOptions): Promise<NetnsLab> {
  const lab = describeLab(options);
  await labDown(lab.prefix);
  try {
    await createNetns(lab.labNetns);
    await ipBatch(lab.labNetns, [
      `link add ${lab.bridge} mtu ${lab.underlayMtu} type bridge`,
      `link set ${lab.bridge} up`,
    ]);
    for (const h of lab.hosts) {
      await createNetns(h.netns);
      const labSide = `v${h.name}`;
      await ipBatch(lab.labNetns, [
        `link add ${labSide} mtu ${lab.underlayMtu} type veth peer name ${h.underlayIf} netns ${h.netns}`,
        `link set ${labSide} master ${lab.bridge}`,
        `link set ${labSide} up`,
      ]);
      await ipBatch(h.netns, [
        `link set ${h.underlayIf} mtu ${lab.underlayMtu}`,
        `addr add ${h.address}/${h.prefixLength} dev ${h.underlayIf}`,
        `link set ${h.underlayIf} up`,
      ]);
      // A host routes between its underlay and its overlay/task namespaces.
      await execFileAsync('ip', ['netns', 'exec', h.netns, 'sysctl', '-qw', 'net.ipv4.ip_forward=1']);
    }
  } catch (err) {
    await labDown(lab.prefix).catch(() => {});
    throw err;
  }
  return lab;
}

/**
 * Namespaces that belong to the lab with this prefix: the lab namespace, the
 * hosts `<prefix>h<i>` and everything created under a host's `<prefix>h<i>-`.
 */
export function labNetnsNames(prefix: string, existing: string[]): string[] {
  const hostPattern = new RegExp(`^${prefix}h\\d+(-.*)?$`);
  return existing.filter((n) => n === `${prefix}lab` || hostPattern.test(n));
}

/** Tears the lab down (children first); safe to call when nothing is there. */
export async function labDown(prefix: string): Promise<string[]> {
  if (!PREFIX_PATTERN.test(prefix)) {
    throw new ValidationError(
      'prefix',
      `--prefix must match ${PREFIX_PATTERN}, got ${JSON.stringify(prefix)}`,
    );
  }
  const names = labNetnsNames(prefix, listNetns(prefix));
  // Children (host-prefixed) first, then hosts, then the lab namespace.
  names.sort((a, b) => b.length - a.length);
  for (const n of names) {
    await deleteNetns(n);
    // Per-namespace resolv.conf of task sandboxes (dataplane/sandbox), by the same exact name.
    await rm(`/etc/netns/${n}`, { recursive: true, force: true });
  }
  return names;
}
