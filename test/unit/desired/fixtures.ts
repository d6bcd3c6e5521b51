import {
  type DesiredState,
  EndpointMode,
  EndpointState,
  Protocol,
  PublishMode,
} from '../../../src/api/gen/meshd/v1/dataplane.js';

/** A small valid state for node n1: network app + ingress, one service with two endpoints. */
export function sampleState(): DesiredState {
  return {
    version: 1,
    node: { id: 'n1', underlayAddress: '192.168.50.1', dataPathPort: 0, underlayMtu: 0 },
    networks: [
      {
        id: 'app',
        name: 'app',
        vni: 4097,
        subnet: '10.10.0.0/24',
        gateway: '10.10.0.1',
        mtu: 0,
        lbAddress: '10.10.0.251',
        peers: [{ nodeId: 'n2', underlayAddress: '192.168.50.2' }],
        ingress: false,
      },
      {
        id: 'ingress',
        name: 'ingress',
        vni: 4096,
        subnet: '10.255.0.0/24',
        gateway: '10.255.0.1',
        mtu: 0,
        lbAddress: '10.255.0.251',
        peers: [{ nodeId: 'n2', underlayAddress: '192.168.50.2' }],
        ingress: true,
      },
    ],
    sandboxes: [
      {
        taskId: 't1',
        taskName: 'web.1',
        serviceId: 'web',
        attachments: [
          { networkId: 'app', address: '10.10.0.11', mac: '02:42:0a:0a:00:0b' },
          { networkId: 'ingress', address: '10.255.0.11', mac: '02:42:0a:ff:00:0b' },
        ],
      },
    ],
    remoteEndpoints: [
      {
        networkId: 'app',
        address: '10.10.0.12',
        mac: '02:42:0a:0a:00:0c',
        vtep: '192.168.50.2',
        taskId: 't2',
      },
    ],
    services: [
      {
        id: 'web',
        name: 'web',
        vips: [
          { networkId: 'app', address: '10.10.0.100' },
          { networkId: 'ingress', address: '10.255.0.100' },
        ],
        ports: [
          {
            name: 'http',
            protocol: Protocol.PROTOCOL_TCP,
            targetPort: 8080,
            publishedPort: 30080,
            publishMode: PublishMode.PUBLISH_MODE_INGRESS,
            healthPort: 0,
          },
        ],
        endpoints: [
          endpoint('t1', 'n1', 'app', '10.10.0.11'),
          endpoint('t2', 'n2', 'app', '10.10.0.12'),
          endpoint('t1', 'n1', 'ingress', '10.255.0.11'),
          endpoint('t2', 'n2', 'ingress', '10.255.0.12'),
        ],
        endpointMode: EndpointMode.ENDPOINT_MODE_VIP,
        lb: undefined,
      },
    ],
    dns: undefined,
  };
}

export function endpoint(
  taskId: string,
  nodeId: string,
  networkId: string,
  address: string,
  state = EndpointState.ENDPOINT_STATE_ACTIVE,
) {
  return { taskId, taskName: taskId, nodeId, networkId, address, state };
}
