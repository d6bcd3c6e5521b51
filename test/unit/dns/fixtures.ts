/** Shared test data for the DNS tests: one desired state with two networks, and query builders. */
import { Packet, type Question, type Resource } from 'dns2';
import {
  DesiredState,
  EndpointMode,
  EndpointState,
  Protocol,
  PublishMode,
} from '../../../src/api/gen/meshd/v1/dataplane.js';

export const NET_APP = 'netapp000000000000000000a';
export const NET_DB = 'netdb0000000000000000000b';

/**
 * Networks: app 10.0.1.0/24, db 10.0.2.0/24. Services: web (vip on app, 3
 * tasks, one draining), cache (dnsrr on app, 3 tasks), pg (vip on db only).
 * Sandbox "client" is attached to app only.
 */
export function sampleState(version = 1): DesiredState {
  return DesiredState.fromPartial({
    version,
    networks: [
      { id: NET_APP, name: 'app', vni: 4097, subnet: '10.0.1.0/24', gateway: '10.0.1.1' },
      { id: NET_DB, name: 'db', vni: 4098, subnet: '10.0.2.0/24', gateway: '10.0.2.1' },
    ],
    sandboxes: [
      {
        taskId: 'client',
        taskName: 'client.1.aaa',
        serviceId: 'svcclient',
        attachments: [{ networkId: NET_APP, address: '10.0.1.50', mac: '02:42:0a:00:01:32' }],
      },
      {
        taskId: 'both',
        taskName: 'both.1.bbb',
        serviceId: 'svcboth',
        attachments: [
          { networkId: NET_DB, address: '10.0.2.60', mac: '02:42:0a:00:02:3c' },
          { networkId: NET_APP, address: '10.0.1.60', mac: '02:42:0a:00:01:3c' },
        ],
      },
    ],
    services: [
      {
        id: 'svcweb',
        name: 'web',
        endpointMode: EndpointMode.ENDPOINT_MODE_VIP,
        vips: [{ networkId: NET_APP, address: '10.0.1.2' }],
        ports: [
          {
            name: 'http',
            protocol: Protocol.PROTOCOL_TCP,
            targetPort: 80,
            publishedPort: 30080,
            publishMode: PublishMode.PUBLISH_MODE_INGRESS,
          },
        ],
        endpoints: [
          endpoint('web.1.t1', NET_APP, '10.0.1.11', EndpointState.ENDPOINT_STATE_ACTIVE),
          endpoint('web.2.t2', NET_APP, '10.0.1.12', EndpointState.ENDPOINT_STATE_ACTIVE),
          endpoint('web.3.t3', NET_APP, '10.0.1.13', EndpointState.ENDPOINT_STATE_DRAINING),
        ],
      },
      {
        id: 'svccache',
        name: 'cache',
        endpointMode: EndpointMode.ENDPOINT_MODE_DNSRR,
        ports: [{ name: 'redis', protocol: Protocol.PROTOCOL_TCP, targetPort: 6379 }],
        endpoints: [
          endpoint('cache.1.c1', NET_APP, '10.0.1.21', EndpointState.ENDPOINT_STATE_ACTIVE),
          endpoint('cache.2.c2', NET_APP, '10.0.1.22', EndpointState.ENDPOINT_STATE_ACTIVE),
          endpoint('cache.3.c3', NET_APP, '10.0.1.23', EndpointState.ENDPOINT_STATE_ACTIVE),
        ],
      },
      {
        id: 'svcpg',
        name: 'pg',
        endpointMode: EndpointMode.ENDPOINT_MODE_VIP,
        vips: [{ networkId: NET_DB, address: '10.0.2.2' }],
        endpoints: [endpoint('pg.1.p1', NET_DB, '10.0.2.11', EndpointState.ENDPOINT_STATE_ACTIVE)],
      },
    ],
    dns: { vipTtlS: 30, taskTtlS: 3 },
  });
}

function endpoint(taskName: string, networkId: string, address: string, state: EndpointState) {
  return { taskId: `id-${taskName}`, taskName, nodeId: 'node1', networkId, address, state };
}

/** A query encoded by dns2 (an independent encoder), optionally with an EDNS OPT record. */
export function queryBytes(
  name: string,
  type: number,
  options: { id?: number; edns?: boolean } = {},
): Buffer {
  const packet = new Packet();
  packet.header.id = options.id ?? 0x1234;
  packet.header.rd = 1;
  packet.questions.push({ name, type, class: Packet.CLASS.IN } as unknown as Question);
  if (options.edns === true)
    packet.additionals.push(
      (Packet.Resource.EDNS as unknown as (rdata: object[], opts: object) => Resource)([], {
        udpPayloadSize: 1232,
      }),
    );
  return packet.toBuffer();
}

export function decode(bytes: Buffer): Packet {
  return Packet.parse(bytes);
}
