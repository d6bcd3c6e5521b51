import { mkdirSync, readdirSync, readFileSync, unlinkSync } from 'node:fs';
import { open, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { MeshError } from '../../../src/common/errors.js';
import type { Snapshot, SnapshotMetadata } from '../core/types.js';
import { fsyncDir, hex16, restrictToOwner } from './fsutil.js';

/**
 * Snapshot files: `<term>-<index>.snap` (16 hex digits each) holding
 *
 *   "MSNP" | u32 version | u32 metaBytes | metadata JSON | data | u32 crc32(all before)
 *
 * Written atomically: temp file, fsync, rename, fsync of the directory, so a
 * crash leaves either the old set of snapshots or the new one, never half.
 */
const MAGIC = 0x504e534d; // "MSNP" little endian
const VERSION = 1;
const SNAP_PATTERN = /^([0-9a-f]{16})-([0-9a-f]{16})\.snap$/;

interface SnapFile {
  term: number;
  index: number;
  name: string;
}

function listSnapFiles(dir: string): SnapFile[] {
  const out: SnapFile[] = [];
  for (const name of readdirSync(dir)) {
    const m = SNAP_PATTERN.exec(name);
    if (m === null) continue;
    out.push({ term: Number.parseInt(m[1]!, 16), index: Number.parseInt(m[2]!, 16), name });
  }
  return out.sort((a, b) => a.index - b.index || a.term - b.term);
}

export function encodeSnapshot(snapshot: Snapshot): Buffer[] {
  const meta = Buffer.from(JSON.stringify(snapshot.metadata));
  const head = Buffer.allocUnsafe(12);
  head.writeUInt32LE(MAGIC, 0);
  head.writeUInt32LE(VERSION, 4);
  head.writeUInt32LE(meta.length, 8);
  let crc = crc32(head);
  crc = crc32(meta, crc);
  crc = crc32(snapshot.data, crc);
  const tail = Buffer.allocUnsafe(4);
  tail.writeUInt32LE(crc, 0);
  return [
    head,
    meta,
    Buffer.from(snapshot.data.buffer, snapshot.data.byteOffset, snapshot.data.byteLength),
    tail,
  ];
}

function corrupt(path: string, reason: string): MeshError {
  return new MeshError(
    'SNAPSHOT_CORRUPT',
    `raft snapshot ${path} is corrupt: ${reason}; the node refuses to start. Rebuild this manager from ` +
      `the others (remove its data directory and rejoin)`,
    { details: { file: path, reason } },
  );
}

export function decodeSnapshot(path: string, buf: Buffer): Snapshot {
  if (buf.length < 16 || buf.readUInt32LE(0) !== MAGIC) throw corrupt(path, 'bad magic or short file');
  if (buf.readUInt32LE(4) !== VERSION) throw corrupt(path, `unsupported version ${buf.readUInt32LE(4)}`);
  const metaBytes = buf.readUInt32LE(8);
  if (12 + metaBytes + 4 > buf.length) throw corrupt(path, 'metadata runs past the end');
  if (crc32(buf.subarray(0, buf.length - 4)) !== buf.readUInt32LE(buf.length - 4)) {
    throw corrupt(path, 'checksum mismatch');
  }
  let metadata: SnapshotMetadata;
  try {
    metadata = JSON.parse(buf.subarray(12, 12 + metaBytes).toString('utf8')) as SnapshotMetadata;
  } catch {
    throw corrupt(path, 'metadata is not JSON');
  }
  const data = new Uint8Array(buf.subarray(12 + metaBytes, buf.length - 4));
  return { metadata, data };
}

export class Snapshotter {
  constructor(readonly dir: string) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    restrictToOwner(dir);
  }

  async save(snapshot: Snapshot): Promise<string> {
    const { term, index } = snapshot.metadata;
    const name = `${hex16(term)}-${hex16(index)}.snap`;
    const tmp = join(this.dir, `${name}.tmp`);
    // 0600: a snapshot holds the store, with the CA root key.
    const handle = await open(tmp, 'w', 0o600);
    try {
      for (const part of encodeSnapshot(snapshot)) {
        let written = 0;
        while (written < part.length) {
          written += (await handle.write(part, written, part.length - written)).bytesWritten;
        }
      }
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(tmp, join(this.dir, name));
    fsyncDir(this.dir);
    return name;
  }

  /** The newest snapshot, or undefined when there is none. A corrupt newest one is refused. */
  loadNewest(): Snapshot | undefined {
    for (const f of readdirSync(this.dir)) if (f.endsWith('.snap.tmp')) unlinkSync(join(this.dir, f));
    const newest = listSnapFiles(this.dir).at(-1);
    if (newest === undefined) return undefined;
    const path = join(this.dir, newest.name);
    const snap = decodeSnapshot(path, readFileSync(path));
    if (snap.metadata.index !== newest.index || snap.metadata.term !== newest.term) {
      throw corrupt(
        path,
        `metadata says index ${snap.metadata.index} term ${snap.metadata.term}, name disagrees`,
      );
    }
    return snap;
  }

  /** Keeps the newest `keep` snapshot files, deletes the rest. */
  prune(keep: number): void {
    const files = listSnapFiles(this.dir);
    const doomed = files.slice(0, Math.max(0, files.length - keep));
    for (const f of doomed) unlinkSync(join(this.dir, f.name));
    if (doomed.length > 0) fsyncDir(this.dir);
  }
}
