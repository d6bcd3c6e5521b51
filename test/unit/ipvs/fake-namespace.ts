import type { IpvsNamespace, IpvsOps, ScopeNetfilter } from '../../../dataplane/lb/ipvs/namespace.js';
import type {
  IpvsBatchFailure,
  IpvsDestination,
  IpvsRequest,
  IpvsService,
  IpvsServiceKey,
  IpvsTimeouts,
} from '../../../dataplane/netlink/ipvs/types.js';
import { serviceKeyText } from '../../../dataplane/netlink/ipvs/types.js';
import { MeshError } from '../../../src/common/errors.js';

/**
 * An in-memory IPVS with the kernel's error rules (EEXIST, ESRCH, ENOENT),
 * for unit tests of the backend's decisions. The real IpvsNamespace is tested
 * against a real kernel in test/vm/.
 */
export class FakeIpvsNamespace implements IpvsNamespace, IpvsOps {
  services = new Map<string, { service: IpvsService; dests: Map<string, IpvsDestination> }>();
  timeouts: IpvsTimeouts = { tcpS: 900, tcpFinS: 120, udpS: 300 };
  sysctls = new Map<string, number>();
  netfilter: ScopeNetfilter | null = null;
  flushed: string[] = [];
  calls: string[] = [];

  async ipvs(): Promise<IpvsOps> {
    return this;
  }
  async setSysctls(values: Readonly<Record<string, number>>): Promise<void> {
    for (const [name, value] of Object.entries(values)) this.sysctls.set(name, value);
  }
  async syncNetfilter(spec: ScopeNetfilter): Promise<void> {
    this.netfilterSyncs++;
    this.netfilter = spec;
  }
  async flushUdpConntrack(address: string, port: number): Promise<number> {
    this.flushed.push(`${address}:${port}`);
    return 1;
  }
  async readSnatAddress(): Promise<string | null> {
    return this.netfilter?.snatAddress ?? null;
  }
  close(): void {}

  private svc(key: IpvsServiceKey) {
    const entry = this.services.get(serviceKeyText(key));
    if (entry === undefined) throw new MeshError('IPVS_ESRCH', `no service ${serviceKeyText(key)}`);
    return entry;
  }
  async listServices(): Promise<IpvsService[]> {
    return [...this.services.values()].map((e) => structuredClone(e.service));
  }
  async listDestinations(key: IpvsServiceKey): Promise<IpvsDestination[]> {
    return [...this.svc(key).dests.values()].map((d) => structuredClone(d));
  }
  async addService(service: IpvsService): Promise<void> {
    this.calls.push(`addService ${serviceKeyText(service.key)} ${service.scheduler}`);
    if (this.services.has(serviceKeyText(service.key))) throw new MeshError('IPVS_EEXIST', 'exists');
    this.services.set(serviceKeyText(service.key), { service: structuredClone(service), dests: new Map() });
  }
  async updateService(service: IpvsService): Promise<void> {
    this.calls.push(`updateService ${serviceKeyText(service.key)} ${service.scheduler}`);
    this.svc(service.key).service = structuredClone(service);
  }
  async deleteService(key: IpvsServiceKey): Promise<void> {
    this.calls.push(`deleteService ${serviceKeyText(key)}`);
    this.svc(key);
    this.services.delete(serviceKeyText(key));
  }
  async addDestination(key: IpvsServiceKey, dest: IpvsDestination): Promise<void> {
    this.calls.push(`addDestination ${serviceKeyText(key)} ${dest.address}:${dest.port} w${dest.weight}`);
    const s = this.svc(key);
    if (s.dests.has(`${dest.address}:${dest.port}`)) throw new MeshError('IPVS_EEXIST', 'exists');
    s.dests.set(`${dest.address}:${dest.port}`, {
      ...dest,
      activeConns: 0,
      inactiveConns: 0,
      persistConns: 0,
    });
  }
  async updateDestination(key: IpvsServiceKey, dest: IpvsDestination): Promise<void> {
    this.calls.push(`updateDestination ${serviceKeyText(key)} ${dest.address}:${dest.port} w${dest.weight}`);
    const old = this.svc(key).dests.get(`${dest.address}:${dest.port}`);
    if (old === undefined) throw new MeshError('IPVS_ENOENT', 'no dest');
    this.svc(key).dests.set(`${dest.address}:${dest.port}`, {
      ...old,
      ...dest,
      activeConns: old.activeConns ?? 0,
    });
  }
  async deleteDestination(key: IpvsServiceKey, address: string, port: number): Promise<void> {
    this.calls.push(`deleteDestination ${serviceKeyText(key)} ${address}:${port}`);
    if (!this.svc(key).dests.delete(`${address}:${port}`)) throw new MeshError('IPVS_ENOENT', 'no dest');
  }
  async getTimeouts(): Promise<IpvsTimeouts> {
    return { ...this.timeouts };
  }
  async setTimeouts(t: IpvsTimeouts): Promise<void> {
    this.calls.push(`setTimeouts ${t.tcpS} ${t.tcpFinS} ${t.udpS}`);
    this.timeouts = {
      tcpS: t.tcpS || this.timeouts.tcpS,
      tcpFinS: t.tcpFinS || this.timeouts.tcpFinS,
      udpS: t.udpS || this.timeouts.udpS,
    };
  }
  batches: number[] = [];
  netfilterSyncs = 0;
  async batch(requests: readonly IpvsRequest[]): Promise<IpvsBatchFailure[]> {
    this.batches.push(requests.length);
    const failures: IpvsBatchFailure[] = [];
    for (const [index, r] of requests.entries()) {
      try {
        if (r.op === 'addService') await this.addService(r.service);
        else if (r.op === 'updateService') await this.updateService(r.service);
        else if (r.op === 'deleteService') await this.deleteService(r.key);
        else if (r.op === 'addDestination') await this.addDestination(r.key, r.dest);
        else if (r.op === 'updateDestination') await this.updateDestination(r.key, r.dest);
        else await this.deleteDestination(r.key, r.address, r.port);
      } catch (err) {
        const e = err as MeshError;
        failures.push({ index, code: e.code, message: e.message });
      }
    }
    return failures;
  }
  /** What `ipvsadm -C` does. */
  flushAll(): void {
    this.services.clear();
  }
  setActiveConns(key: IpvsServiceKey, address: string, port: number, activeConns: number): void {
    const d = this.svc(key).dests.get(`${address}:${port}`);
    if (d !== undefined) d.activeConns = activeConns;
  }
}
