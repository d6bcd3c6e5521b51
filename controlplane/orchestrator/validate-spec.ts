import { EndpointMode, Protocol, PublishMode } from '../../src/api/gen/meshd/v1/dataplane.js';
import {
  RestartCondition,
  ServiceMode,
  type ServiceSpec,
  type UpdateConfig,
  UpdateFailureAction,
  UpdateOrder,
} from '../../src/api/gen/meshd/v1/objects.js';
import { ValidationError } from '../../src/common/errors.js';
import { parseConstraints } from '../scheduler/constraints.js';

export const MAX_REPLICAS = 10_000;
const NAME = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/**
 * Checks a service spec before it is committed (the control API calls this),
 * so that nothing the planners read later can surprise them. Each error names
 * the field, the value, and what is accepted.
 */
export function validateServiceSpec(spec: ServiceSpec): void {
  const name = spec.name;
  const fail = (field: string, what: string, value: unknown): never => {
    throw new ValidationError(field, `service "${name}": ${field} ${what}, got ${JSON.stringify(value)}`);
  };
  if (!NAME.test(name)) fail('name', 'must be 1-63 lowercase letters, digits or dashes (a DNS label)', name);
  if (spec.mode !== ServiceMode.SERVICE_MODE_REPLICATED && spec.mode !== ServiceMode.SERVICE_MODE_GLOBAL)
    fail('mode', 'must be replicated or global', spec.mode);
  if (
    spec.mode === ServiceMode.SERVICE_MODE_REPLICATED &&
    !(Number.isInteger(spec.replicas) && spec.replicas >= 0 && spec.replicas <= MAX_REPLICAS)
  )
    fail('replicas', `must be an integer 0..${MAX_REPLICAS}`, spec.replicas);
  if (spec.mode === ServiceMode.SERVICE_MODE_GLOBAL && spec.replicas !== 0)
    fail('replicas', 'must be 0 for a global service', spec.replicas);
  const task = spec.task;
  if (task === undefined || task.command.length === 0)
    fail('task.command', 'must name a program to run', task?.command ?? []);
  task?.env.forEach((e, i) => {
    if (!/^[A-Za-z_][A-Za-z0-9_]*=/.test(e)) fail(`task.env[${i}]`, 'must look like KEY=value', e);
  });
  const restart = task?.restart;
  if (restart !== undefined && !Object.values(RestartCondition).includes(restart.condition))
    fail('task.restart.condition', 'must be none, on-failure or any', restart.condition);
  if ((task?.reservations?.nanoCpus ?? 0) < 0 || (task?.reservations?.memoryBytes ?? 0) < 0)
    fail('task.reservations', 'must not be negative', task?.reservations);
  parseConstraints(task?.placement?.constraints ?? []);
  task?.placement?.preferences.forEach((p, i) => {
    if (!/^node\.labels\.[A-Za-z0-9_.\-/]+$/.test(p.spread))
      fail(`task.placement.preferences[${i}].spread`, 'must look like node.labels.KEY', p.spread);
  });
  const endpointMode = spec.endpoint?.mode ?? EndpointMode.ENDPOINT_MODE_UNSPECIFIED;
  (spec.endpoint?.ports ?? []).forEach((p, i) => {
    const field = `endpoint.ports[${i}]`;
    if (!(p.targetPort >= 1 && p.targetPort <= 65535))
      fail(`${field}.target_port`, 'must be 1..65535', p.targetPort);
    if (p.publishedPort > 65535)
      fail(`${field}.published_port`, 'must be 0 (any free port) or 1..65535', p.publishedPort);
    if (![Protocol.PROTOCOL_UNSPECIFIED, Protocol.PROTOCOL_TCP, Protocol.PROTOCOL_UDP].includes(p.protocol))
      fail(`${field}.protocol`, 'must be tcp or udp', p.protocol);
    if (!Object.values(PublishMode).includes(p.publishMode))
      fail(`${field}.publish_mode`, 'must be ingress, host or local', p.publishMode);
    if (endpointMode === EndpointMode.ENDPOINT_MODE_DNSRR && p.publishMode !== PublishMode.PUBLISH_MODE_HOST)
      fail(
        `${field}.publish_mode`,
        'must be host with endpoint mode dnsrr (the routing mesh needs a VIP)',
        p.publishMode,
      );
  });
  checkUpdateConfig('update', spec.update, fail);
  checkUpdateConfig('rollback', spec.rollback, fail);
}

function checkUpdateConfig(
  field: string,
  c: UpdateConfig | undefined,
  fail: (field: string, what: string, value: unknown) => never,
): void {
  if (c === undefined) return;
  if (!(c.maxFailureRatio >= 0 && c.maxFailureRatio <= 1))
    fail(`${field}.max_failure_ratio`, 'must be between 0 and 1', c.maxFailureRatio);
  if (!Object.values(UpdateFailureAction).includes(c.failureAction))
    fail(`${field}.failure_action`, 'must be pause, continue or rollback', c.failureAction);
  if (field === 'rollback' && c.failureAction === UpdateFailureAction.UPDATE_FAILURE_ACTION_ROLLBACK)
    fail(
      `${field}.failure_action`,
      'cannot be rollback for a rollback (use pause or continue)',
      c.failureAction,
    );
  if (!Object.values(UpdateOrder).includes(c.order))
    fail(`${field}.order`, 'must be stop-first or start-first', c.order);
}
