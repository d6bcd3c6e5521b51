import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { MeshError } from '../../../src/common/errors.js';
import type { IpvsBatchFailure, IpvsRequest } from '../../netlink/ipvs/types.js';
import type { AddrInfo } from '../../netlink/types.js';
import { IPVS_HELPER_METHODS, type IpvsHelperMethod, type IpvsHelperReply } from './helper-protocol.js';
import type { IpvsOps } from './namespace.js';

const HELPER_MAIN = fileURLToPath(new URL('./helper-main.ts', import.meta.url));
const PROJECT_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
/** Node + tsx start slowly under emulation (~15 s in the VM lab). */
const START_TIMEOUT_MS = 60_000;
const REQUEST_TIMEOUT_MS = 30_000;
/** Requests per helper call of a batch (a few seconds of kernel work in an emulated guest). */
const BATCH_CHUNK = 2_048;

/**
 * How to start the helper: node + tsx on the .ts entry, or plain node on a
 * prebuilt bundle of it named by MESHD_IPVS_HELPER_MAIN (the VM lab, where
 * tsx alone takes ~15 s to start); tests may also pass a command.
 */
export function defaultHelperCommand(): string[] {
  const bundle = process.env['MESHD_IPVS_HELPER_MAIN'];
  if (bundle !== undefined && bundle !== '') return [process.execPath, bundle];
  return [process.execPath, '--import', 'tsx', HELPER_MAIN];
}

/**
 * IpvsOps served by a helper process inside `netns`. One request at a time
 * per call; replies are matched by id, each with a timeout.
 */
export class IpvsHelper {
  private readonly pending = new Map<number, (reply: IpvsHelperReply) => void>();
  private nextId = 1;
  private exitError: MeshError | undefined;

  private constructor(
    readonly netns: string,
    private readonly child: ChildProcess,
  ) {
    child.on('message', (msg: IpvsHelperReply) => {
      const done = this.pending.get(msg.id);
      this.pending.delete(msg.id);
      done?.(msg);
    });
    child.on('exit', (code, signal) => {
      this.exitError = new MeshError(
        'IPVS_HELPER_EXITED',
        `IPVS helper in "${netns}" exited (code ${code}, signal ${signal})`,
      );
      for (const done of this.pending.values()) {
        done({ id: 0, ok: false, code: this.exitError.code, message: this.exitError.message });
      }
      this.pending.clear();
    });
  }

  static async start(netns: string, command: string[] = defaultHelperCommand()): Promise<IpvsHelper> {
    const child = spawn('ip', ['netns', 'exec', netns, ...command], {
      cwd: PROJECT_ROOT,
      stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
      env: { ...process.env, MESHD_IPVS_HELPER: netns },
    });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(
          new MeshError(
            'IPVS_HELPER_START',
            `IPVS helper in "${netns}" not ready within ${START_TIMEOUT_MS} ms`,
          ),
        );
      }, START_TIMEOUT_MS);
      child.once('message', () => {
        clearTimeout(timer);
        resolve();
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(
          new MeshError('IPVS_HELPER_START', `IPVS helper in "${netns}" exited at start (code ${code})`),
        );
      });
    });
    return new IpvsHelper(netns, child);
  }

  call(method: IpvsHelperMethod, args: unknown[]): Promise<unknown> {
    if (this.exitError !== undefined) return Promise.reject(this.exitError);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(
          new MeshError(
            'IPVS_HELPER_TIMEOUT',
            `IPVS ${method} in "${this.netns}": no reply in ${REQUEST_TIMEOUT_MS} ms`,
          ),
        );
      }, REQUEST_TIMEOUT_MS);
      this.pending.set(id, (reply) => {
        clearTimeout(timer);
        if (reply.ok) resolve(reply.result);
        else reject(new MeshError(reply.code, reply.message, { details: { netns: this.netns } }));
      });
      this.child.send({ id, method, args });
    });
  }

  ops(): IpvsOps {
    const ops: Record<string, unknown> = {};
    for (const method of IPVS_HELPER_METHODS) {
      if (method !== 'addresses') ops[method] = (...args: unknown[]) => this.call(method, args);
    }
    ops['batch'] = (requests: readonly IpvsRequest[]) => this.batch(requests);
    return ops as unknown as IpvsOps;
  }

  /** IPv4 addresses of the helper's namespace, by an rtnetlink dump. */
  async addresses(): Promise<AddrInfo[]> {
    return (await this.call('addresses', [])) as AddrInfo[];
  }

  /**
   * A batch in chunks, each one call with its own reply timeout: a full load
   * of 5k services is 55k requests, minutes under the VM lab's emulation.
   */
  private async batch(requests: readonly IpvsRequest[]): Promise<IpvsBatchFailure[]> {
    const failures: IpvsBatchFailure[] = [];
    for (let start = 0; start < requests.length; start += BATCH_CHUNK) {
      const chunk = requests.slice(start, start + BATCH_CHUNK);
      const result = (await this.call('batch', [chunk])) as IpvsBatchFailure[];
      for (const f of result) failures.push({ ...f, index: f.index + start });
    }
    return failures;
  }

  /** Closing the channel makes the helper exit by itself. */
  close(): void {
    if (this.child.connected) this.child.disconnect();
  }
}
