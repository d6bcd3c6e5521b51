import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from '../../src/common/logger.js';
import type { ResourceLimits } from './types.js';

/**
 * Resource limits through cgroup v2, where the host has it. Each task gets
 * `<cgroup2 mount>/meshd/<taskId>`; the task's launcher writes its own PID into
 * it before exec'ing the command, so no child escapes the limits.
 */
export interface CgroupV2 {
  mountPath: string;
  controllers: Set<string>;
}

/** Finds the cgroup2 mount in /proc/self/mounts text and the controllers it offers. */
export function findCgroupV2Mount(mountsText: string): string | undefined {
  for (const line of mountsText.split('\n')) {
    const [, mountPoint, fsType] = line.split(' ');
    if (fsType === 'cgroup2' && mountPoint !== undefined) return mountPoint;
  }
  return undefined;
}

export function detectCgroupV2(): CgroupV2 | undefined {
  let mounts = '';
  try {
    mounts = readFileSync('/proc/self/mounts', 'utf8');
  } catch {
    return undefined;
  }
  const mountPath = findCgroupV2Mount(mounts);
  if (mountPath === undefined) return undefined;
  let text = '';
  try {
    text = readFileSync(join(mountPath, 'cgroup.controllers'), 'utf8');
  } catch {
    return undefined;
  }
  const controllers = new Set(text.trim().split(/\s+/).filter(Boolean));
  return { mountPath, controllers };
}

/** The cgroup interface files and their contents for `limits` (pure). */
export function cgroupLimitFiles(limits: ResourceLimits): Record<string, string> {
  const files: Record<string, string> = {};
  if (limits.memoryBytes !== undefined) files['memory.max'] = String(Math.floor(limits.memoryBytes));
  if (limits.cpuMillicores !== undefined) {
    const periodUs = 100_000;
    const quotaUs = Math.max(1000, Math.round((limits.cpuMillicores / 1000) * periodUs));
    files['cpu.max'] = `${quotaUs} ${periodUs}`;
  }
  if (limits.pids !== undefined) files['pids.max'] = String(Math.floor(limits.pids));
  return files;
}

/** Controllers that `limits` needs, e.g. memory.max → memory. */
export function controllersFor(limits: ResourceLimits): string[] {
  return Object.keys(cgroupLimitFiles(limits)).map((f) => f.split('.')[0]!);
}

/**
 * Creates the task's cgroup with its limits; returns its path, or undefined
 * (with a warning) when the host has no usable cgroup v2 for these limits.
 */
export function createTaskCgroup(
  cgroup: CgroupV2 | undefined,
  taskId: string,
  limits: ResourceLimits,
  log: Logger,
): string | undefined {
  const needed = controllersFor(limits);
  if (needed.length === 0) return undefined;
  if (cgroup === undefined) {
    log.warn({ taskId }, 'resource limits not applied: this host has no cgroup v2 hierarchy');
    return undefined;
  }
  const missing = needed.filter((c) => !cgroup.controllers.has(c));
  if (missing.length > 0) {
    log.warn({ taskId, missing }, 'resource limits not applied: cgroup v2 controllers unavailable');
    return undefined;
  }
  const parent = join(cgroup.mountPath, 'meshd');
  mkdirSync(parent, { recursive: true });
  const enable = needed.map((c) => `+${c}`).join(' ');
  writeFileSync(join(cgroup.mountPath, 'cgroup.subtree_control'), enable);
  writeFileSync(join(parent, 'cgroup.subtree_control'), enable);
  const path = join(parent, taskId);
  if (!existsSync(path)) mkdirSync(path);
  for (const [file, content] of Object.entries(cgroupLimitFiles(limits)))
    writeFileSync(join(path, file), content);
  return path;
}

export function removeTaskCgroup(path: string | undefined): void {
  if (path === undefined) return;
  try {
    rmdirSync(path);
  } catch {
    // Busy (a straggler still in it) or gone: the next start of this task ID reuses it.
  }
}
