import { Metadata, type Server, type ServiceError, status } from '@grpc/grpc-js';
import { type ControlServiceServer, ControlServiceService } from '../../src/api/gen/meshd/v1/control.js';
import { errorMessage, MeshError } from '../../src/common/errors.js';
import { subsystemLogger } from '../../src/common/logger.js';
import type { ControlApi } from './control-api.js';

const log = subsystemLogger('controlapi');

/** Metadata keys on an error status: the MeshError code and, for validation errors, the field. */
export const ERROR_CODE_METADATA_KEY = 'meshd-error-code';
export const ERROR_FIELD_METADATA_KEY = 'meshd-error-field';

const STATUS_BY_CODE: Record<string, status> = {
  INVALID_ARGUMENT: status.INVALID_ARGUMENT,
  NOT_FOUND: status.NOT_FOUND,
  ALREADY_EXISTS: status.ALREADY_EXISTS,
  NAME_CONFLICT: status.ALREADY_EXISTS,
  VERSION_CONFLICT: status.ABORTED,
  FAILED_PRECONDITION: status.FAILED_PRECONDITION,
  TRANSACTION_TOO_LARGE: status.RESOURCE_EXHAUSTED,
  NOT_LEADER: status.UNAVAILABLE,
  NO_LEADER: status.UNAVAILABLE,
};

/**
 * A thrown error as a gRPC status: MeshError codes map to the matching
 * status; Raft's "no leader / leader changed / timed out / stopped" become
 * UNAVAILABLE (retry, possibly elsewhere); anything else is INTERNAL. The
 * message is one line, for meshctl to print as is.
 */
export function toServiceError(err: unknown): Partial<ServiceError> {
  const metadata = new Metadata();
  const message = errorMessage(err).split('\n')[0]!.trim();
  if (!(err instanceof MeshError))
    return { code: status.INTERNAL, details: `internal error: ${message}`, metadata };
  metadata.set(ERROR_CODE_METADATA_KEY, err.code);
  const field = err.details['field'];
  if (typeof field === 'string') metadata.set(ERROR_FIELD_METADATA_KEY, field);
  const code =
    STATUS_BY_CODE[err.code] ?? (err.code.startsWith('RAFT_') ? status.UNAVAILABLE : status.INTERNAL);
  const details =
    code === status.UNAVAILABLE
      ? `${message} (the managers may be electing a leader; retry in a few seconds)`
      : message;
  return { code, details, metadata };
}

type Handlers = { [K in keyof ControlServiceServer]: ControlServiceServer[K] };

/** The gRPC handlers for ControlService over `api`. */
export function controlServiceImplementation(api: ControlApi): ControlServiceServer {
  const unary =
    <Req, Res>(name: string, fn: (req: Req) => Promise<Res>) =>
    (call: { request: Req }, callback: (err: Partial<ServiceError> | null, res?: Res) => void): void => {
      fn.call(api, call.request).then(
        (res) => callback(null, res),
        (err: unknown) => {
          const e = toServiceError(err);
          if (e.code === status.INTERNAL)
            log.error({ method: name, err: errorMessage(err) }, 'control call failed');
          callback(e);
        },
      );
    };
  const handlers: Handlers = {
    getCluster: unary('GetCluster', api.getCluster),
    updateCluster: unary('UpdateCluster', api.updateCluster),
    listNodes: unary('ListNodes', api.listNodes),
    getNode: unary('GetNode', api.getNode),
    updateNode: unary('UpdateNode', api.updateNode),
    deleteNode: unary('DeleteNode', api.deleteNode),
    createService: unary('CreateService', api.createService),
    listServices: unary('ListServices', api.listServices),
    getService: unary('GetService', api.getService),
    updateService: unary('UpdateService', api.updateService),
    rollbackService: unary('RollbackService', api.rollbackService),
    deleteService: unary('DeleteService', api.deleteService),
    listTasks: unary('ListTasks', api.listTasks),
    createNetwork: unary('CreateNetwork', api.createNetwork),
    listNetworks: unary('ListNetworks', api.listNetworks),
    getNetwork: unary('GetNetwork', api.getNetwork),
    deleteNetwork: unary('DeleteNetwork', api.deleteNetwork),
  };
  return handlers;
}

/** Adds ControlService to a server (the daemon's Unix socket and mTLS listeners). */
export function addControlService(server: Server, api: ControlApi): void {
  server.addService(ControlServiceService, controlServiceImplementation(api));
}
