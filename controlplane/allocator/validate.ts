import type { ServiceSpec } from '../../src/api/gen/meshd/v1/objects.js';
import { ValidationError } from '../../src/common/errors.js';
import type { StoreView } from '../store/types.js';
import { isClusterWidePort, normalizedPort, portLabel } from './config.js';

/**
 * For the control API, before a service spec is committed: a requested
 * published port that another service already holds (or that the spec
 * repeats) is refused here, with the holder's name, instead of leaving the
 * service half-allocated.
 */
export function checkPublishedPorts(view: StoreView, spec: ServiceSpec, serviceId: string): void {
  const taken = new Map<string, string>();
  for (const s of view.list('service')) {
    if (s.meta?.id === serviceId) continue;
    for (const p of s.ports)
      if (isClusterWidePort(p)) taken.set(portLabel(p.publishedPort, p.protocol), s.spec?.name ?? '');
  }
  const seen = new Set<string>();
  (spec.endpoint?.ports ?? []).forEach((raw, i) => {
    const p = normalizedPort(raw);
    const field = `endpoint.ports[${i}].published_port`;
    if (p.publishedPort > 65535)
      throw new ValidationError(
        field,
        `service "${spec.name}": ${field} must be 0 (any free port) or 1..65535, got ${p.publishedPort}`,
      );
    if (p.publishedPort === 0) return;
    const label = portLabel(p.publishedPort, p.protocol);
    if (seen.has(label))
      throw new ValidationError(field, `service "${spec.name}": ${field} ${label} is listed twice`);
    seen.add(label);
    const holder = taken.get(label);
    if (isClusterWidePort(p) && holder !== undefined)
      throw new ValidationError(
        field,
        `service "${spec.name}": ${field} ${label} is already published by service "${holder}"; choose another port or 0 for any free one`,
      );
  });
}
