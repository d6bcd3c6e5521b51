import type { ClusterSpec, ServiceSpec } from '../../src/api/gen/meshd/v1/objects.js';
import { NodeAvailability, NodeRole } from '../../src/api/gen/meshd/v1/objects.js';
import { ValidationError } from '../../src/common/errors.js';
import { isClusterWidePort, normalizedPort, portLabel } from '../allocator/config.js';
import { parsePrefix } from '../allocator/ipv4.js';
import type { StoreView } from '../store/types.js';

const DNS_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const LABEL_KEY = /^[A-Za-z0-9_.\-/]{1,128}$/;
export const MAX_LABELS = 64;
export const MAX_TASK_HISTORY = 100;
export const MAX_UNKNOWN_GRACE_MS = 3_600_000;

export function checkNetworkName(name: string): void {
  if (!DNS_LABEL.test(name))
    throw new ValidationError(
      'name',
      `network name must be 1-63 lowercase letters, digits or dashes (a DNS label), got ${JSON.stringify(name)}`,
    );
}

export function checkSubnet(subnet: string): void {
  if (subnet === '') return;
  const p = parsePrefix(subnet, 'subnet');
  if (p.length < 8 || p.length > 29)
    throw new ValidationError('subnet', `subnet must be a /8../29 IPv4 CIDR, got "${subnet}"`);
}

export function checkLabels(labels: Record<string, string>, field: string): void {
  const keys = Object.keys(labels);
  if (keys.length > MAX_LABELS)
    throw new ValidationError(field, `${field} has ${keys.length} labels; at most ${MAX_LABELS}`);
  for (const k of keys)
    if (!LABEL_KEY.test(k))
      throw new ValidationError(
        field,
        `${field} key ${JSON.stringify(k)} must be 1-128 of A-Z a-z 0-9 _ . - /`,
      );
}

export function checkAvailability(value: NodeAvailability): void {
  const ok = [
    NodeAvailability.NODE_AVAILABILITY_ACTIVE,
    NodeAvailability.NODE_AVAILABILITY_PAUSE,
    NodeAvailability.NODE_AVAILABILITY_DRAIN,
  ];
  if (!ok.includes(value))
    throw new ValidationError('availability', `availability must be active, pause or drain, got ${value}`);
}

export function checkRole(value: NodeRole): void {
  if (value !== NodeRole.NODE_ROLE_WORKER && value !== NodeRole.NODE_ROLE_MANAGER)
    throw new ValidationError('role', `role must be worker or manager, got ${value}`);
}

export function checkClusterSpec(spec: ClusterSpec | undefined): asserts spec is ClusterSpec {
  if (spec === undefined) throw new ValidationError('spec', 'spec is required (the whole new cluster spec)');
  if (spec.taskHistoryLimit > MAX_TASK_HISTORY)
    throw new ValidationError(
      'spec.task_history_limit',
      `spec.task_history_limit must be 0..${MAX_TASK_HISTORY}, got ${spec.taskHistoryLimit}`,
    );
  if (spec.unknownGraceMs > MAX_UNKNOWN_GRACE_MS)
    throw new ValidationError(
      'spec.unknown_grace_ms',
      `spec.unknown_grace_ms must be 0 (default) ..${MAX_UNKNOWN_GRACE_MS}, got ${spec.unknownGraceMs}`,
    );
  const start = spec.publishedPortStart;
  const end = spec.publishedPortEnd;
  if ((start !== 0 || end !== 0) && !(start >= 1 && end <= 65535 && start <= end))
    throw new ValidationError(
      'spec.published_port_start',
      `spec.published_port_start..published_port_end must be a range within 1..65535, got ${start}..${end}`,
    );
  if (spec.subnetSize !== 0 && !(spec.subnetSize >= 8 && spec.subnetSize <= 29))
    throw new ValidationError('spec.subnet_size', `spec.subnet_size must be 8..29, got ${spec.subnetSize}`);
  spec.defaultAddressPools.forEach((pool, i) => {
    parsePrefix(pool, `spec.default_address_pools[${i}]`);
  });
}

/**
 * checkPublishedPorts sees the ports the allocator has given out; a service
 * created a moment ago has requested its port but not been allocated yet.
 * Two such requests must not both be accepted.
 */
export function checkRequestedPorts(view: StoreView, spec: ServiceSpec, serviceId: string): void {
  const requested = new Map<string, string>();
  for (const s of view.list('service')) {
    if (s.meta?.id === serviceId) continue;
    for (const raw of s.spec?.endpoint?.ports ?? []) {
      const p = normalizedPort(raw);
      if (p.publishedPort !== 0 && isClusterWidePort(p))
        requested.set(portLabel(p.publishedPort, p.protocol), s.spec?.name ?? '');
    }
  }
  (spec.endpoint?.ports ?? []).forEach((raw, i) => {
    const p = normalizedPort(raw);
    const holder = requested.get(portLabel(p.publishedPort, p.protocol));
    if (p.publishedPort === 0 || !isClusterWidePort(p) || holder === undefined) return;
    const field = `endpoint.ports[${i}].published_port`;
    throw new ValidationError(
      field,
      `service "${spec.name}": ${field} ${portLabel(p.publishedPort, p.protocol)} is already published by service "${holder}"; choose another port or 0 for any free one`,
    );
  });
}
