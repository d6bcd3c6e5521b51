import { EndpointMode, type PortConfig, Protocol, PublishMode } from '../api/gen/meshd/v1/dataplane.js';
import {
  type EndpointSpec,
  type HealthCheck,
  type Placement,
  RestartCondition,
  ServiceMode,
  type ServiceSpec,
  type UpdateConfig,
  UpdateFailureAction,
  UpdateOrder,
} from '../api/gen/meshd/v1/objects.js';
import { ValidationError } from '../common/errors.js';
import { parseDurationMs, parseIntInRange, parseKeyValue, parseSizeBytes } from './units.js';

/**
 * `meshctl service create` flags → a ServiceSpec, with swarm's flag names and
 * defaults. Pure: every mistake is a ValidationError naming the flag, the value
 * and what is accepted; the control API validates again (it is the real edge).
 */
export interface ServiceFlags {
  name?: string;
  mode?: string;
  replicas?: string;
  publish?: string[];
  network?: string[];
  env?: string[];
  label?: string[];
  constraint?: string[];
  placementPref?: string[];
  replicasMaxPerNode?: string;
  endpointMode?: string;
  reserveCpu?: string;
  reserveMemory?: string;
  restartCondition?: string;
  restartDelay?: string;
  restartMaxAttempts?: string;
  restartWindow?: string;
  healthCmd?: string;
  healthInterval?: string;
  healthTimeout?: string;
  healthRetries?: string;
  healthStartPeriod?: string;
  updateParallelism?: string;
  updateDelay?: string;
  updateFailureAction?: string;
  updateMonitor?: string;
  updateMaxFailureRatio?: string;
  updateOrder?: string;
  rollbackParallelism?: string;
  rollbackDelay?: string;
  rollbackFailureAction?: string;
  rollbackMonitor?: string;
  rollbackMaxFailureRatio?: string;
  rollbackOrder?: string;
}

