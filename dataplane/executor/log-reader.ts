import { closeSync, openSync, readSync, statSync } from 'node:fs';
import { join } from 'node:path';

export type LogStreamName = 'stdout' | 'stderr';

/** Where the executor writes a task's stream (`bounded-log.ts` rotates it to `<path>.1`). */
export function taskLogPath(logDir: string, taskId: string, stream: LogStreamName): string {
  return join(logDir, `${taskId}.${stream}.log`);
}

/** A longer line is cut into pieces of this size (a task printing without newlines stays bounded). */
export const MAX_LINE_BYTES = 16 * 1024;
/** Bytes read from one file per poll: a follower catching up does it in bounded steps. */
const READ_CHUNK_BYTES = 256 * 1024;

/**
 * Splits `carry + chunk` into complete lines (without their newline) and the
 * unfinished rest; a rest longer than `MAX_LINE_BYTES` is cut into lines.
 */
export function splitLines(carry: Buffer, chunk: Buffer): { lines: Buffer[]; rest: Buffer } {
  const data = carry.length === 0 ? chunk : Buffer.concat([carry, chunk]);
  const lines: Buffer[] = [];
  let start = 0;
  for (;;) {
    const nl = data.indexOf(0x0a, start);
    const end = nl === -1 ? data.length : nl;
    while (end - start > MAX_LINE_BYTES) {
      lines.push(data.subarray(start, start + MAX_LINE_BYTES));
      start += MAX_LINE_BYTES;
    }
    if (nl === -1) break;
    lines.push(data.subarray(start, nl));
    start = nl + 1;
  }
  return { lines, rest: Buffer.from(data.subarray(start)) };
}

/** The last `n` lines of a file's content (all of them when `n` is undefined); an unfinished last line counts. */
export function lastLines(content: Buffer, n: number | undefined): Buffer[] {
  const { lines, rest } = splitLines(Buffer.alloc(0), content);
  if (rest.length > 0) lines.push(rest);
  return n === undefined ? lines : n === 0 ? [] : lines.slice(-n);
}

function readRange(path: string, from: number, maxBytes: number): Buffer {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    return Buffer.alloc(0);
  }
  try {
    const buf = Buffer.alloc(maxBytes);
    const n = readSync(fd, buf, 0, maxBytes, from);
    return buf.subarray(0, n);
  } finally {
    closeSync(fd);
  }
}

function sizeOf(path: string): number | undefined {
  try {
    return statSync(path).size;
  } catch {
    return undefined;
  }
}

/**
 * The last `tail` lines of a stream (the rotated `.1` file first, then the
 * current one), and the size of the current file, where following starts.
 * Memory: at most the two files, each bounded by the executor's maxLogBytes.
 */
export function readTail(path: string, tail: number | undefined): { lines: Buffer[]; followFrom: number } {
  const size = sizeOf(path) ?? 0;
  const current = readRange(path, 0, size);
  let lines = lastLines(current, tail);
  if (tail === undefined || lines.length < tail) {
    const olderSize = sizeOf(`${path}.1`) ?? 0;
    const older = lastLines(
      readRange(`${path}.1`, 0, olderSize),
      tail === undefined ? undefined : tail - lines.length,
    );
    lines = [...older, ...lines];
  }
  return { lines, followFrom: current.length };
}

/**
 * Follows one stream's file from an offset: each `poll()` returns the
 * complete lines written since (at most READ_CHUNK_BYTES read per call). A
 * file that got shorter was rotated: the rest of the old one (now `.1`) is
 * read first, then the new one from its start.
 */
export class LogFileFollower {
  private carry: Buffer = Buffer.alloc(0);

  constructor(
    readonly path: string,
    private offset: number,
  ) {}

  /** Offset in `<path>.1` while the rest of a rotated file is still being read. */
  private rotatedOffset: number | undefined;

  poll(): Buffer[] {
    const size = sizeOf(this.path) ?? 0;
    if (this.rotatedOffset === undefined && size < this.offset) {
      this.rotatedOffset = this.offset;
      this.offset = 0;
    }
    if (this.rotatedOffset !== undefined) {
      const rest = readRange(`${this.path}.1`, this.rotatedOffset, READ_CHUNK_BYTES);
      if (rest.length > 0) {
        this.rotatedOffset += rest.length;
        return this.take(rest);
      }
      // The old file's unfinished last line is kept: the executor rotates at a
      // byte count, not a newline, and the line goes on in the new file.
      this.rotatedOffset = undefined;
    }
    if (size === this.offset) return [];
    const chunk = readRange(this.path, this.offset, Math.min(READ_CHUNK_BYTES, size - this.offset));
    this.offset += chunk.length;
    return this.take(chunk);
  }

  private take(chunk: Buffer): Buffer[] {
    const { lines, rest } = splitLines(this.carry, chunk);
    this.carry = rest;
    return lines;
  }
}
