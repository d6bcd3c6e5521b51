/** Messages between the IPVS backend and its helper in another namespace (Node IPC, JSON). */
export const IPVS_HELPER_METHODS = [
  'listServices',
  'listDestinations',
  'addService',
  'updateService',
  'deleteService',
  'addDestination',
  'updateDestination',
  'deleteDestination',
  'getTimeouts',
  'setTimeouts',
  'batch',
  /** Not IPVS: the namespace's IPv4 addresses (rtnetlink dump), for the VIP link. */
  'addresses',
] as const;

export type IpvsHelperMethod = (typeof IPVS_HELPER_METHODS)[number];

export interface IpvsHelperRequest {
  id: number;
  method: IpvsHelperMethod;
  args: unknown[];
}

export type IpvsHelperReply =
  | { id: number; ok: true; result: unknown }
  | { id: number; ok: false; code: string; message: string };
