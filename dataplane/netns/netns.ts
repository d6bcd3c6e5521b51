import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { promisify } from 'node:util';
import { MeshError, ValidationError } from '../../src/common/errors.js';

const execFileAsync = promisify(execFile);

/** Where iproute2 bind-mounts named namespaces; the name is the file name. */
export const NETNS_RUN_DIR = '/run/netns';

// Names end up in file names, in `ip netns exec` argv and in log lines: keep
// them to a conservative alphabet. 1..40 characters is plenty for
// `<host prefix><kind><short id>`.
const NETNS_NAME_PATTERN = /^[a-z0-9][a-z0-9_-]{0,39}$/;

export class NetnsError extends MeshError {
  constructor(operation: string, name: string, detail: string, cause?: unknown) {
    super('NETNS', `netns ${operation} "${name}": ${detail}`, {
      cause,
      details: { operation, name },
    });
    this.name = 'NetnsError';
  }
}

export function validateNetnsName(name: string, field = 'netns'): string {
  if (!NETNS_NAME_PATTERN.test(name)) {
    throw new ValidationError(
      field,
      `${field}: namespace name must match ${NETNS_NAME_PATTERN} (lowercase letters, digits, "-", "_", ` +
        `1..40 characters), got ${JSON.stringify(name)}`,
    );
  }
  return name;
}

/** Path of the bind mount that keeps a named namespace alive (an fd target for IFLA_NET_NS_FD). */
export function netnsPath(name: string): string {
  return `${NETNS_RUN_DIR}/${validateNetnsName(name)}`;
}

export function netnsExists(name: string): boolean {
  return existsSync(netnsPath(name));
}

/**
 * Which namespace a name stands for now: device:inode of its bind mount
 * (`undefined` when there is none). A namespace deleted and made again under
 * the same name has another inode, while a process that entered the old one
 * (a helper) keeps it alive and keeps acting there, unseen.
 */
export function netnsIdentity(name: string): string | undefined {
  try {
    const st = statSync(netnsPath(name));
    return `${st.dev}:${st.ino}`;
  } catch {
    return undefined;
  }
}

/** Names of every named namespace that starts with `prefix` (sorted). */
export function listNetns(prefix = ''): string[] {
  if (!existsSync(NETNS_RUN_DIR)) return [];
  return readdirSync(NETNS_RUN_DIR)
    .filter((n) => n.startsWith(prefix) && NETNS_NAME_PATTERN.test(n))
    .sort();
}

async function ip(args: string[], operation: string, name: string): Promise<string> {
  try {
    const { stdout } = await execFileAsync('ip', args, { timeout: 10_000 });
    return stdout;
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr?.trim() ?? '';
    throw new NetnsError(operation, name, stderr || String(err), err);
  }
}

function runNetnsIsShared(mountinfo: string): boolean {
  for (const line of mountinfo.split('\n')) {
    const [before] = line.split(' - ');
    const fields = before?.split(' ') ?? [];
    if (fields[4] !== NETNS_RUN_DIR) continue;
    return fields.slice(6).some((f) => f.startsWith('shared:'));
  }
  // No mount yet: the first `ip netns add` creates a shared one.
  return true;
}

/**
 * False when this process runs in a mount namespace whose /run/netns does not
 * propagate mounts back (a process started with `ip netns exec`, which makes
 * its mounts slaves): a namespace created here would be an empty, unusable
 * file for every other process ("setting the network namespace failed").
 */
export function netnsMountsPropagate(mountinfo?: string): boolean {
  if (mountinfo !== undefined) return runNetnsIsShared(mountinfo);
  try {
    return runNetnsIsShared(readFileSync('/proc/self/mountinfo', 'utf8'));
  } catch {
    return true;
  }
}

function parentPid(pid: number): number | null {
  try {
    // /proc/<pid>/stat: "pid (comm) state ppid ..."; comm may contain spaces and parentheses.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    return Number.isInteger(ppid) && ppid > 0 ? ppid : null;
  } catch {
    return null;
  }
}

