import type { rt } from 'netlink';
import { bufferToMac, decodeVxlanData, IFLA_INFO_DATA, IFLA_INFO_KIND, parseAttrs } from './codec.js';
import { NetlinkError } from './errors.js';
import type { LinkInfo, RouteInfo } from './types.js';

export function decodeScope(scope: rt.Route['scope']): RouteInfo['scope'] {
  switch (scope) {
    case 0:
    case 'UNIVERSE':
      return 'universe';
    case 253:
    case 'LINK':
      return 'link';
    case 254:
    case 'HOST':
      return 'host';
    default:
      return 'other';
  }
}

/** Decodes one RTM_NEWLINK reply; rejects a reply without index or name (a malformed message). */
export function decodeLink(m: {
  data: rt.Link;
  attrs: { ifname?: string; mtu?: number; address?: Buffer; master?: number; linkinfo?: Buffer };
}): LinkInfo {
  const { index } = m.data;
  const name = m.attrs.ifname;
  if (index === undefined || name === undefined) {
    throw new NetlinkError('dump links', `malformed link message (index ${index}, name ${name})`);
  }
  const info: LinkInfo = { index, name, mtu: m.attrs.mtu ?? 0, up: m.data.flags?.up === true };
  if (m.attrs.address !== undefined && m.attrs.address.length === 6) info.mac = bufferToMac(m.attrs.address);
  if (m.attrs.master !== undefined && m.attrs.master !== 0) info.masterIndex = m.attrs.master;
  if (m.attrs.linkinfo !== undefined) {
    const li = parseAttrs(m.attrs.linkinfo);
    const kind = li.get(IFLA_INFO_KIND);
    if (kind !== undefined) info.kind = kind.toString().replace(/\0+$/, '');
    const data = li.get(IFLA_INFO_DATA);
    if (info.kind === 'vxlan' && data !== undefined) info.vxlan = decodeVxlanData(data);
  }
  return info;
}
