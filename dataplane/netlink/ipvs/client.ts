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
import type { IpvsDestination, IpvsInfo, IpvsService, IpvsServiceKey, IpvsTimeouts } from './types.js';
import { serviceKeyText } from './types.js';

// No execa and no logger here: this module also runs inside lab VMs, where
// loading them costs seconds under emulation. Failures surface as errors.
const run = promisify(execFile);

/** Raised when this kernel (or network namespace) has no IPVS; backend selection catches it. */
export const IPVS_UNAVAILABLE = 'IPVS_UNAVAILABLE';
const REQUEST_TIMEOUT_MS = 5_000;

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
 * runs in (netlink sockets act where they were opened). One request at a
 * time per message; IPVS changes are one message per service or destination.
 */
export class IpvsClient {
  private constructor(
    private readonly socket: GenericNetlinkSocket,
    private readonly familyId: number,
  ) {}

  /** Resolves the family by name; throws MeshError IPVS_UNAVAILABLE when the kernel lacks it. */
  static async open(options: OpenIpvsOptions = {}): Promise<IpvsClient> {
    const socket = createGenericNetlink();
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
    await this.request(IpvsCmd.NEW_SERVICE, [encodeService(service)], `add ${serviceKeyText(service.key)}`);
  }

  async updateService(service: IpvsService): Promise<void> {
    await this.request(
      IpvsCmd.SET_SERVICE,
      [encodeService(service)],
      `update ${serviceKeyText(service.key)}`,
    );
  }

  async deleteService(key: IpvsServiceKey): Promise<void> {
    await this.request(IpvsCmd.DEL_SERVICE, [encodeServiceKey(key)], `delete ${serviceKeyText(key)}`);
  }

  async addDestination(key: IpvsServiceKey, dest: IpvsDestination): Promise<void> {
    const what = `add ${dest.address}:${dest.port} to ${serviceKeyText(key)}`;
    await this.request(IpvsCmd.NEW_DEST, [encodeServiceKey(key), encodeDestination(dest)], what);
  }

  async updateDestination(key: IpvsServiceKey, dest: IpvsDestination): Promise<void> {
    const what = `update ${dest.address}:${dest.port} in ${serviceKeyText(key)}`;
    await this.request(IpvsCmd.SET_DEST, [encodeServiceKey(key), encodeDestination(dest)], what);
  }

  async deleteDestination(key: IpvsServiceKey, address: string, port: number): Promise<void> {
    const what = `delete ${address}:${port} from ${serviceKeyText(key)}`;
    await this.request(IpvsCmd.DEL_DEST, [encodeServiceKey(key), encodeDestinationKey(address, port)], what);
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
