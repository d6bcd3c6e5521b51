import type { StateMachine } from './raft-node.js';

/**
 * A tiny key-value register replicated through Raft: the state machine the
 * real-process tests and the benchmark run. A payload is JSON `{k, v}`.
 * It also keeps a running hash of everything applied, so processes can
 * compare their applied histories cheaply.
 */
export class KvStateMachine implements StateMachine {
  readonly data = new Map<string, string>();
  appliedIndex = 0;
  appliedCount = 0;

  apply(index: number, payload: Uint8Array): void {
    this.appliedIndex = index;
    this.appliedCount += 1;
    if (payload.byteLength === 0) return;
    let op: unknown;
    try {
      op = JSON.parse(Buffer.from(payload).toString('utf8'));
    } catch {
      return; // Every member skips the same undecodable payload alike.
    }
    if (typeof op !== 'object' || op === null) return;
    const { k, v } = op as { k?: unknown; v?: unknown };
    if (typeof k === 'string' && typeof v === 'string') this.data.set(k, v);
  }

  snapshot(): Uint8Array {
    return Buffer.from(JSON.stringify({ index: this.appliedIndex, data: [...this.data] }));
  }

  restore(bytes: Uint8Array): void {
    this.data.clear();
    if (bytes.byteLength === 0) return;
    const parsed = JSON.parse(Buffer.from(bytes).toString('utf8')) as {
      index: number;
      data: [string, string][];
    };
    for (const [k, v] of parsed.data) this.data.set(k, v);
    this.appliedIndex = parsed.index;
  }
}

export function kvPut(k: string, v: string): Uint8Array {
  return Buffer.from(JSON.stringify({ k, v }));
}
