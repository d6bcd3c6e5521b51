import {
  type StoreAction,
  StoreActionKind,
  StoreSnapshot,
  StoreTransaction,
  TaskState,
} from '../../src/api/gen/meshd/v1/objects.js';
import { MeshError, ValidationError } from '../../src/common/errors.js';
import {
  INDEX_NAMES,
  type IndexName,
  OBJECT_KINDS,
  type ObjectKind,
  type ObjectsByKind,
  type StoreEvent,
  type StoreEventAction,
  type StoreView,
  slotKey,
  type WatchFilter,
} from './types.js';

export interface StoreLimits {
  /** Actions in one transaction. */
  maxActionsPerTransaction: number;
  /** Encoded size of one transaction (Raft entries must stay small). */
  maxTransactionBytes: number;
  /** Terminated tasks kept per slot when no Cluster object says otherwise (swarm: 5). */
  defaultTaskHistoryLimit: number;
}

export const DEFAULT_STORE_LIMITS: StoreLimits = {
  maxActionsPerTransaction: 20_000,
  maxTransactionBytes: 4 * 1024 * 1024,
  defaultTaskHistoryLimit: 5,
};

type AnyObject = ObjectsByKind[ObjectKind];
type ObjectEvent = Extract<StoreEvent, { type: 'object' }>;
type Listener = (event: StoreEvent) => void;

interface Table {
  rows: Map<string, AnyObject>;
  /** index name -> key -> ids */
  indexes: Map<string, Map<string, Set<string>>>;
}

function indexKey(kind: ObjectKind, name: string, obj: AnyObject): string | undefined {
  switch (`${kind}.${name}`) {
    case 'node.hostname':
      return (obj as ObjectsByKind['node']).hostname || undefined;
    case 'service.name':
      return (obj as ObjectsByKind['service']).spec?.name || undefined;
    case 'task.service':
      return (obj as ObjectsByKind['task']).serviceId || undefined;
    case 'task.node':
      return (obj as ObjectsByKind['task']).nodeId || undefined;
    case 'task.slot': {
      const t = obj as ObjectsByKind['task'];
      return t.serviceId ? slotKey(t) : undefined;
    }
    case 'task.desired':
      return String((obj as ObjectsByKind['task']).desiredState);
    case 'network.name':
      return (obj as ObjectsByKind['network']).name || undefined;
    case 'cluster.name':
      return (obj as ObjectsByKind['cluster']).name || undefined;
    default:
      return undefined;
  }
}

/** Indexes whose keys must be unique across a table. */
const UNIQUE_INDEXES = new Set(['service.name', 'network.name', 'cluster.name']);

/**
 * The in-memory object store: a replicated state machine. Every replica that
 * applies the same transactions in the same order holds the same objects, so
 * nothing here reads a clock or random numbers: versions are the
 * transaction index, timestamps come from the transaction.
 */
export class MemoryStore implements StoreView {
  private tables = new Map<ObjectKind, Table>();
  private listeners = new Set<{ filter: WatchFilter; fn: Listener }>();
  private appliedIndex = 0;
  readonly limits: StoreLimits;

  constructor(limits: Partial<StoreLimits> = {}) {
    this.limits = { ...DEFAULT_STORE_LIMITS, ...limits };
    this.reset();
  }

  get index(): number {
    return this.appliedIndex;
  }

  get<K extends ObjectKind>(kind: K, id: string): ObjectsByKind[K] | undefined {
    return this.table(kind).rows.get(id) as ObjectsByKind[K] | undefined;
  }

  list<K extends ObjectKind>(kind: K): ObjectsByKind[K][] {
    return [...this.table(kind).rows.values()] as ObjectsByKind[K][];
  }

  find<K extends ObjectKind>(kind: K, name: IndexName<K>, key: string): ObjectsByKind[K][] {
    const ids = this.table(kind).indexes.get(name)?.get(key);
    if (ids === undefined) return [];
    const rows = this.table(kind).rows;
    return [...ids].sort().map((id) => rows.get(id) as ObjectsByKind[K]);
  }

  /** Calls `fn` with every event matching `filter`, after each commit. Returns the cancel function. */
  watch(filter: WatchFilter, fn: Listener): () => void {
    const entry = { filter, fn };
    this.listeners.add(entry);
    return () => {
      this.listeners.delete(entry);
    };
  }

