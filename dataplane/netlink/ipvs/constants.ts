/**
 * Numbers from the kernel's include/uapi/linux/ip_vs.h (stable ABI). Only the
 * ones meshd speaks are here; names follow the header without the prefix.
 */

export const IPVS_GENL_NAME = 'IPVS';
export const IPVS_GENL_VERSION = 1;

export const IpvsCmd = {
  NEW_SERVICE: 1,
  SET_SERVICE: 2,
  DEL_SERVICE: 3,
  GET_SERVICE: 4,
  NEW_DEST: 5,
  SET_DEST: 6,
  DEL_DEST: 7,
  GET_DEST: 8,
  SET_CONFIG: 12,
  GET_CONFIG: 13,
  GET_INFO: 15,
  ZERO: 16,
  FLUSH: 17,
} as const;

/** Top-level attributes of a command (IPVS_CMD_ATTR_*). */
export const CmdAttr = {
  SERVICE: 1,
  DEST: 2,
  TIMEOUT_TCP: 4,
  TIMEOUT_TCP_FIN: 5,
  TIMEOUT_UDP: 6,
} as const;

/** Top-level attributes of a GET_INFO reply (IPVS_INFO_ATTR_*). */
export const InfoAttr = { VERSION: 1, CONN_TAB_SIZE: 2 } as const;

/** Nested in CmdAttr.SERVICE (IPVS_SVC_ATTR_*). */
export const SvcAttr = {
  AF: 1,
  PROTOCOL: 2,
  ADDR: 3,
  PORT: 4,
  FWMARK: 5,
  SCHED_NAME: 6,
  FLAGS: 7,
  TIMEOUT: 8,
  NETMASK: 9,
  STATS: 10,
  PE_NAME: 11,
  STATS64: 12,
} as const;

/** Nested in CmdAttr.DEST (IPVS_DEST_ATTR_*). */
export const DestAttr = {
  ADDR: 1,
  PORT: 2,
  FWD_METHOD: 3,
  WEIGHT: 4,
  U_THRESH: 5,
  L_THRESH: 6,
  ACTIVE_CONNS: 7,
  INACT_CONNS: 8,
  PERSIST_CONNS: 9,
  STATS: 10,
  ADDR_FAMILY: 11,
  STATS64: 12,
  TUN_TYPE: 13,
  TUN_PORT: 14,
  TUN_FLAGS: 15,
} as const;

/** Nested in SvcAttr/DestAttr STATS and STATS64 (IPVS_STATS_ATTR_*). */
export const StatsAttr = {
  CONNS: 1,
  INPKTS: 2,
  OUTPKTS: 3,
  INBYTES: 4,
  OUTBYTES: 5,
  CPS: 6,
  INPPS: 7,
  OUTPPS: 8,
  INBPS: 9,
  OUTBPS: 10,
} as const;

/** IP_VS_SVC_F_*: service flags. SCHED1/2 mean fallback/port for the sh and mh schedulers. */
export const SvcFlag = {
  PERSISTENT: 0x0001,
  HASHED: 0x0002,
  ONEPACKET: 0x0004,
  SCHED1: 0x0008,
  SCHED2: 0x0010,
  SCHED3: 0x0020,
} as const;

/** IP_VS_CONN_F_FWD_MASK values (the forwarding method of a destination). */
export const FwdMethod = { MASQ: 0, LOCALNODE: 1, TUNNEL: 2, DROUTE: 3, BYPASS: 4 } as const;
export const FWD_MASK = 0x0007;

export const AF_INET = 2;
export const AF_INET6 = 10;
export const IPPROTO = { tcp: 6, udp: 17, sctp: 132 } as const;

/** IP_VS_SCHEDNAME_MAXLEN includes the NUL. */
export const SCHED_NAME_MAX_BYTES = 16;
/** IP_VS_PENAME_MAXLEN includes the NUL. */
export const PE_NAME_MAX_BYTES = 32;
/** sizeof(union nf_inet_addr): addresses travel in 16 bytes whatever the family. */
export const INET_ADDR_BYTES = 16;
