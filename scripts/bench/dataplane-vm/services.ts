import {
  emptyLbState,
  type LbState,
  type LbVirtualService,
  virtualServiceKey,
} from '../../../dataplane/lb/types.js';

/** Endpoints per service in the programming benchmarks (issue 7: "N services × 10 endpoints"). */
export const ENDPOINTS_PER_SERVICE = 10;

/** `count` VIP services (10.100.x.x:80, network scope "bench") × 10 endpoints, SNAT to 10.0.0.1. */
export function benchServices(count: number): LbState {
  const state = emptyLbState();
  const scope = { kind: 'network' as const, networkId: 'bench' };
  for (let i = 0; i < count; i++) {
    const address = `10.${100 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`;
    const backends = Array.from({ length: ENDPOINTS_PER_SERVICE }, (_, j) => ({
      address: `10.200.${(i >> 4) & 255}.${(i & 15) * 16 + j}`,
      port: 8080,
      weight: 1,
    }));
    const key = virtualServiceKey(scope, 'tcp', address, 80);
    state.services.set(key, {
      key,
      scope,
      protocol: 'tcp',
      address,
      port: 80,
      scheduler: 'random',
      snatAddress: '10.0.0.1',
      backends,
    });
  }
  return state;
}

/**
 * The i-th one-endpoint change of a run: the first endpoint of a service spread
 * over the table toggles between active (weight 1) and draining (weight 0).
 */
export function oneEndpointChange(
  services: readonly LbVirtualService[],
  i: number,
): { previous: LbVirtualService; next: LbVirtualService } {
  const previous = services[(i * 7919) % services.length]!;
  const next = {
    ...previous,
    backends: previous.backends.map((b, j) => (j === 0 ? { ...b, weight: b.weight === 1 ? 0 : 1 } : b)),
  };
  return { previous, next };
}
