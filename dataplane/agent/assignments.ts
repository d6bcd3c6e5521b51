import type {
  DesiredState,
  Network,
  RemoteEndpoint,
  Sandbox,
  Service,
} from '../../src/api/gen/meshd/v1/dataplane.js';
import {
  AssignmentsKind,
  type AssignmentsResponse,
  type DesiredStateDelta,
} from '../../src/api/gen/meshd/v1/dispatcher.js';
import type { Task } from '../../src/api/gen/meshd/v1/objects.js';
import { MeshError } from '../../src/common/errors.js';

/**
 * What the managers last told this node: its tasks and its data-plane state,
 * rebuilt from one COMPLETE message and the INCREMENTAL ones after it. Pure.
 *
 * The delta rules mirror controlplane/dispatcher/delta.ts (lists keyed by
 * identity, an upsert replaces the whole element, result sorted by key); the
 * layering rule keeps the data plane from importing the control plane, and a
 * unit test checks both sides agree.
 */
export interface Assignments {
  version: number;
  tasks: ReadonlyMap<string, Task>;
  desired: DesiredState;
}

export function applyAssignments(current: Assignments | undefined, msg: AssignmentsResponse): Assignments {
  switch (msg.kind) {
    case AssignmentsKind.ASSIGNMENTS_KIND_COMPLETE: {
      if (msg.desiredState === undefined)
        throw new MeshError('BAD_ASSIGNMENTS', 'COMPLETE assignments without desired_state');
      const tasks = new Map(msg.upsertTasks.map((t) => [t.meta?.id ?? '', t]));
      return { version: msg.toVersion, tasks, desired: msg.desiredState };
    }
    case AssignmentsKind.ASSIGNMENTS_KIND_INCREMENTAL: {
      if (current === undefined)
        throw new MeshError('BAD_ASSIGNMENTS', 'INCREMENTAL assignments before any COMPLETE set');
      // An increment on top of a version we do not hold would silently corrupt
      // the node's view; the caller reconnects and gets a COMPLETE set.
      if (msg.fromVersion !== current.version)
        throw new MeshError(
          'BAD_ASSIGNMENTS',
          `INCREMENTAL assignments from version ${msg.fromVersion}, but this node holds version ${current.version}`,
        );
      const tasks = new Map(current.tasks);
      for (const id of msg.removeTasks) tasks.delete(id);
      for (const t of msg.upsertTasks) tasks.set(t.meta?.id ?? '', t);
      const desired =
        msg.desiredStateDelta === undefined
          ? { ...current.desired, version: msg.toVersion }
          : applyDesiredStateDelta(current.desired, msg.desiredStateDelta, msg.toVersion);
      return { version: msg.toVersion, tasks, desired };
    }
    default:
      throw new MeshError('BAD_ASSIGNMENTS', `assignments kind ${msg.kind} is not COMPLETE or INCREMENTAL`);
  }
}

function applyList<T>(key: (item: T) => string, before: T[], upsert: T[], remove: string[]): T[] {
  const byKey = new Map(before.map((item) => [key(item), item]));
  for (const k of remove) byKey.delete(k);
  for (const item of upsert) byKey.set(key(item), item);
  return [...byKey.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, item]) => item);
}

const remoteKey = (r: { networkId: string; address: string }) => `${r.networkId}/${r.address}`;

export function applyDesiredStateDelta(
  before: DesiredState,
  delta: DesiredStateDelta,
  version: number,
): DesiredState {
  return {
    version,
    node: delta.node ?? before.node,
    dns: delta.dns ?? before.dns,
    networks: applyList((n: Network) => n.id, before.networks, delta.upsertNetworks, delta.removeNetworks),
    sandboxes: applyList(
      (s: Sandbox) => s.taskId,
      before.sandboxes,
      delta.upsertSandboxes,
      delta.removeSandboxes,
    ),
    remoteEndpoints: applyList(
      (r: RemoteEndpoint) => remoteKey(r),
      before.remoteEndpoints,
      delta.upsertRemoteEndpoints,
      delta.removeRemoteEndpoints.map(remoteKey),
    ),
    services: applyList((s: Service) => s.id, before.services, delta.upsertServices, delta.removeServices),
  };
}
