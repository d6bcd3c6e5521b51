import { closeSync, openSync, renameSync, writeSync } from 'node:fs';

/**
 * An append-only log file that never grows past `maxBytes`: when a write would
 * cross the limit, the file becomes `<path>.1` (replacing the previous one)
 * and a new file starts. A task that prints forever costs at most 2× maxBytes.
 */
export class BoundedLogFile {
  private fd: number;
  private sizeBytes = 0;
  private closed = false;

  constructor(
    readonly path: string,
    private readonly maxBytes: number,
  ) {
    if (!Number.isInteger(maxBytes) || maxBytes < 1024)
      throw new RangeError(`log file ${path}: maxBytes must be an integer >= 1024, got ${maxBytes}`);
    this.fd = openSync(path, 'w', 0o640);
  }

  write(chunk: Uint8Array): void {
    if (this.closed) return;
    let offset = 0;
    while (offset < chunk.length) {
      if (this.sizeBytes >= this.maxBytes) this.rotate();
      const room = this.maxBytes - this.sizeBytes;
      const n = Math.min(room, chunk.length - offset);
      writeSync(this.fd, chunk, offset, n);
      this.sizeBytes += n;
      offset += n;
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    closeSync(this.fd);
  }

  private rotate(): void {
    closeSync(this.fd);
    renameSync(this.path, `${this.path}.1`);
    this.fd = openSync(this.path, 'w', 0o640);
    this.sizeBytes = 0;
  }
}