  /**
   * Validates and applies one transaction, all or nothing. Throws a MeshError
   * (and changes nothing) when any action is invalid; every replica throws the
   * same error for the same transaction, so a Raft driver reports it to the
   * proposer and moves on.
   */
  apply(tx: StoreTransaction): number {
    this.checkLimits(tx);
    const index = this.appliedIndex + 1;
    const nowMs = tx.proposedAt?.unixMs ?? 0;
    const staged = new Map<string, { kind: ObjectKind; id: string; next: AnyObject | null }>();
    const current = (kind: ObjectKind, id: string): AnyObject | undefined => {
      const s = staged.get(`${kind}/${id}`);
      if (s !== undefined) return s.next ?? undefined;
      return this.table(kind).rows.get(id);
    };
    tx.actions.forEach((action, i) => {
      const { kind, object } = targetOf(action, i);
      const id = object.meta?.id ?? '';
      if (id === '')
        throw new ValidationError(
          `actions[${i}].${kind}.meta.id`,
          `actions[${i}]: ${kind} has no meta.id; every object needs an ID`,
        );
      const existing = current(kind, id);
      const where = `actions[${i}]: ${kind} ${id}`;
      let next: AnyObject | null;
      switch (action.kind) {
        case StoreActionKind.STORE_ACTION_KIND_CREATE:
          if (existing !== undefined) throw new MeshError('ALREADY_EXISTS', `${where} already exists`);
          next = stamp(object, index, nowMs, nowMs);
          break;
        case StoreActionKind.STORE_ACTION_KIND_UPDATE: {
          if (existing === undefined) throw new MeshError('NOT_FOUND', `${where} does not exist`);
          const have = existing.meta?.version?.index ?? 0;
          const want = object.meta?.version?.index ?? 0;
          if (have !== want)
            throw new MeshError(
              'VERSION_CONFLICT',
              `${where}: update is based on version ${want}, the stored version is ${have}; read it again and retry`,
              { details: { have, want } },
            );
          next = stamp(object, index, existing.meta?.createdAt?.unixMs ?? nowMs, nowMs);
          break;
        }
        case StoreActionKind.STORE_ACTION_KIND_DELETE:
          if (existing === undefined) throw new MeshError('NOT_FOUND', `${where} does not exist`);
          next = null;
          break;
        default:
          throw new ValidationError(
            `actions[${i}].kind`,
            `actions[${i}].kind must be CREATE, UPDATE or DELETE, got ${action.kind}`,
          );
      }
      if (next !== null) this.checkUnique(kind, next, i, current, staged);
      staged.set(`${kind}/${id}`, { kind, id, next });
    });

    const events: ObjectEvent[] = [];
    for (const { kind, id, next } of staged.values()) {
      const previous = this.table(kind).rows.get(id);
      const action: StoreEventAction =
        next === null ? 'delete' : previous === undefined ? 'create' : 'update';
      this.write(kind, id, next);
      events.push({
        type: 'object',
        kind,
        action,
        object: (next ?? previous)!,
        previous,
        index,
      } as ObjectEvent);
    }
    this.appliedIndex = index;
    events.push(...this.pruneTaskHistory(events, index));
    this.emit(events, index);
    return index;
  }

  /** Everything, for a Raft snapshot. */
  snapshot(): StoreSnapshot {
    return StoreSnapshot.fromPartial({
      index: this.appliedIndex,
      nodes: sortedRows(this.list('node')),
      services: sortedRows(this.list('service')),
      tasks: sortedRows(this.list('task')),
      networks: sortedRows(this.list('network')),
      clusters: sortedRows(this.list('cluster')),
      cas: sortedRows(this.list('ca')),
      certificates: sortedRows(this.list('certificate')),
    });
  }

  /** Replaces every object with the snapshot's; watchers get one `restored` event. */
  restore(snapshot: StoreSnapshot): void {
    this.reset();
    const put = <K extends ObjectKind>(kind: K, rows: ObjectsByKind[K][]) => {
      for (const row of rows) this.write(kind, row.meta?.id ?? '', structuredClone(row));
    };
    put('node', snapshot.nodes);
    put('service', snapshot.services);
    put('task', snapshot.tasks);
    put('network', snapshot.networks);
    put('cluster', snapshot.clusters);
    put('ca', snapshot.cas);
    put('certificate', snapshot.certificates);
    this.appliedIndex = snapshot.index;
    for (const l of this.listeners) l.fn({ type: 'restored', index: snapshot.index });
  }

  private reset(): void {
    this.tables.clear();
    for (const kind of OBJECT_KINDS) {
      const indexes = new Map<string, Map<string, Set<string>>>();
      for (const name of INDEX_NAMES[kind]) indexes.set(name, new Map());
      this.tables.set(kind, { rows: new Map(), indexes });
    }
    this.appliedIndex = 0;
  }

  private table(kind: ObjectKind): Table {
    return this.tables.get(kind)!;
  }

  private write(kind: ObjectKind, id: string, next: AnyObject | null): void {
    const table = this.table(kind);
    const previous = table.rows.get(id);
    for (const [name, byKey] of table.indexes) {
      const oldKey = previous === undefined ? undefined : indexKey(kind, name, previous);
      const newKey = next === null ? undefined : indexKey(kind, name, next);
      if (oldKey === newKey) continue;
      if (oldKey !== undefined) {
        const ids = byKey.get(oldKey);
        ids?.delete(id);
        if (ids?.size === 0) byKey.delete(oldKey);
      }
      if (newKey !== undefined) {
        const ids = byKey.get(newKey) ?? new Set<string>();
        ids.add(id);
        byKey.set(newKey, ids);
      }
    }
    if (next === null) table.rows.delete(id);
    else table.rows.set(id, next);
  }

