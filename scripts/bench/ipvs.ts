// npm run bench -- ipvs [--services 1000,5000] [--endpoints 10] [--json]
// In the VM lab (real IPVS, one VM, software emulation): programming time of
// meshd's IPVS netlink client against `ipvsadm -R` (the C tool loading the same
// rules in one process) for N services x M endpoints, and a one-endpoint change
// against one `ipvsadm -e`. Absolute numbers are TCG-emulated: read the ratios.
import { ok, runGuestSteps } from '../../test/vm/helpers.js';
import { labName, VmLab } from '../vmlab/lab.js';
import type { Benchmark } from './types.js';

interface ProgrammingTimes {
  meshdLoadMs: number;
  meshdOneChangeMs: number;
  meshdDumpServicesMs: number;
  dumpedServices: number;
  ipvsadmLoadMs: number;
  ipvsadmOneChangeMs: number;
}

const bench: Benchmark = {
  description: 'IPVS programming time in the VM lab: meshd netlink client vs ipvsadm -R, as ratios',
  async run(ctx) {
    const sizes = String(ctx.flags.get('services') ?? '1000,5000')
      .split(',')
      .map(Number);
    const endpoints = Number(ctx.flags.get('endpoints') ?? 10);
    for (const n of [...sizes, endpoints]) {
      if (!Number.isInteger(n) || n < 1 || n > 20_000) {
        throw new Error(`--services/--endpoints: integers 1..20000 expected, got ${n}`);
      }
    }
    const name = labName('mdvbench');
    ctx.log(`booting 1 VM (lab ${name})...`);
    const lab = await VmLab.up(1, { name });
    try {
      for (const services of sizes) {
        ctx.log(`programming ${services} services x ${endpoints} endpoints...`);
        const [result] = await runGuestSteps(
          lab,
          'vm1',
          [{ step: 'benchProgramming', services, endpoints }],
          1_800_000,
        );
        const t = ok<ProgrammingTimes>(result, 'benchProgramming');
        const context = { services, endpoints, vm: 'tcg' };
        ctx.report({ metric: 'load meshd', value: Math.round(t.meshdLoadMs), unit: 'ms', ...context });
        ctx.report({ metric: 'load ipvsadm -R', value: Math.round(t.ipvsadmLoadMs), unit: 'ms', ...context });
        ctx.report({
          metric: 'load ratio meshd/ipvsadm',
          value: +(t.meshdLoadMs / t.ipvsadmLoadMs).toFixed(2),
          unit: 'x',
          ...context,
        });
        ctx.report({
          metric: 'one-endpoint change meshd',
          value: +t.meshdOneChangeMs.toFixed(2),
          unit: 'ms',
          ...context,
        });
        ctx.report({
          metric: 'one-endpoint change ipvsadm -e',
          value: +t.ipvsadmOneChangeMs.toFixed(2),
          unit: 'ms',
          ...context,
        });
        ctx.report({
          metric: 'dump all services meshd',
          value: Math.round(t.meshdDumpServicesMs),
          unit: 'ms',
          ...context,
        });
      }
    } finally {
      await lab.down();
    }
  },
};

export default bench;
