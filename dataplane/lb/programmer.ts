import type { DesiredState } from '../../src/api/gen/meshd/v1/dataplane.js';
import type { Programmer } from '../reconciler/reconciler.js';
import { desiredLbState } from './model.js';
import type { LbChange, LbState, LoadBalancer } from './types.js';

/** Adapts any LoadBalancer backend to the reconciler. */
export function lbProgrammer(lb: LoadBalancer): Programmer<LbState, LbChange> {
  return {
    name: `lb-${lb.backendName}`,
    desired: (state: DesiredState) => desiredLbState(state),
    dump: () => lb.dump(),
    plan: (desired, actual) => lb.plan(desired, actual),
    apply: (changes) => lb.apply(changes),
    describe: (model) => ({
      services: [...model.services.values()].sort((a, b) => a.key.localeCompare(b.key)),
      healthPorts: [...model.healthPorts.values()],
    }),
    describeChange: (change) => ({
      type: change.type,
      key: change.service.key,
      backends: change.service.backends,
    }),
  };
}
