/** The IPVS objects meshd reads and writes, in the kernel's own terms. */

export type IpvsProtocol = 'tcp' | 'udp' | 'sctp';

/** How a virtual service is matched: by protocol + VIP + port, or by a firewall mark. */
export type IpvsServiceKey =
  | { kind: 'inet'; protocol: IpvsProtocol; address: string; port: number }
  | { kind: 'fwmark'; fwmark: number };

/** Forwarding method of a destination (ipvsadm -m / -g / -i). */
export type IpvsForward = 'masq' | 'local' | 'tunnel' | 'route' | 'bypass';

export interface IpvsStats {
  conns: number;
  inPkts: number;
  outPkts: number;
  inBytes: number;
  outBytes: number;
  cps: number;
  inPps: number;
  outPps: number;
  inBps: number;
  outBps: number;
}

export interface IpvsService {
  key: IpvsServiceKey;
  /** rr, wrr, lc, wlc, sh, mh, ... (the kernel module ip_vs_<name> must exist). */
  scheduler: string;
  /**
   * Scheduler flags: for sh and mh, flag1 = fallback (skip unavailable
   * destinations), flag2 = port (hash the source port too); flag3 unused.
   */
  schedFlags: { flag1: boolean; flag2: boolean; flag3: boolean };
  /** Persistence (ipvsadm -p) in seconds; 0 = not persistent. */
  persistenceS: number;
  /** Persistence granularity as a host-order mask: 0xffffff00 = /24; 0xffffffff (one client) by default. */
  netmask: number;
  /** One-packet scheduling (UDP): each datagram scheduled on its own. */
  onePacket: boolean;
  /** Persistence engine name ("sip"), "" for none. */
  persistenceEngine: string;
  /** Present in dumps only. */
  stats?: IpvsStats;
}

export interface IpvsDestination {
  address: string;
  port: number;
  forward: IpvsForward;
  /** 0 = quiescent: no new connections, existing ones continue. */
  weight: number;
  upperThreshold: number;
  lowerThreshold: number;
  /** Present in dumps only. */
  activeConns?: number;
  inactiveConns?: number;
  persistConns?: number;
  stats?: IpvsStats;
}

/** Connection idle timeouts of a network namespace (ipvsadm --set tcp tcpfin udp); 0 = unchanged. */
export interface IpvsTimeouts {
  tcpS: number;
  tcpFinS: number;
  udpS: number;
}

export interface IpvsInfo {
  /** e.g. "1.2.1" */
  version: string;
  connTableSize: number;
}

export function serviceKeyText(key: IpvsServiceKey): string {
  return key.kind === 'fwmark' ? `fwmark ${key.fwmark}` : `${key.protocol} ${key.address}:${key.port}`;
}

/** One IPVS change, as `IpvsClient.batch` sends it (the client's one-object methods, as data). */
export type IpvsRequest =
  | { op: 'addService'; service: IpvsService }
  | { op: 'updateService'; service: IpvsService }
  | { op: 'deleteService'; key: IpvsServiceKey }
  | { op: 'addDestination'; key: IpvsServiceKey; dest: IpvsDestination }
  | { op: 'updateDestination'; key: IpvsServiceKey; dest: IpvsDestination }
  | { op: 'deleteDestination'; key: IpvsServiceKey; address: string; port: number };

/** A request of a batch that the kernel (or the encoder) refused. */
export interface IpvsBatchFailure {
  /** Index of the request in the batch. */
  index: number;
  /** MeshError code, e.g. IPVS_EEXIST. */
  code: string;
  message: string;
}

export function requestText(req: IpvsRequest): string {
  switch (req.op) {
    case 'addService':
      return `add ${serviceKeyText(req.service.key)}`;
    case 'updateService':
      return `update ${serviceKeyText(req.service.key)}`;
    case 'deleteService':
      return `delete ${serviceKeyText(req.key)}`;
    case 'addDestination':
      return `add ${req.dest.address}:${req.dest.port} to ${serviceKeyText(req.key)}`;
    case 'updateDestination':
      return `update ${req.dest.address}:${req.dest.port} in ${serviceKeyText(req.key)}`;
    case 'deleteDestination':
      return `delete ${req.address}:${req.port} from ${serviceKeyText(req.key)}`;
    default: {
      const never: never = req;
      throw new Error(`unknown IPVS request ${JSON.stringify(never)}`);
    }
  }
}
