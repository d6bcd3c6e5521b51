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
    task: { command: ['app'], restart: { condition: RestartCondition.RESTART_CONDITION_ANY, delayMs: 1000 } },
    update: {
      parallelism: 1,
      monitorMs: 2000,
      failureAction: UpdateFailureAction.UPDATE_FAILURE_ACTION_PAUSE,
      order: UpdateOrder.UPDATE_ORDER_STOP_FIRST,
    },
    ...extra,
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
