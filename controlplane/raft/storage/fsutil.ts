import { chmodSync, closeSync, fsyncSync, openSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

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

/**
 * Log entries and snapshots hold the store, and the store holds the CA root
 * key: the directory is 0700 and its files 0600, also when an older version
 * created them with the umask's modes.
 */
export function restrictToOwner(dir: string): void {
  chmodSync(dir, 0o700);
  for (const e of readdirSync(dir, { withFileTypes: true }))
    if (e.isFile()) chmodSync(join(dir, e.name), 0o600);
}
