import type {
  CertificateAuthorityState,
  Cluster,
  NetworkObject,
  Node,
  NodeCertificate,
  ServiceObject,
  Task,
} from '../../src/api/gen/meshd/v1/objects.js';

/** The tables of the store, named like the `target` cases of a StoreAction. */
export interface ObjectsByKind {
  node: Node;
  service: ServiceObject;
  task: Task;
  network: NetworkObject;
  cluster: Cluster;
  /** The CA's replicated state (controlplane/ca): one object, holds the root key. */
  ca: CertificateAuthorityState;
  /** What the CA issued to each node, by node ID, plus removed nodes. */
  certificate: NodeCertificate;
}

export type ObjectKind = keyof ObjectsByKind;
export const OBJECT_KINDS: readonly ObjectKind[] = [
  'node',
  'service',
  'task',
  'network',
  'cluster',
  'ca',
  'certificate',
];

/** Secondary indexes; each maps an object to at most one key. */
export const INDEX_NAMES = {
  node: ['hostname'],
  service: ['name'],
  task: ['service', 'node', 'slot', 'desired'],
  network: ['name'],
  cluster: ['name'],
  ca: [],
  certificate: [],
} as const;

export type IndexName<K extends ObjectKind> = (typeof INDEX_NAMES)[K][number];

/**
 * Read access to the store. Returned objects are the stored ones: callers
 * must not mutate them; clone (`structuredClone`) before building an update.
 */
export interface StoreView {
  /** Index of the last transaction applied (0 for an empty store). */
  readonly index: number;
  get<K extends ObjectKind>(kind: K, id: string): ObjectsByKind[K] | undefined;
  list<K extends ObjectKind>(kind: K): ObjectsByKind[K][];
  /** Objects whose index `name` has key `key`, ordered by ID. */
  find<K extends ObjectKind>(kind: K, name: IndexName<K>, key: string): ObjectsByKind[K][];
}

export type StoreEventAction = 'create' | 'update' | 'delete';

export type StoreEvent =
  | {
      [K in ObjectKind]: {
        type: 'object';
        kind: K;
        action: StoreEventAction;
        object: ObjectsByKind[K];
        /** The object before an update or delete. */
        previous: ObjectsByKind[K] | undefined;
        index: number;
      };
    }[ObjectKind]
  | { type: 'commit'; index: number }
  | { type: 'restored'; index: number };

export interface WatchFilter {
  kinds?: readonly ObjectKind[];
  actions?: readonly StoreEventAction[];
  /** Extra predicate over object events (e.g. tasks of one node). */
  match?: (event: Extract<StoreEvent, { type: 'object' }>) => boolean;
}

/** Key of the slot a task belongs to: `service/slot` (replicated) or `service/@node` (global). */
export function slotKey(task: { serviceId: string; slot: number; nodeId: string }): string {
  return task.slot > 0 ? `${task.serviceId}/${task.slot}` : `${task.serviceId}/@${task.nodeId}`;
}
