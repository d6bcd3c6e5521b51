import { closeSync, fsyncSync, openSync } from 'node:fs';

/**
 * A rename or unlink is durable only once the directory holding it is
 * fsynced; without this a crash can bring back a deleted segment or lose a
 * freshly renamed snapshot even though the file's own data was synced.
 */
export function fsyncDir(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

export function hex16(n: number): string {
  return n.toString(16).padStart(16, '0');
}
