import assert from 'node:assert/strict';
import { appendFileSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { BoundedLogFile } from '../../../dataplane/executor/bounded-log.js';
import {
  LogFileFollower,
  lastLines,
  MAX_LINE_BYTES,
  readTail,
  splitLines,
  taskLogPath,
} from '../../../dataplane/executor/log-reader.js';

const text = (lines: Buffer[]) => lines.map((l) => l.toString());

describe('reading task log files', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mdg-logread-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('lines are split at newlines and an unfinished line is carried to the next chunk', () => {
    const first = splitLines(Buffer.alloc(0), Buffer.from('a\nbb\ncc'));
    assert.deepEqual(text(first.lines), ['a', 'bb']);
    const second = splitLines(first.rest, Buffer.from('c\n'));
    assert.deepEqual(text(second.lines), ['ccc']);
    assert.equal(second.rest.length, 0);
  });

  test('a line longer than the bound is cut into pieces of the bound', () => {
    const { lines, rest } = splitLines(Buffer.alloc(0), Buffer.alloc(MAX_LINE_BYTES * 2 + 3, 0x61));
    assert.deepEqual(
      lines.map((l) => l.length),
      [MAX_LINE_BYTES, MAX_LINE_BYTES],
    );
    assert.equal(rest.length, 3);
  });

  test('tail N keeps the last N lines; an unfinished last line counts; undefined keeps all', () => {
    const content = Buffer.from('1\n2\n3\npartial');
    assert.deepEqual(text(lastLines(content, 2)), ['3', 'partial']);
    assert.deepEqual(text(lastLines(content, 0)), []);
    assert.deepEqual(text(lastLines(content, undefined)), ['1', '2', '3', 'partial']);
  });

  test('the tail reaches into the rotated file when the current one has too few lines', () => {
    const path = taskLogPath(dir, 'rot', 'stdout');
    writeFileSync(`${path}.1`, 'old1\nold2\n');
    writeFileSync(path, 'new1\n');
    assert.deepEqual(text(readTail(path, 2).lines), ['old2', 'new1']);
    assert.deepEqual(text(readTail(path, undefined).lines), ['old1', 'old2', 'new1']);
    assert.equal(readTail(path, 1).followFrom, 5);
  });

  test('a missing file has no lines (a task that never printed)', () => {
    assert.deepEqual(readTail(taskLogPath(dir, 'none', 'stderr'), 5), { lines: [], followFrom: 0 });
  });

  test('a follower returns complete lines written since, across a rotation', () => {
    const path = taskLogPath(dir, 'follow', 'stdout');
    writeFileSync(path, 'before\n');
    const f = new LogFileFollower(path, readTail(path, 0).followFrom);
    assert.deepEqual(text(f.poll()), []);
    appendFileSync(path, 'x1\nx2');
    assert.deepEqual(text(f.poll()), ['x1']);
    appendFileSync(path, '-end\n');
    renameSync(path, `${path}.1`);
    writeFileSync(path, 'fresh\n');
    const lines: string[] = [];
    for (let i = 0; i < 4; i++) lines.push(...text(f.poll()));
    assert.deepEqual(lines, ['x2-end', 'fresh']);
  });

  test('following the executor’s own bounded log file loses no line across its rotation', () => {
    const path = taskLogPath(dir, 'bounded', 'stdout');
    const log = new BoundedLogFile(path, 1024);
    const f = new LogFileFollower(path, 0);
    const got: string[] = [];
    const want: string[] = [];
    for (let i = 0; i < 60; i++) {
      const line = `line-${i}-${'z'.repeat(20)}`;
      want.push(line);
      log.write(Buffer.from(`${line}\n`));
      // Polled often enough that at most one rotation happens between polls.
      if (i % 5 === 4) for (let k = 0; k < 3; k++) got.push(...text(f.poll()));
    }
    for (let k = 0; k < 3; k++) got.push(...text(f.poll()));
    log.close();
    assert.deepEqual(got.join('\n'), want.join('\n'));
  });
});