/**
 * The mount namespace to create and delete named namespaces in: ours, or when
 * ours is a slave (we run under `ip netns exec`, as in the lab), the nearest
 * ancestor's whose /run/netns is shared. A bind mount made there propagates to
 * every namespace that shares or follows it, ours included.
 */
function netnsMountOwner(): string | null {
  if (netnsMountsPropagate()) return null;
  for (let pid = parentPid(process.pid); pid !== null && pid > 1; pid = parentPid(pid)) {
    try {
      if (runNetnsIsShared(readFileSync(`/proc/${pid}/mountinfo`, 'utf8'))) return `/proc/${pid}/ns/mnt`;
    } catch {}
  }
  throw new NetnsError(
    'create',
    NETNS_RUN_DIR,
    `${NETNS_RUN_DIR} is not a shared mount in this process's mount namespace (started with ` +
      "`ip netns exec`?) nor in any ancestor's: a namespace created here would be invisible to " +
      "other processes. Run meshd in the host's mount namespace",
  );
}

/** `ip netns add|del NAME`, in the mount namespace that owns /run/netns. */
async function ipNetnsMount(verb: 'add' | 'del', name: string): Promise<void> {
  const owner = netnsMountOwner();
  const operation = verb === 'add' ? 'create' : 'delete';
  if (owner === null) {
    await ip(['netns', verb, name], operation, name);
    return;
  }
  try {
    await execFileAsync('nsenter', [`--mount=${owner}`, '--', 'ip', 'netns', verb, name], {
      timeout: 10_000,
    });
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr?.trim() ?? '';
    throw new NetnsError(operation, name, `(through ${owner}) ${stderr || String(err)}`, err);
  }
}

/**
 * Creates a named namespace with loopback up. A leftover of the same exact
 * name (from a killed run) is deleted first, so setup is idempotent and always
 * starts from an empty namespace.
 */
export async function createNetns(name: string): Promise<void> {
  validateNetnsName(name);
  if (netnsExists(name)) await deleteNetns(name);
  await ipNetnsMount('add', name);
  await ip(['-n', name, 'link', 'set', 'lo', 'up'], 'loopback up', name);
}

/** Creates the namespace only when it does not exist yet (keeps its contents). */
export async function ensureNetns(name: string): Promise<boolean> {
  validateNetnsName(name);
  if (netnsExists(name)) return false;
  await ipNetnsMount('add', name);
  await ip(['-n', name, 'link', 'set', 'lo', 'up'], 'loopback up', name);
  return true;
}

/** Deletes a namespace by exact name; a missing one is not an error. */
export async function deleteNetns(name: string): Promise<boolean> {
  validateNetnsName(name);
  if (!netnsExists(name)) return false;
  await ipNetnsMount('del', name);
  // iproute2 leaves /etc/netns/<name> (the sandbox's resolv.conf) behind; same exact name.
  await rm(`/etc/netns/${name}`, { recursive: true, force: true });
  return true;
}

/** Runs `argv` inside the namespace (`ip netns exec`), returning stdout; throws with stderr on failure. */
export async function execInNetns(
  name: string,
  argv: string[],
  options: { timeoutMs?: number } = {},
): Promise<string> {
  validateNetnsName(name);
  const [cmd, ...rest] = argv;
  if (cmd === undefined) throw new ValidationError('argv', 'argv: need at least a command, got []');
  try {
    const { stdout } = await execFileAsync('ip', ['netns', 'exec', name, cmd, ...rest], {
      timeout: options.timeoutMs ?? 10_000,
      maxBuffer: 64 * 1024 * 1024,
    });
    return stdout;
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr?.trim() ?? '';
    throw new NetnsError(`exec ${argv.join(' ')}`, name, stderr || String(err), err);
  }
}
