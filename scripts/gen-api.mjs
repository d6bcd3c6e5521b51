#!/usr/bin/env node
// Regenerates src/api/gen from the .proto files in src/api with buf + ts-proto.
// The generated code is committed; `--check` regenerates into a temporary
// directory and fails when the committed copy differs (stale or hand-edited).
import { execFileSync } from 'node:child_process';
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const genDir = join(root, 'src/api/gen');
const checkOnly = process.argv.includes('--check');

function listFiles(dir) {
  const out = [];
  let entries = [];
  try {
    entries = readdirSync(dir);
  } catch {
    return out;
  }
  for (const name of entries) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...listFiles(path));
    else out.push(path);
  }
  return out.sort();
}

const tmp = mkdtempSync(join(tmpdir(), 'meshd-gen-'));
try {
  const buf = join(root, 'node_modules/.bin/buf');
  for (const args of [['lint'], ['generate', '-o', tmp]]) {
    try {
      execFileSync(buf, args, { cwd: root, stdio: 'inherit' });
    } catch {
      console.error(
        `\`buf ${args[0]}\` failed (its findings are above); fix the .proto files and run \`npm run gen\` again`,
      );
      process.exit(1);
    }
  }
  const fresh = join(tmp, 'src/api/gen');
  if (checkOnly) {
    const want = listFiles(fresh).map((p) => relative(fresh, p));
    const have = listFiles(genDir).map((p) => relative(genDir, p));
    const problems = [];
    for (const f of want) {
      if (!have.includes(f)) problems.push(`missing: src/api/gen/${f}`);
      else if (!readFileSync(join(fresh, f)).equals(readFileSync(join(genDir, f))))
        problems.push(`stale: src/api/gen/${f}`);
    }
    for (const f of have) if (!want.includes(f)) problems.push(`extra: src/api/gen/${f}`);
    if (problems.length > 0) {
      console.error(`generated API code does not match the .proto files:\n  ${problems.join('\n  ')}`);
      console.error('run `npm run gen` and commit the result');
      process.exit(1);
    }
  } else {
    rmSync(genDir, { recursive: true, force: true });
    cpSync(fresh, genDir, { recursive: true });
    console.log(`generated ${listFiles(genDir).length} files in src/api/gen`);
  }
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
