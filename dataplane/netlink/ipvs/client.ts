import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { createGenericNetlink, FlagsGet, type GenericNetlinkSocket, genl } from 'netlink';
import { MeshError } from '../../../src/common/errors.js';
import {
  decodeDestination,
  decodeInfo,
  decodeService,
  decodeTimeouts,
  encodeDestination,
  encodeDestinationKey,
  encodeService,
  encodeServiceKey,
  encodeTimeouts,
} from './codec.js';
import { IPVS_GENL_NAME, IPVS_GENL_VERSION, IpvsCmd } from './constants.js';
import type {
  IpvsBatchFailure,
  IpvsDestination,
  IpvsInfo,
  IpvsRequest,
  IpvsService,
  IpvsServiceKey,
  IpvsTimeouts,
} from './types.js';
import { requestText, serviceKeyText } from './types.js';

// No execa and no logger here: this module also runs inside lab VMs, where
// loading them costs seconds under emulation. Failures surface as errors.
const run = promisify(execFile);

/** Raised when this kernel (or network namespace) has no IPVS; backend selection catches it. */
export const IPVS_UNAVAILABLE = 'IPVS_UNAVAILABLE';
const REQUEST_TIMEOUT_MS = 5_000;
/**
 * Requests in flight at once in a batch. Every ACK waits in the socket's
 * receive buffer until node reads it, and one costs ~1 KB of that buffer
 * (~208 KB by default): 256 in flight overflowed it (ENOBUFS) while loading
 * 5k services in an emulated guest.
 */
export const PIPELINE_DEPTH = 64;

export interface OpenIpvsOptions {
  /** Try `modprobe ip_vs` once when the family does not resolve (default true). */
  modprobe?: boolean;
}

/** The errno name of a netlink failure; netlink 0.3.0 only puts it in the message text. */
function errnoCode(err: unknown): string | undefined {
  if (typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string') {
    return err.code;
  }
  if (err instanceof Error) return /^Request rejected: ([A-Z0-9]+)$/.exec(err.message)?.[1];
  return undefined;
}

async function resolveFamily(socket: GenericNetlinkSocket): Promise<number | undefined> {
  try {
    const replies = await socket.ctrlRequest(
      genl.Commands.GET_FAMILY,
      { familyName: IPVS_GENL_NAME },
      { timeout: REQUEST_TIMEOUT_MS },
    );
    return replies[0]?.familyId;
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return undefined;
    throw err;
  }
}

/**
 * The IPVS generic-netlink family of the network namespace this process
 * runs in (netlink sockets act where they were opened). IPVS changes are
 * one message per service or destination; `batch` pipelines many. Dumps go
 * one at a time (the package groups multipart replies by arrival).
 */
export class IpvsClient {
  private constructor(
    private readonly socket: GenericNetlinkSocket,
    private readonly familyId: number,
  ) {}

  /** Resolves the family by name; throws MeshError IPVS_UNAVAILABLE when the kernel lacks it. */
  static async open(options: OpenIpvsOptions = {}): Promise<IpvsClient> {
    const socket = createGenericNetlink();
    // A receive error (ENOBUFS when replies overflow the buffer) is emitted as
    // an event; unheard, it aborts the whole process from inside the addon.
    // The requests whose replies were lost time out and fail on their own.
    socket.socket.on('error', () => {});
    try {
      let familyId = await resolveFamily(socket);
      let modprobeNote = '';
      if (familyId === undefined && (options.modprobe ?? true)) {
        try {
          await run('modprobe', ['ip_vs'], { timeout: REQUEST_TIMEOUT_MS });
        } catch (err) {
          const stderr = (err as { stderr?: string }).stderr?.trim();
          modprobeNote = `; "modprobe ip_vs" failed: ${stderr || (err instanceof Error ? err.message : String(err))}`;
        }
        familyId = await resolveFamily(socket);
      }
      if (familyId === undefined) {
        throw new MeshError(
          IPVS_UNAVAILABLE,
          `IPVS is not available: the generic-netlink family "${IPVS_GENL_NAME}" does not resolve in this kernel ` +
            `(CONFIG_IP_VS unset or module ip_vs not loadable${modprobeNote}); use the nftables load-balancer backend`,
        );
      }
      return new IpvsClient(socket, familyId);
    } catch (err) {
      socket.socket.close();
      throw err;
    }
  }

  close(): void {
    this.socket.socket.close();
  }

  private async request(cmd: number, payload: Buffer[], what: string, dump = false): Promise<Buffer[]> {
    try {
      const [messages] = await this.socket.request(this.familyId, cmd, IPVS_GENL_VERSION, payload, {
        timeout: REQUEST_TIMEOUT_MS,
        ...(dump ? { flags: FlagsGet.DUMP } : {}),
      });
      return messages.map((m) => m.data);
    } catch (err) {
      const code = errnoCode(err);
      throw new MeshError(
        code === undefined ? 'IPVS_REQUEST_FAILED' : `IPVS_${code}`,
        `IPVS ${what} failed: ${code ?? (err instanceof Error ? err.message : String(err))}`,
        { cause: err, details: { errno: code } },
      );
    }
  }

