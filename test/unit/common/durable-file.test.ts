import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { writeFileDurable } from '../../../src/common/durable-file.js';

const dir = mkdtempSync(join(tmpdir(), 'durable-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('writes the content with the mode asked for, making the directory 0700', () => {
  const path = join(dir, 'sub', 'key.pem');
  writeFileDurable(path, 'secret\n', 0o600);
  assert.equal(readFileSync(path, 'utf8'), 'secret\n');
  assert.equal(statSync(path).mode & 0o777, 0o600);
  assert.equal(statSync(join(dir, 'sub')).mode & 0o777, 0o700);
});

test('replaces an existing file and leaves no temp file behind', () => {
  const path = join(dir, 'state.json');
  writeFileDurable(path, 'one', 0o644);
  writeFileDurable(path, 'two', 0o644);
  assert.equal(readFileSync(path, 'utf8'), 'two');
  assert.deepEqual(
    readdirSync(dir).filter((name) => name.startsWith('state.json')),
    ['state.json'],
  );
});

test('a leftover temp file with a looser mode does not loosen the result', () => {
  const path = join(dir, 'node.key');
  writeFileSync(`${path}.tmp-${process.pid}`, 'old', { mode: 0o666 });
  writeFileDurable(path, 'new', 0o600);
  assert.equal(statSync(path).mode & 0o777, 0o600);
});
