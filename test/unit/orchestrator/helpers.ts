import { ClusterHarness } from '../../../controlplane/orchestrator/harness.js';
import type { ClusterSpec } from '../../../src/api/gen/meshd/v1/objects.js';
import {
  RestartCondition,
  ServiceMode,
  ServiceSpec,
  UpdateFailureAction,
  UpdateOrder,
} from '../../../src/api/gen/meshd/v1/objects.js';
import { SeededRng } from '../../../src/common/rng.js';

export function harness(
  nodes: number,
  clusterSpec: Partial<ClusterSpec> = {},
): { h: ClusterHarness; nodeIds: string[] } {
  const h = new ClusterHarness(new SeededRng(42), clusterSpec);
  const nodeIds = Array.from({ length: nodes }, (_, i) => h.addNode(`node-${i + 1}`));
  h.settle();
  return { h, nodeIds };
}

export function replicated(name: string, replicas: number, extra: Record<string, unknown> = {}): ServiceSpec {
  return ServiceSpec.fromPartial({
    name,
    mode: ServiceMode.SERVICE_MODE_REPLICATED,
    replicas,
    // A test's own task fields replace these one by one, not the whole task.
    task: {
      command: ['app'],
      restart: { condition: RestartCondition.RESTART_CONDITION_ANY, delayMs: 1000 },
      ...(extra['task'] as Record<string, unknown> | undefined),
    },
    update: {
      parallelism: 1,
      monitorMs: 2000,
      failureAction: UpdateFailureAction.UPDATE_FAILURE_ACTION_PAUSE,
      order: UpdateOrder.UPDATE_ORDER_STOP_FIRST,
    },
    ...Object.fromEntries(Object.entries(extra).filter(([key]) => key !== 'task')),
  });
}

export function global(name: string, constraints: string[] = []): ServiceSpec {
  return ServiceSpec.fromPartial({
    name,
    mode: ServiceMode.SERVICE_MODE_GLOBAL,
    task: {
      command: ['agent'],
      restart: { condition: RestartCondition.RESTART_CONDITION_ANY, delayMs: 1000 },
      placement: { constraints },
    },
  });
}