  private checkUnique(
    kind: ObjectKind,
    next: AnyObject,
    i: number,
    current: (kind: ObjectKind, id: string) => AnyObject | undefined,
    staged: Map<string, { kind: ObjectKind; id: string; next: AnyObject | null }>,
  ): void {
    const id = next.meta?.id ?? '';
    for (const name of INDEX_NAMES[kind]) {
      if (!UNIQUE_INDEXES.has(`${kind}.${name}`)) continue;
      const key = indexKey(kind, name, next);
      if (key === undefined) continue;
      const holders = new Set(this.table(kind).indexes.get(name)?.get(key) ?? []);
      for (const s of staged.values()) if (s.kind === kind) holders.add(s.id);
      for (const other of holders) {
        if (other === id) continue;
        const obj = current(kind, other);
        if (obj !== undefined && indexKey(kind, name, obj) === key)
          throw new MeshError(
            'NAME_CONFLICT',
            `actions[${i}]: ${kind} ${name} "${key}" is already used by ${kind} ${other}; names must be unique`,
          );
      }
    }
  }

  private checkLimits(tx: StoreTransaction): void {
    const count = tx.actions.length;
    if (count > this.limits.maxActionsPerTransaction)
      throw new MeshError(
        'TRANSACTION_TOO_LARGE',
        `store transaction has ${count} actions; at most ${this.limits.maxActionsPerTransaction} are accepted in one transaction, split it`,
      );
    const bytes = StoreTransaction.encode(tx).finish().length;
    if (bytes > this.limits.maxTransactionBytes)
      throw new MeshError(
        'TRANSACTION_TOO_LARGE',
        `store transaction is ${bytes} bytes encoded; at most ${this.limits.maxTransactionBytes} bytes are accepted in one transaction, split it`,
      );
  }

  private historyLimit(): number {
    for (const c of this.table('cluster').rows.values()) {
      const limit = (c as ObjectsByKind['cluster']).spec?.taskHistoryLimit ?? 0;
      if (limit > 0) return limit;
    }
    return this.limits.defaultTaskHistoryLimit;
  }

  /**
   * Bounded task history: in every slot a transaction touched, terminated
   * tasks that are not wanted any more beyond the limit are deleted, oldest
   * first, inside the same index (deterministic on every replica).
   */
  private pruneTaskHistory(events: ObjectEvent[], index: number): ObjectEvent[] {
    const slots = new Set<string>();
    for (const e of events) if (e.kind === 'task' && e.action !== 'delete') slots.add(slotKey(e.object));
    const limit = this.historyLimit();
    const pruned: ObjectEvent[] = [];
    for (const key of [...slots].sort()) {
      const dead = this.find('task', 'slot', key)
        .filter((t) => isTerminated(t.status?.state ?? 0) && t.desiredState > TaskState.TASK_STATE_RUNNING)
        .sort(
          (a, b) =>
            (a.meta?.createdAt?.unixMs ?? 0) - (b.meta?.createdAt?.unixMs ?? 0) ||
            (a.meta?.version?.index ?? 0) - (b.meta?.version?.index ?? 0) ||
            cmp(a.meta?.id ?? '', b.meta?.id ?? ''),
        );
      for (const t of dead.slice(0, Math.max(0, dead.length - limit))) {
        this.write('task', t.meta!.id, null);
        pruned.push({ type: 'object', kind: 'task', action: 'delete', object: t, previous: t, index });
      }
    }
    return pruned;
  }

  private emit(events: ObjectEvent[], index: number): void {
    for (const l of [...this.listeners]) {
      for (const e of events) if (matches(l.filter, e)) l.fn(e);
      l.fn({ type: 'commit', index });
    }
  }
}

function isTerminated(state: TaskState): boolean {
  return state > TaskState.TASK_STATE_RUNNING;
}

function matches(filter: WatchFilter, e: ObjectEvent): boolean {
  if (filter.kinds !== undefined && !filter.kinds.includes(e.kind)) return false;
  if (filter.actions !== undefined && !filter.actions.includes(e.action)) return false;
  return filter.match === undefined || filter.match(e);
}

function targetOf(action: StoreAction, i: number): { kind: ObjectKind; object: AnyObject } {
  if (action.target === undefined)
    throw new ValidationError(
      `actions[${i}].target`,
      `actions[${i}] names no object; set one of node, service, task, network, cluster`,
    );
  return { kind: action.target.$case, object: action.target.value };
}

function stamp<T extends AnyObject>(object: T, index: number, createdMs: number, updatedMs: number): T {
  const copy = structuredClone(object);
  copy.meta = {
    id: object.meta!.id,
    version: { index },
    createdAt: { unixMs: createdMs },
    updatedAt: { unixMs: updatedMs },
  };
  return copy;
}

function sortedRows<T extends AnyObject>(rows: T[]): T[] {
  return rows.map((r) => structuredClone(r)).sort((a, b) => cmp(a.meta?.id ?? '', b.meta?.id ?? ''));
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
