import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { type CAServiceServer, CAServiceService } from '../../../src/api/gen/meshd/v1/ca.js';
import { type ControlServiceServer, ControlServiceService } from '../../../src/api/gen/meshd/v1/control.js';
import {
  type LogsServiceServer,
  LogsServiceService,
  type SubscribeLogsResponse,
} from '../../../src/api/gen/meshd/v1/logs.js';
import {
  type NetworkObject,
  type Node,
  NodeAvailability,
  NodeRole,
  NodeState,
  type ServiceObject,
  type Task,
  TaskState,
} from '../../../src/api/gen/meshd/v1/objects.js';

/**
 * An in-process stand-in for meshd's socket: a ControlService over an
 * in-memory list of objects (the real one, controlplane/controlapi, has its
 * own tests), and the CA's join-token calls. Records every request.
 */
export class FakeMeshd {
  readonly dir = mkdtempSync(join(tmpdir(), 'meshctl-'));
  readonly socketPath = join(this.dir, 'meshd.sock');
  readonly requests: { method: string; request: unknown }[] = [];
  nodes: Node[] = [];
  services: ServiceObject[] = [];
  tasks: Task[] = [];
  networks: NetworkObject[] = [];
  workerToken = 'MESHTKN-1-aaaa-worker';
  /** Called on each ListTasks: lets a test move tasks forward between polls. */
  onListTasks: () => void = () => {};
  /** What SubscribeLogs streams; with `follow` the call then stays open until the client cancels. */
  logResponses: SubscribeLogsResponse[] = [];
  /** Set once a following SubscribeLogs call was cancelled by its client. */
  logsCancelled = false;
  private server = new grpc.Server();

  async start(): Promise<void> {
    this.server.addService(ControlServiceService, this.control());
    this.server.addService(CAServiceService, this.ca());
    this.server.addService(LogsServiceService, this.logs());
    await new Promise<void>((resolve, reject) =>
      this.server.bindAsync(`unix://${this.socketPath}`, grpc.ServerCredentials.createInsecure(), (err) =>
        err === null ? resolve() : reject(err),
      ),
    );
  }

  async stop(): Promise<void> {
    await new Promise<void>((resolve) => this.server.tryShutdown(() => resolve()));
    rmSync(this.dir, { recursive: true, force: true });
  }

  private logs(): LogsServiceServer {
    return {
      subscribeLogs: (call) => {
        this.requests.push({ method: 'SubscribeLogs', request: call.request });
        for (const r of this.logResponses) call.write(r);
        if (!call.request.follow) call.end();
        else call.on('cancelled', () => (this.logsCancelled = true));
      },
    };
  }

  addNode(id: string, hostname: string, role = NodeRole.NODE_ROLE_WORKER): Node {
    const n: Node = {
      meta: { id, version: { index: 7 }, createdAt: undefined, updatedAt: undefined },
      hostname,
      role,
      availability: NodeAvailability.NODE_AVAILABILITY_ACTIVE,
      labels: {},
      resources: undefined,
      addresses: [`10.0.0.${this.nodes.length + 1}:4242`],
      state: NodeState.NODE_STATE_READY,
      statusMessage: '',
      stateChangedAt: undefined,
      lbAttachments: [],
    };
    this.nodes.push(n);
    return n;
  }

  addTask(
    service: ServiceObject,
    slot: number,
    state: TaskState,
    nodeId = this.nodes[0]?.meta?.id ?? '',
  ): Task {
    const t: Task = {
      meta: {
        id: `task${service.meta?.id}${slot}`,
        version: { index: 1 },
        createdAt: undefined,
        updatedAt: undefined,
      },
      serviceId: service.meta?.id ?? '',
      slot,
      nodeId,
      desiredState: TaskState.TASK_STATE_RUNNING,
      status: { state, message: '', err: '', timestamp: { unixMs: 1_000 } },
      networks: [],
      specVersion: service.specVersion,
      spec: service.spec?.task,
      hostPorts: [],
      startAfter: undefined,
      createdByUpdate: false,
      restartAttempts: 0,
      restartWindowStart: undefined,
      replacesTaskId: '',
    };
    this.tasks.push(t);
    return t;
  }

  private record<Req, Res>(method: string, body: (req: Req) => Res): grpc.handleUnaryCall<Req, Res> {
    return (call, callback) => {
      this.requests.push({ method, request: call.request });
      try {
        callback(null, body(call.request));
      } catch (err) {
        callback(err as grpc.ServiceError);
      }
    };
  }

  private notFound(kind: string, name: string): grpc.ServiceError {
    return Object.assign(new Error(`${kind} "${name}" not found`), {
      code: grpc.status.NOT_FOUND,
      details: `${kind} "${name}" not found`,
      metadata: new grpc.Metadata(),
    });
  }

  private findNode(name: string): Node {
    const n = this.nodes.find((x) => x.meta?.id.startsWith(name) === true || x.hostname === name);
    if (n === undefined) throw this.notFound('node', name);
    return n;
  }

