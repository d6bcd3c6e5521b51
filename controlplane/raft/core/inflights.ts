/**
 * Append messages in flight to one follower, as (last index, bytes). Bounded
 * in count and optionally in bytes: when full, the leader stops sending until
 * acknowledgements free room.
 */
export class Inflights {
  private readonly indexes: number[] = [];
  private readonly sizes: number[] = [];
  private head = 0;
  private totalBytes = 0;

  constructor(
    readonly capacity: number,
    readonly maxBytes: number,
  ) {}

  get count(): number {
    return this.indexes.length - this.head;
  }

  get bytes(): number {
    return this.totalBytes;
  }

  add(lastIndex: number, bytes: number): void {
    this.indexes.push(lastIndex);
    this.sizes.push(bytes);
    this.totalBytes += bytes;
  }

  /** Frees every message whose last index is ≤ `index` (acknowledged). */
  freeLE(index: number): void {
    while (this.head < this.indexes.length && this.indexes[this.head]! <= index) {
      this.totalBytes -= this.sizes[this.head]!;
      this.head++;
    }
    this.compactIfSparse();
  }

  freeFirstOne(): void {
    if (this.head < this.indexes.length) this.freeLE(this.indexes[this.head]!);
  }

  full(): boolean {
    return this.count >= this.capacity || (this.maxBytes > 0 && this.totalBytes >= this.maxBytes);
  }

  reset(): void {
    this.indexes.length = 0;
    this.sizes.length = 0;
    this.head = 0;
    this.totalBytes = 0;
  }

  private compactIfSparse(): void {
    if (this.head > 64 && this.head * 2 > this.indexes.length) {
      this.indexes.splice(0, this.head);
      this.sizes.splice(0, this.head);
      this.head = 0;
    }
  }
}
