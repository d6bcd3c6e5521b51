// npm run sim -- raft --seeds N [--seed S] [--json] [--stats]
// --stats prints one JSON line per seed to stderr (operations, crashes, snapshots, conf changes).
import { runRaftSimulation } from '../../controlplane/raft/sim/simulation.js';
import type { Simulation } from './types.js';

const simulation: Simulation = {
  description:
    'Raft cluster in virtual time: drops, duplicates, delays, partitions, crashes, torn writes, restarts, membership changes; safety after every step, progress after heal, linearizable KV history',
  runSeed(seed, flags) {
    const result = runRaftSimulation(seed);
    if (flags.has('stats')) console.error(JSON.stringify({ seed, ...result.stats }));
    return { steps: result.steps, violations: result.violations };
  },
};

export default simulation;
