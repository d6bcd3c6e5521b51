import {
  RestartCondition,
  type RestartPolicy,
  ServiceObject,
  type ServiceSpec,
  UpdateConfig,
  UpdateFailureAction,
  UpdateOrder,
  UpdateState,
} from '../../src/api/gen/meshd/v1/objects.js';
import { MeshError } from '../../src/common/errors.js';

/** Swarm's defaults, in one place. */
export const DEFAULT_RESTART_DELAY_MS = 5_000;
export const DEFAULT_UPDATE_CONFIG: UpdateConfig = UpdateConfig.fromPartial({
  parallelism: 1,
  delayMs: 0,
  failureAction: UpdateFailureAction.UPDATE_FAILURE_ACTION_PAUSE,
  monitorMs: 5_000,
  maxFailureRatio: 0,
  order: UpdateOrder.UPDATE_ORDER_STOP_FIRST,
});

export function restartPolicyOf(policy: RestartPolicy | undefined): Required<RestartPolicy> {
  return {
    condition: policy?.condition || RestartCondition.RESTART_CONDITION_ANY,
    delayMs: policy === undefined ? DEFAULT_RESTART_DELAY_MS : policy.delayMs,
    maxAttempts: policy?.maxAttempts ?? 0,
    windowMs: policy?.windowMs ?? 0,
  };
}

/** An update config with unset enums and the monitor filled from the defaults. */
export function updateConfigOf(config: UpdateConfig | undefined): UpdateConfig {
  if (config === undefined) return DEFAULT_UPDATE_CONFIG;
  return {
    ...config,
    failureAction: config.failureAction || DEFAULT_UPDATE_CONFIG.failureAction,
    order: config.order || DEFAULT_UPDATE_CONFIG.order,
  };
}

export function newService(id: string, spec: ServiceSpec): ServiceObject {
  return ServiceObject.fromPartial({ meta: { id }, spec, specVersion: 1 });
}

/**
 * A spec change: the old spec is kept for rollback, the version moves on, and
 * the rolling updater takes over (tasks change in batches, not all at once).
 */
export function updateService(current: ServiceObject, spec: ServiceSpec, nowMs: number): ServiceObject {
  const next = structuredClone(current);
  next.previousSpec = current.spec;
  next.spec = spec;
  next.specVersion = current.specVersion + 1;
  next.updateStatus = {
    state: UpdateState.UPDATE_STATE_UPDATING,
    startedAt: { unixMs: nowMs },
    completedAt: undefined,
    message: 'update in progress',
    lastBatchAt: undefined,
  };
  return next;
}

/** Back to the previous spec, rolled out with the rollback config. */
export function rollbackService(
  current: ServiceObject,
  nowMs: number,
  why = 'manually requested rollback',
): ServiceObject {
  if (current.previousSpec === undefined)
    throw new MeshError(
      'FAILED_PRECONDITION',
      `service "${current.spec?.name}" has no previous spec to roll back to`,
    );
  const next = structuredClone(current);
  next.spec = current.previousSpec;
  next.previousSpec = current.spec;
  next.specVersion = current.specVersion + 1;
  next.updateStatus = {
    state: UpdateState.UPDATE_STATE_ROLLBACK_STARTED,
    startedAt: { unixMs: nowMs },
    completedAt: undefined,
    message: `rollback started: ${why}`,
    lastBatchAt: undefined,
  };
  return next;
}

/** Scaling is not an update: the version stays, the replicated reconciler adds or removes slots. */
export function scaleService(current: ServiceObject, replicas: number): ServiceObject {
  const next = structuredClone(current);
  next.spec!.replicas = replicas;
  return next;
}
