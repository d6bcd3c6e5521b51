import { MeshError, ValidationError } from '../../../src/common/errors.js';
import { IPVS_UNAVAILABLE, IpvsClient } from '../../netlink/ipvs/client.js';

/** The configured choice: `auto` = IPVS when the kernel has it, nftables otherwise. */
export type LbBackendChoice = 'auto' | 'ipvs' | 'nftables';

export interface LbBackendSelection {
  backend: 'ipvs' | 'nftables';
  /** For `meshd dataplane dump` and the logs: why this backend is active. */
  reason: string;
}

export function parseLbBackendChoice(value: string, field = 'dataplane.lbBackend'): LbBackendChoice {
  if (value === 'auto' || value === 'ipvs' || value === 'nftables') return value;
  throw new ValidationError(field, `${field}: must be one of auto, ipvs, nftables; got "${value}"`);
}

/** Resolves the IPVS family (trying `modprobe ip_vs` first when needed) and closes the socket. */
export async function probeIpvs(): Promise<void> {
  (await IpvsClient.open({ modprobe: true })).close();
}

export async function selectLbBackend(
  choice: LbBackendChoice,
  probe: () => Promise<void> = probeIpvs,
): Promise<LbBackendSelection> {
  if (choice === 'nftables') return { backend: 'nftables', reason: 'configured: nftables' };
  try {
    await probe();
  } catch (err) {
    if (!(err instanceof MeshError) || err.code !== IPVS_UNAVAILABLE) throw err;
    if (choice === 'ipvs') {
      throw new MeshError(IPVS_UNAVAILABLE, `lb-backend is configured as "ipvs", but ${err.message}`, {
        cause: err,
      });
    }
    return { backend: 'nftables', reason: `auto: ${err.message}` };
  }
  return {
    backend: 'ipvs',
    reason: choice === 'ipvs' ? 'configured: ipvs' : 'auto: the IPVS generic-netlink family resolved',
  };
}
