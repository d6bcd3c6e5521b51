import { MeshError, ValidationError } from '../../src/common/errors.js';
import type { ObjectKind, ObjectsByKind, StoreView } from '../store/types.js';

type Named = 'node' | 'service' | 'network';

const NAME_INDEX = { node: 'hostname', service: 'name', network: 'name' } as const;
const LIST_HINT = { node: 'meshctl node ls', service: 'meshctl service ls', network: 'meshctl network ls' };
const WHAT = {
  node: 'node (ID, ID prefix or hostname)',
  service: 'service (ID, ID prefix or name)',
  network: 'network (ID, ID prefix or name)',
};

/**
 * Finds the object a person named: exact ID, then exact name (hostname for
 * nodes), then a unique ID prefix, as swarm does. Unknown or ambiguous
 * references are errors naming the field and how to list the candidates.
 */
export function resolveRef<K extends Named>(
  view: StoreView,
  kind: K,
  ref: string,
  field: string,
): ObjectsByKind[K] {
  if (ref === '') throw new ValidationError(field, `${field} must name a ${WHAT[kind]}, got ""`);
  const byId = view.get(kind, ref);
  if (byId !== undefined) return byId;
  const byName = view.find(kind, NAME_INDEX[kind] as never, ref) as ObjectsByKind[K][];
  if (byName.length === 1) return byName[0]!;
  const byPrefix = (view.list(kind) as ObjectsByKind[K][]).filter((o) => o.meta?.id.startsWith(ref));
  if (byPrefix.length === 1) return byPrefix[0]!;
  if (byPrefix.length > 1 || byName.length > 1)
    throw new ValidationError(
      field,
      `${field} "${ref}" matches ${Math.max(byPrefix.length, byName.length)} ${kind}s; give more of the ID`,
    );
  throw new MeshError('NOT_FOUND', `no ${kind} "${ref}"; \`${LIST_HINT[kind]}\` lists them`, {
    details: { field },
  });
}

/** `resolveRef` for an optional filter: "" means no filter. */
export function resolveOptional<K extends Named>(
  view: StoreView,
  kind: K,
  ref: string,
  field: string,
): ObjectsByKind[K] | undefined {
  return ref === '' ? undefined : resolveRef(view, kind, ref, field);
}

export function idOf(obj: ObjectsByKind[ObjectKind]): string {
  return obj.meta?.id ?? '';
}
