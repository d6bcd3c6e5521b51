// Runs inside a lab VM (bundled by the host): `meshd dataplane ...` exactly as
// src/meshd/dataplane-cli.ts defines it, without the daemon commands, whose CA
// libraries do not survive bundling with packages external (they need their
// reflect polyfill loaded first; bundleForGuest refuses them).
import { Command } from 'commander';
import { addDataplaneCommands } from '../../../src/meshd/dataplane-cli.js';

const program = new Command('meshd');
addDataplaneCommands(program);
await program.parseAsync(process.argv);
