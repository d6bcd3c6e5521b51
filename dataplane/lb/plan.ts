import type { LbChange, LbState, LbVirtualService } from './types.js';

/**
 * The minimum changes that turn `actual` into `desired` (pure, backend-neutral;
 * every backend's `plan` may delegate here). Cost is O(services) to compare,
 * but the result holds only what differs, so `apply` costs O(what changed).
 * Removals come first so a port that moves between services is freed first.
 */
export function planLbChanges(desired: LbState, actual: LbState): LbChange[] {
  const removals: LbChange[] = [];
  const others: LbChange[] = [];
  for (const [key, service] of actual.services)
    if (!desired.services.has(key)) removals.push({ type: 'remove-service', service });
  for (const [key, service] of desired.services) {
    const previous = actual.services.get(key);
    if (previous === undefined) others.push({ type: 'add-service', service });
    else if (!sameVirtualService(service, previous))
      others.push({ type: 'update-service', service, previous });
  }
  return [...removals, ...others];
}

export function sameVirtualService(a: LbVirtualService, b: LbVirtualService): boolean {
  if (
    a.key !== b.key ||
    a.protocol !== b.protocol ||
    a.address !== b.address ||
    a.port !== b.port ||
    a.scheduler !== b.scheduler ||
    a.snatAddress !== b.snatAddress ||
    a.backends.length !== b.backends.length
  )
    return false;
  return a.backends.every((backend, i) => {
    const other = b.backends[i];
    return (
      other !== undefined &&
      backend.address === other.address &&
      backend.port === other.port &&
      backend.weight === other.weight
    );
  });
}