const SERVICE_NAME = /^[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$/;
export const MAX_REPLICAS = 10_000;

export function serviceSpecFromFlags(flags: ServiceFlags, command: string[]): ServiceSpec {
  const name = flags.name ?? '';
  if (!SERVICE_NAME.test(name))
    throw new ValidationError(
      'name',
      `--name must be 1-63 letters, digits or '-' (not at either end), got "${name}"`,
    );
  if (command.length === 0)
    throw new ValidationError(
      'command',
      `service "${name}": give the command to run after "--", e.g. -- /usr/bin/server --port 80`,
    );
  const mode = oneOf('mode', flags.mode ?? 'replicated', {
    replicated: ServiceMode.SERVICE_MODE_REPLICATED,
    global: ServiceMode.SERVICE_MODE_GLOBAL,
  });
  if (mode === ServiceMode.SERVICE_MODE_GLOBAL && flags.replicas !== undefined)
    throw new ValidationError('replicas', `service "${name}": --replicas applies to --mode replicated only`);
  const replicas =
    mode === ServiceMode.SERVICE_MODE_REPLICATED
      ? parseIntInRange('replicas', flags.replicas ?? '1', 0, MAX_REPLICAS)
      : 0;
  return {
    name,
    labels: Object.fromEntries((flags.label ?? []).map((l) => parseKeyValue('label', l))),
    mode,
    replicas,
    task: {
      command,
      env: (flags.env ?? []).map((e) => parseKeyValue('env', e).join('=')),
      reservations: {
        nanoCpus: flags.reserveCpu === undefined ? 0 : parseCpus(flags.reserveCpu),
        memoryBytes:
          flags.reserveMemory === undefined ? 0 : parseSizeBytes('reserve-memory', flags.reserveMemory),
      },
      restart: {
        condition: oneOf('restart-condition', flags.restartCondition ?? 'any', {
          none: RestartCondition.RESTART_CONDITION_NONE,
          'on-failure': RestartCondition.RESTART_CONDITION_ON_FAILURE,
          any: RestartCondition.RESTART_CONDITION_ANY,
        }),
        delayMs: parseDurationMs('restart-delay', flags.restartDelay ?? '5s'),
        maxAttempts: parseIntInRange('restart-max-attempts', flags.restartMaxAttempts ?? '0', 0, 1_000_000),
        windowMs: parseDurationMs('restart-window', flags.restartWindow ?? '0'),
      },
      health: healthFromFlags(flags),
      placement: placementFromFlags(flags),
      forceUpdate: 0,
    },
    networks: flags.network ?? [],
    endpoint: endpointFromFlags(name, flags),
    update: updateConfigFromFlags(
      'update',
      flags.updateParallelism,
      flags.updateDelay,
      flags.updateFailureAction,
      flags.updateMonitor,
      flags.updateMaxFailureRatio,
      flags.updateOrder,
    ),
    rollback: updateConfigFromFlags(
      'rollback',
      flags.rollbackParallelism,
      flags.rollbackDelay,
      flags.rollbackFailureAction,
      flags.rollbackMonitor,
      flags.rollbackMaxFailureRatio,
      flags.rollbackOrder,
    ),
  };
}

/**
 * `--publish` in both of swarm's forms:
 * short `8080:80`, `8080:80/udp`, `80` (published port allocated by the cluster);
 * long `published=8080,target=80,protocol=udp,mode=local,name=http`.
 */
export function parsePublish(text: string): PortConfig {
  const port: PortConfig = {
    name: '',
    protocol: Protocol.PROTOCOL_TCP,
    targetPort: 0,
    publishedPort: 0,
    publishMode: PublishMode.PUBLISH_MODE_INGRESS,
    healthPort: 0,
  };
  if (text.includes('=')) {
    for (const part of text.split(',')) {
      const [key, value] = parseKeyValue('publish', part);
      switch (key) {
        case 'published':
          port.publishedPort = portNumber(value, text);
          break;
        case 'target':
          port.targetPort = portNumber(value, text);
          break;
        case 'protocol':
          port.protocol = protocolOf(value, text);
          break;
        case 'mode':
          port.publishMode = oneOf('publish', value, {
            ingress: PublishMode.PUBLISH_MODE_INGRESS,
            host: PublishMode.PUBLISH_MODE_HOST,
            local: PublishMode.PUBLISH_MODE_LOCAL,
          });
          break;
        case 'name':
          if (!/^[a-z0-9][a-z0-9-]{0,14}$/.test(value))
            throw new ValidationError(
              'publish',
              `--publish name must be 1-15 lowercase letters, digits or '-', got "${value}"`,
            );
          port.name = value;
          break;
        case 'health-port':
          port.healthPort = portNumber(value, text);
          break;
        default:
          throw new ValidationError(
            'publish',
            `--publish "${text}": unknown key "${key}"; accepted: published, target, protocol, mode, name, health-port`,
          );
      }
    }
  } else {
    const m = /^(?:(\d+):)?(\d+)(?:\/(tcp|udp))?$/.exec(text);
    if (m === null)
      throw new ValidationError(
        'publish',
        `--publish must be PUBLISHED:TARGET[/tcp|udp] or published=..,target=..[,mode=ingress|host|local], got "${text}"`,
      );
    if (m[1] !== undefined) port.publishedPort = portNumber(m[1], text);
    port.targetPort = portNumber(m[2]!, text);
    if (m[3] !== undefined) port.protocol = protocolOf(m[3], text);
  }
  if (port.targetPort === 0)
    throw new ValidationError('publish', `--publish "${text}": target port is required`);
  if (port.healthPort !== 0 && port.publishMode !== PublishMode.PUBLISH_MODE_LOCAL)
    throw new ValidationError('publish', `--publish "${text}": health-port applies to mode=local only`);
  return port;
}

function endpointFromFlags(name: string, flags: ServiceFlags): EndpointSpec {
  const ports = (flags.publish ?? []).map(parsePublish);
  const seen = new Set<string>();
  for (const p of ports) {
    if (p.publishedPort === 0) continue;
    const key = `${p.publishedPort}/${p.protocol}`;
    if (seen.has(key))
      throw new ValidationError(
        'publish',
        `service "${name}": published port ${p.publishedPort}/${p.protocol === Protocol.PROTOCOL_UDP ? 'udp' : 'tcp'} given twice`,
      );
    seen.add(key);
  }
  const mode = oneOf('endpoint-mode', flags.endpointMode ?? 'vip', {
    vip: EndpointMode.ENDPOINT_MODE_VIP,
    dnsrr: EndpointMode.ENDPOINT_MODE_DNSRR,
  });
  if (
    mode === EndpointMode.ENDPOINT_MODE_DNSRR &&
    ports.some((p) => p.publishMode === PublishMode.PUBLISH_MODE_INGRESS)
  )
    throw new ValidationError(
      'endpoint-mode',
      `service "${name}": --endpoint-mode dnsrr cannot publish ports in ingress mode; use mode=host`,
    );
  return { mode, ports };
}

const CONSTRAINT = /^\s*node\.(id|hostname|role|labels\.[A-Za-z0-9_.-]+)\s*(==|!=)\s*(\S.*?)\s*$/;

function placementFromFlags(flags: ServiceFlags): Placement {
  for (const c of flags.constraint ?? [])
    if (!CONSTRAINT.test(c))
      throw new ValidationError(
        'constraint',
        `--constraint must be node.id|node.hostname|node.role|node.labels.KEY followed by == or != and a value, got "${c}"`,
      );
  const preferences = (flags.placementPref ?? []).map((p) => {
    const m = /^spread=(node\.labels\.[A-Za-z0-9_.-]+)$/.exec(p.trim());
    if (m === null)
      throw new ValidationError(
        'placement-pref',
        `--placement-pref must be spread=node.labels.KEY, got "${p}"`,
      );
    return { spread: m[1]! };
  });
  return {
    constraints: flags.constraint ?? [],
    preferences,
    maxReplicasPerNode:
      flags.replicasMaxPerNode === undefined
        ? 0
        : parseIntInRange('replicas-max-per-node', flags.replicasMaxPerNode, 0, MAX_REPLICAS),
  };
}

function healthFromFlags(flags: ServiceFlags): HealthCheck | undefined {
  if (flags.healthCmd === undefined) {
    for (const [flag, value] of [
      ['health-interval', flags.healthInterval],
      ['health-timeout', flags.healthTimeout],
      ['health-retries', flags.healthRetries],
      ['health-start-period', flags.healthStartPeriod],
    ] as const)
      if (value !== undefined) throw new ValidationError(flag, `--${flag} needs --health-cmd`);
    return undefined;
  }
  if (flags.healthCmd.trim() === '')
    throw new ValidationError('health-cmd', '--health-cmd must not be empty');
  return {
    // Like Docker's CMD-SHELL: the command runs through /bin/sh in the task's sandbox.
    test: ['/bin/sh', '-c', flags.healthCmd],
    intervalMs: atLeast(
      'health-interval',
      parseDurationMs('health-interval', flags.healthInterval ?? '30s'),
      100,
    ),
    timeoutMs: atLeast('health-timeout', parseDurationMs('health-timeout', flags.healthTimeout ?? '30s'), 1),
    retries: parseIntInRange('health-retries', flags.healthRetries ?? '3', 1, 100),
    startPeriodMs: parseDurationMs('health-start-period', flags.healthStartPeriod ?? '0'),
  };
}

function updateConfigFromFlags(
  prefix: 'update' | 'rollback',
  parallelism: string | undefined,
  delay: string | undefined,
  failureAction: string | undefined,
  monitor: string | undefined,
  maxFailureRatio: string | undefined,
  order: string | undefined,
): UpdateConfig {
  const ratio = Number(maxFailureRatio ?? '0');
  if (!(ratio >= 0 && ratio <= 1))
    throw new ValidationError(
      `${prefix}-max-failure-ratio`,
      `--${prefix}-max-failure-ratio must be a number 0..1, got "${maxFailureRatio}"`,
    );
  const actions: Record<string, UpdateFailureAction> = {
    pause: UpdateFailureAction.UPDATE_FAILURE_ACTION_PAUSE,
    continue: UpdateFailureAction.UPDATE_FAILURE_ACTION_CONTINUE,
  };
  if (prefix === 'update') actions['rollback'] = UpdateFailureAction.UPDATE_FAILURE_ACTION_ROLLBACK;
  return {
    parallelism: parseIntInRange(`${prefix}-parallelism`, parallelism ?? '1', 0, MAX_REPLICAS),
    delayMs: parseDurationMs(`${prefix}-delay`, delay ?? '0'),
    failureAction: oneOf(`${prefix}-failure-action`, failureAction ?? 'pause', actions),
    monitorMs: parseDurationMs(`${prefix}-monitor`, monitor ?? '5s'),
    maxFailureRatio: ratio,
    order: oneOf(`${prefix}-order`, order ?? 'stop-first', {
      'stop-first': UpdateOrder.UPDATE_ORDER_STOP_FIRST,
      'start-first': UpdateOrder.UPDATE_ORDER_START_FIRST,
    }),
  };
}

function oneOf<T>(flag: string, value: string, choices: Record<string, T>): T {
  const choice = Object.hasOwn(choices, value) ? choices[value] : undefined;
  if (choice === undefined)
    throw new ValidationError(
      flag,
      `--${flag} must be one of ${Object.keys(choices).join(', ')}; got "${value}"`,
    );
  return choice;
}

function portNumber(text: string, whole: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1 || n > 65535)
    throw new ValidationError('publish', `--publish "${whole}": a port must be 1..65535, got "${text}"`);
  return n;
}

function protocolOf(text: string, whole: string): Protocol {
  if (text === 'tcp') return Protocol.PROTOCOL_TCP;
  if (text === 'udp') return Protocol.PROTOCOL_UDP;
  throw new ValidationError('publish', `--publish "${whole}": protocol must be tcp or udp, got "${text}"`);
}

function parseCpus(text: string): number {
  const cpus = Number(text);
  if (!(cpus > 0 && cpus <= 1024))
    throw new ValidationError(
      'reserve-cpu',
      `--reserve-cpu must be a number of CPUs > 0 (e.g. 0.5), got "${text}"`,
    );
  return Math.round(cpus * 1e9);
}

function atLeast(flag: string, valueMs: number, minMs: number): number {
  if (valueMs < minMs)
    throw new ValidationError(flag, `--${flag} must be at least ${minMs} ms, got ${valueMs} ms`);
  return valueMs;
}
