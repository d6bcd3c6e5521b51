import type { DesiredState } from '../../../src/api/gen/meshd/v1/dataplane.js';
import type { Programmer } from '../../reconciler/reconciler.js';
import { desiredLbState } from '../model.js';
import type { LbChange, LbState } from '../types.js';
import type { IpvsLoadBalancer } from './backend.js';
import { ipvsOptionsFromDesired } from './translate.js';

/**
 * The IPVS backend for the reconciler. Like lbProgrammer, plus: the desired
 * state's per-service options (scheduler, timeouts, drain deadline) reach the
 * backend, and finished drains are swept before every dump (every sync).
 */
export function ipvsProgrammer(lb: IpvsLoadBalancer): Programmer<LbState, LbChange> {
  return {
    name: 'lb-ipvs',
    desired: (state: DesiredState) => {
      lb.setServiceOptions(ipvsOptionsFromDesired(state));
      return desiredLbState(state);
    },
    dump: async () => {
      await lb.sweepDrains();
      return lb.dump();
    },
    plan: (desired, actual) => lb.plan(desired, actual),
    apply: (changes) => lb.apply(changes),
    describe: (model) => ({
      backend: 'ipvs',
      services: [...model.services.values()].sort((a, b) => a.key.localeCompare(b.key)),
    }),
    describeChange: (change) => ({
      type: change.type,
      key: change.service.key,
      backends: change.service.backends,
    }),
  };
}
