// npm run sim -- raft --seeds N [--seed S] [--json]
import { runRaftSimulation } from '../../controlplane/raft/sim/simulation.js';
import type { Simulation } from './types.js';

const simulation: Simulation = {
  description:
    'Raft cluster in virtual time: drops, duplicates, delays, partitions, crashes, torn writes, restarts; safety after every step, progress after heal, linearizable KV history',
  runSeed(seed) {
    const result = runRaftSimulation(seed);
    return { steps: result.steps, violations: result.violations };
  },
};

export default simulation;
