import { type StoreAction, StoreActionKind, StoreTransaction } from '../../src/api/gen/meshd/v1/objects.js';
import { assert } from '../../src/common/errors.js';
import type { ObjectKind, ObjectsByKind } from './types.js';

/**
 * Builds one StoreTransaction. Updates carry the version the writer read
 * (meta.version), so the store refuses them if someone wrote in between.
 */
export class TransactionBuilder {
  private readonly actions: StoreAction[] = [];
  private readonly touched = new Set<string>();

  constructor(private readonly proposedAtMs: number) {}

  create<K extends ObjectKind>(kind: K, object: ObjectsByKind[K]): this {
    return this.push(StoreActionKind.STORE_ACTION_KIND_CREATE, kind, object);
  }

  update<K extends ObjectKind>(kind: K, object: ObjectsByKind[K]): this {
    return this.push(StoreActionKind.STORE_ACTION_KIND_UPDATE, kind, object);
  }

  delete<K extends ObjectKind>(kind: K, object: ObjectsByKind[K]): this {
    return this.push(StoreActionKind.STORE_ACTION_KIND_DELETE, kind, object);
  }

  get size(): number {
    return this.actions.length;
  }

  build(): StoreTransaction {
    return { actions: [...this.actions], proposedAt: { unixMs: this.proposedAtMs } };
  }

  /** Whether this transaction already changes that object. */
  touches(kind: ObjectKind, id: string): boolean {
    return this.touched.has(`${kind}/${id}`);
  }

  private push<K extends ObjectKind>(kind: StoreActionKind, target: K, value: ObjectsByKind[K]): this {
    // Two actions on one object in one transaction would be refused by the
    // store's version check; catch the planner bug here, where it happens.
    const key = `${target}/${value.meta?.id ?? ''}`;
    assert(!this.touched.has(key), `transaction changes ${key} twice`);
    this.touched.add(key);
    this.actions.push({ kind, target: { $case: target, value } as StoreAction['target'] });
    return this;
  }
}

/** Transactions travel through Raft as protobuf bytes. */
export function encodeTransaction(tx: StoreTransaction): Uint8Array {
  return StoreTransaction.encode(tx).finish();
}

export function decodeTransaction(bytes: Uint8Array): StoreTransaction {
  return StoreTransaction.decode(bytes);
}