  private findService(name: string): ServiceObject {
    const s = this.services.find((x) => x.meta?.id.startsWith(name) === true || x.spec?.name === name);
    if (s === undefined) throw this.notFound('service', name);
    return s;
  }

  private control(): ControlServiceServer {
    return {
      getCluster: this.record('getCluster', () => ({ cluster: undefined })),
      updateCluster: this.record('updateCluster', () => ({ cluster: undefined })),
      listNodes: this.record('listNodes', () => ({ nodes: this.nodes })),
      getNode: this.record('getNode', (r) => ({ node: this.findNode(r.node) })),
      updateNode: this.record('updateNode', (r) => {
        const n = this.findNode(r.node);
        if (r.availability !== undefined) n.availability = r.availability;
        if (r.role !== undefined) n.role = r.role;
        Object.assign(n.labels, r.labelsAdd);
        for (const k of r.labelsRemove) delete n.labels[k];
        return { node: n };
      }),
      deleteNode: this.record('deleteNode', (r) => {
        const n = this.findNode(r.node);
        this.nodes = this.nodes.filter((x) => x !== n);
        return {};
      }),
      createService: this.record('createService', (r) => {
        if (r.spec?.task?.command.includes('--bad') === true)
          throw Object.assign(new Error('bad'), {
            code: grpc.status.INVALID_ARGUMENT,
            details: 'spec.task.command[0]: "--bad" is not an absolute path;\nuse /usr/bin/...',
            metadata: new grpc.Metadata(),
          });
        const s: ServiceObject = {
          meta: {
            id: `svc${this.services.length + 1}abcdefghijkl`,
            version: { index: 3 },
            createdAt: undefined,
            updatedAt: undefined,
          },
          spec: r.spec,
          previousSpec: undefined,
          specVersion: 1,
          updateStatus: undefined,
          vips: [],
          ports: r.spec?.endpoint?.ports ?? [],
          allocationMessage: '',
        };
        this.services.push(s);
        return { service: s };
      }),
      listServices: this.record('listServices', () => ({ services: this.services })),
      getService: this.record('getService', (r) => ({ service: this.findService(r.service) })),
      updateService: this.record('updateService', (r) => {
        const s = this.findService(r.service);
        s.previousSpec = s.spec;
        s.spec = r.spec;
        return { service: s };
      }),
      rollbackService: this.record('rollbackService', (r) => ({ service: this.findService(r.service) })),
      deleteService: this.record('deleteService', (r) => {
        const s = this.findService(r.service);
        this.services = this.services.filter((x) => x !== s);
        return {};
      }),
      listTasks: this.record('listTasks', (r) => {
        this.onListTasks();
        return { tasks: this.tasks.filter((t) => r.service === '' || t.serviceId === r.service) };
      }),
      createNetwork: this.record('createNetwork', (r) => {
        const n: NetworkObject = {
          meta: {
            id: `net${this.networks.length + 1}xxxxxxxxxxxx`,
            version: { index: 2 },
            createdAt: undefined,
            updatedAt: undefined,
          },
          name: r.name,
          driver: 'overlay',
          requestedSubnet: r.subnet,
          options: r.options,
          labels: r.labels,
          ingress: false,
          subnet: r.subnet || '10.0.1.0/24',
          gateway: '',
          vni: 4097,
          allocationMessage: '',
        };
        this.networks.push(n);
        return { network: n };
      }),
      listNetworks: this.record('listNetworks', () => ({ networks: this.networks })),
      getNetwork: this.record('getNetwork', (r) => {
        const n = this.networks.find(
          (x) => x.name === r.network || x.meta?.id.startsWith(r.network) === true,
        );
        if (n === undefined) throw this.notFound('network', r.network);
        return { network: n };
      }),
      deleteNetwork: this.record('deleteNetwork', () => ({})),
    };
  }

  private ca(): CAServiceServer {
    const unimplemented = this.record('unimplemented', () => {
      throw Object.assign(new Error('no'), {
        code: grpc.status.UNIMPLEMENTED,
        details: 'no',
        metadata: new grpc.Metadata(),
      });
    });
    return {
      getRootCaCertificate: unimplemented,
      issueNodeCertificate: unimplemented,
      nodeCertificateStatus: unimplemented,
      removeNode: this.record('removeNode', () => ({})),
      getJoinTokens: this.record('getJoinTokens', () => ({
        workerToken: this.workerToken,
        managerToken: 'MESHTKN-1-aaaa-manager',
        expiresAt: undefined,
      })),
      rotateRoot: unimplemented,
      getRootRotation: unimplemented,
      rotateJoinToken: this.record('rotateJoinToken', () => {
        this.workerToken = 'MESHTKN-1-aaaa-rotated';
        return { token: this.workerToken };
      }),
    };
  }
}

export { TaskState };