  async info(): Promise<IpvsInfo> {
    const [reply] = await this.request(IpvsCmd.GET_INFO, [], 'get info');
    if (reply === undefined) throw new MeshError('IPVS_EMPTY_REPLY', 'IPVS get info: no reply');
    return decodeInfo(reply);
  }

  async listServices(): Promise<IpvsService[]> {
    return (await this.request(IpvsCmd.GET_SERVICE, [], 'list services', true)).map(decodeService);
  }

  async listDestinations(key: IpvsServiceKey): Promise<IpvsDestination[]> {
    const replies = await this.request(
      IpvsCmd.GET_DEST,
      [encodeServiceKey(key)],
      `list destinations of ${serviceKeyText(key)}`,
      true,
    );
    return replies.map(decodeDestination);
  }

  async addService(service: IpvsService): Promise<void> {
    await this.send({ op: 'addService', service });
  }

  async updateService(service: IpvsService): Promise<void> {
    await this.send({ op: 'updateService', service });
  }

  async deleteService(key: IpvsServiceKey): Promise<void> {
    await this.send({ op: 'deleteService', key });
  }

  async addDestination(key: IpvsServiceKey, dest: IpvsDestination): Promise<void> {
    await this.send({ op: 'addDestination', key, dest });
  }

  async updateDestination(key: IpvsServiceKey, dest: IpvsDestination): Promise<void> {
    await this.send({ op: 'updateDestination', key, dest });
  }

  async deleteDestination(key: IpvsServiceKey, address: string, port: number): Promise<void> {
    await this.send({ op: 'deleteDestination', key, address, port });
  }

  private send(req: IpvsRequest): Promise<Buffer[]> {
    const [cmd, payload] = encodeRequest(req);
    return this.request(cmd, payload, requestText(req));
  }

  /**
   * Sends every request, up to PIPELINE_DEPTH in flight, in order: the
   * native socket writes its queue in order and the kernel handles each
   * message inside its sendmsg, so a service is created before the
   * destinations that follow it. A full load then costs about one round trip
   * per PIPELINE_DEPTH objects instead of one per object. Every request is
   * tried; the ones refused are returned (empty: all applied).
   */
  async batch(requests: readonly IpvsRequest[]): Promise<IpvsBatchFailure[]> {
    const failures: IpvsBatchFailure[] = [];
    let next = 0;
    const lane = async (): Promise<void> => {
      while (next < requests.length) {
        const index = next++;
        const req = requests[index] as IpvsRequest;
        try {
          await this.send(req);
        } catch (err) {
          const code = err instanceof MeshError ? err.code : 'IPVS_REQUEST_FAILED';
          failures.push({ index, code, message: err instanceof Error ? err.message : String(err) });
        }
      }
    };
    const lanes = Math.min(PIPELINE_DEPTH, requests.length);
    await Promise.all(Array.from({ length: lanes }, lane));
    return failures.sort((a, b) => a.index - b.index);
  }

  async getTimeouts(): Promise<IpvsTimeouts> {
    const [reply] = await this.request(IpvsCmd.GET_CONFIG, [], 'get timeouts');
    if (reply === undefined) throw new MeshError('IPVS_EMPTY_REPLY', 'IPVS get timeouts: no reply');
    return decodeTimeouts(reply);
  }

  async setTimeouts(timeouts: IpvsTimeouts): Promise<void> {
    await this.request(IpvsCmd.SET_CONFIG, [encodeTimeouts(timeouts)], 'set timeouts');
  }

  /** Deletes every service and destination (ipvsadm -C). */
  async flush(): Promise<void> {
    await this.request(IpvsCmd.FLUSH, [], 'flush');
  }
}

/** The command and payload of one change (encoders validate every field). */
export function encodeRequest(req: IpvsRequest): [number, Buffer[]] {
  switch (req.op) {
    case 'addService':
      return [IpvsCmd.NEW_SERVICE, [encodeService(req.service)]];
    case 'updateService':
      return [IpvsCmd.SET_SERVICE, [encodeService(req.service)]];
    case 'deleteService':
      return [IpvsCmd.DEL_SERVICE, [encodeServiceKey(req.key)]];
    case 'addDestination':
      return [IpvsCmd.NEW_DEST, [encodeServiceKey(req.key), encodeDestination(req.dest)]];
    case 'updateDestination':
      return [IpvsCmd.SET_DEST, [encodeServiceKey(req.key), encodeDestination(req.dest)]];
    case 'deleteDestination':
      return [IpvsCmd.DEL_DEST, [encodeServiceKey(req.key), encodeDestinationKey(req.address, req.port)]];
    default: {
      const never: never = req;
      throw new MeshError('IPVS_BAD_REQUEST', `unknown IPVS request ${JSON.stringify(never)}`);
    }
  }
}
