import assert from 'node:assert/strict';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { ScriptRunner } from '../../../../controlplane/raft/sim/script.js';

// Scripted scenarios with golden transcripts. Regenerate after an intended
// change with: REWRITE=1 node --import tsx --test test/unit/raft/core/golden.test.ts
const dir = new URL('./testdata/', import.meta.url).pathname;
const rewrite = process.env.REWRITE === '1';

interface Block {
  command: string;
  expected: string;
}

/** Blocks are "command\n----\noutput\n" separated by blank lines; lines starting with # are comments. */
function parse(text: string): { preamble: string[]; blocks: Block[] } {
  const preamble: string[] = [];
  const blocks: Block[] = [];
  const lines = text.split('\n');
  let i = 0;
  while (i < lines.length) {
    const line = lines[i]!;
    if (line.trim() === '' || line.startsWith('#')) {
      if (blocks.length === 0) preamble.push(line);
      i++;
      continue;
    }
    const command = line;
    i++;
    if (lines[i] !== '----') throw new Error(`golden: expected ---- after "${command}" at line ${i + 1}`);
    i++;
    const out: string[] = [];
    while (i < lines.length && lines[i] !== '') out.push(lines[i++]!);
    blocks.push({ command, expected: out.join('\n') });
  }
  return { preamble, blocks };
}

describe('raft scripted scenarios (golden transcripts)', () => {
  for (const file of readdirSync(dir)
    .filter((f) => f.endsWith('.txt'))
    .sort()) {
    test(`transcript ${file} matches`, () => {
      const { preamble, blocks } = parse(readFileSync(dir + file, 'utf8'));
      const runner = new ScriptRunner();
      const rewritten: string[] = [];
      for (const block of blocks) {
        const actual = runner.run(block.command);
        if (rewrite) rewritten.push(`${block.command}\n----\n${actual}\n`);
        else assert.equal(actual, block.expected, `${file}: output of "${block.command}" changed`);
      }
      if (rewrite) {
        const head = preamble.filter((l) => l.startsWith('#')).join('\n');
        writeFileSync(dir + file, `${head}\n\n${rewritten.join('\n')}`);
      }
    });
  }
});
