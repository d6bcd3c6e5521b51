import assert from 'node:assert/strict';
import {
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  truncateSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { frameRecord, scanRecords } from '../../../../controlplane/raft/storage/record.js';
import { truncateWalAt, Wal, type WalEntry } from '../../../../controlplane/raft/storage/wal.js';
import { MeshError } from '../../../../src/common/errors.js';

const dirs: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'meshd-wal-'));
  dirs.push(d);
  return d;
}
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function entry(index: number, term: number, text = `e${index}`): WalEntry {
  return { index, term, body: Buffer.from(text) };
}

function segments(dir: string): string[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.wal'))
    .sort();
}

async function writeEntries(dir: string, from: number, to: number, opts = {}): Promise<void> {
  const { wal } = await Wal.open(dir, opts);
  for (let i = from; i <= to; i++) {
    wal.append([entry(i, 1)], Buffer.from(JSON.stringify({ commit: i })));
    await wal.sync();
  }
  await wal.close();
}

describe('WAL record framing', () => {
  it('round-trips payloads and reports a clean end', () => {
    const buf = Buffer.concat([frameRecord(Buffer.from('a')), frameRecord(Buffer.from('bb'))]);
    const scan = scanRecords(buf);
    assert.deepEqual(
      scan.payloads.map((p) => p.toString()),
      ['a', 'bb'],
    );
    assert.equal(scan.end.kind, 'clean');
  });

  it('treats every truncation point of the last record as a torn tail, never as corruption', () => {
    const good = frameRecord(Buffer.from('first'));
    const last = frameRecord(Buffer.from('second record'));
    for (let cut = 1; cut < last.length; cut++) {
      const scan = scanRecords(Buffer.concat([good, last.subarray(0, cut)]));
      assert.equal(scan.end.kind, 'torn', `cut at ${cut}`);
      assert.equal(scan.payloads.length, 1);
    }
  });

  it('treats a zero-filled tail as torn', () => {
    const scan = scanRecords(Buffer.concat([frameRecord(Buffer.from('x')), Buffer.alloc(100)]));
    assert.equal(scan.end.kind, 'torn');
    assert.equal(scan.payloads.length, 1);
  });

  it('reports a bit flip in any byte of a middle record as corruption', () => {
    const a = frameRecord(Buffer.from('aaaa'));
    const b = frameRecord(Buffer.from('bbbb'));
    const c = frameRecord(Buffer.from('cccc'));
    for (let i = 0; i < b.length; i++) {
      const damaged = Buffer.concat([a, b, c]);
      damaged[a.length + i]! ^= 0x10;
      const scan = scanRecords(damaged);
      assert.equal(scan.end.kind, 'corrupt', `flip at byte ${i}`);
      assert.equal(scan.payloads.length, 1);
    }
  });
});

describe('WAL', () => {
  it('restart reproduces entries and the newest hard state', async () => {
    const dir = tempDir();
    await writeEntries(dir, 1, 20);
    const { wal, recovery } = await Wal.open(dir);
    await wal.close();
    assert.deepEqual(
      recovery.entries.map((e) => e.index),
      Array.from({ length: 20 }, (_, i) => i + 1),
    );
    assert.equal(Buffer.from(recovery.entries[4]!.body).toString(), 'e5');
    assert.deepEqual(JSON.parse(Buffer.from(recovery.hardState!).toString()), { commit: 20 });
    assert.equal(recovery.tornBytes, 0);
  });

  it('group commit: many appends become durable with one sync', async () => {
    const dir = tempDir();
    const { wal } = await Wal.open(dir);
    for (let i = 1; i <= 100; i++) wal.append([entry(i, 1)]);
    await wal.sync();
    await wal.close();
    const { wal: again, recovery } = await Wal.open(dir);
    await again.close();
    assert.equal(recovery.entries.length, 100);
  });

  it('a later write at a lower index replaces the uncommitted suffix on replay', async () => {
    const dir = tempDir();
    const { wal } = await Wal.open(dir);
    wal.append([entry(1, 1), entry(2, 1), entry(3, 1), entry(4, 1)]);
    wal.append([entry(3, 2, 'new3')]);
    await wal.sync();
    await wal.close();
    const { wal: again, recovery } = await Wal.open(dir);
    await again.close();
    assert.deepEqual(
      recovery.entries.map((e) => [e.index, e.term]),
      [
        [1, 1],
        [2, 1],
        [3, 2],
      ],
    );
  });

  it('crash between write and fsync (simulated by truncation) keeps every complete record and cuts the rest', async () => {
    const dir = tempDir();
    await writeEntries(dir, 1, 10);
    const seg = join(dir, segments(dir)[0]!);
    const size = statSync(seg).size;
    truncateSync(seg, size - 5);
    const { wal, recovery } = await Wal.open(dir);
    // the cut lands in the last hard state record; the entry before it is whole
    assert.equal(recovery.entries.at(-1)!.index, 10);
    assert.deepEqual(JSON.parse(Buffer.from(recovery.hardState!).toString()), { commit: 9 });
    assert.ok(recovery.tornBytes > 0);
    // the WAL keeps working after the cut
    wal.append([entry(10, 1, 'again')]);
    await wal.sync();
    await wal.close();
    const { wal: w2, recovery: r2 } = await Wal.open(dir);
    await w2.close();
    assert.equal(Buffer.from(r2.entries.at(-1)!.body).toString(), 'again');
  });

  it('refuses a bit flip in the middle with an error naming file, offset and the recovery command', async () => {
    const dir = tempDir();
    await writeEntries(dir, 1, 10);
    const name = segments(dir)[0]!;
    const seg = join(dir, name);
    const bytes = readFileSync(seg);
    bytes[Math.floor(bytes.length / 2)]! ^= 0x01;
    writeFileSync(seg, bytes);
    await assert.rejects(Wal.open(dir), (err: unknown) => {
      assert.ok(err instanceof MeshError);
      assert.equal(err.code, 'WAL_CORRUPT');
      assert.match(err.message, new RegExp(name));
      assert.match(err.message, /byte offset \d+/);
      assert.match(err.message, /cli\.ts repair --wal-dir/);
      return true;
    });
    // the repair command keeps what precedes the damage
    const offset = (await Wal.open(dir).catch((e: MeshError) => e)) as MeshError;
    truncateWalAt(dir, name, offset.details['offset'] as number);
    const { wal, recovery } = await Wal.open(dir);
    await wal.close();
    assert.ok(recovery.entries.length > 0 && recovery.entries.length < 10);
  });

  it('rotates across many segments and replays them in order', async () => {
    const dir = tempDir();
    await writeEntries(dir, 1, 200, { segmentBytes: 512 });
    assert.ok(segments(dir).length > 10, `got ${segments(dir).length} segments`);
    const { wal, recovery } = await Wal.open(dir, { segmentBytes: 512 });
    await wal.close();
    assert.equal(recovery.entries.length, 200);
    assert.deepEqual(JSON.parse(Buffer.from(recovery.hardState!).toString()), { commit: 200 });
  });

  it('a torn tail in a segment that is not the last is corruption', async () => {
    const dir = tempDir();
    await writeEntries(dir, 1, 50, { segmentBytes: 512 });
    const first = join(dir, segments(dir)[0]!);
    truncateSync(first, statSync(first).size - 3);
    await assert.rejects(Wal.open(dir), /WAL is corrupt/);
  });

  it('refuses a missing middle segment', async () => {
    const dir = tempDir();
    await writeEntries(dir, 1, 50, { segmentBytes: 512 });
    rmSync(join(dir, segments(dir)[2]!));
    await assert.rejects(Wal.open(dir), /missing segment/);
  });

  it('after a snapshot mark, releasing drops old segments but keeps every entry above it and the hard state', async () => {
    const dir = tempDir();
    await writeEntries(dir, 1, 100, { segmentBytes: 512 });
    const { wal } = await Wal.open(dir, { segmentBytes: 512 });
    const before = wal.segmentCount();
    wal.appendSnapshot({ index: 80, term: 1 });
    await wal.sync();
    const removed = wal.releaseTo(80);
    assert.ok(removed > 0 && wal.segmentCount() < before);
    await wal.close();
    const { wal: again, recovery } = await Wal.open(dir, { segmentBytes: 512 });
    await again.close();
    assert.deepEqual(recovery.snapshot, { index: 80, term: 1 });
    assert.deepEqual(
      recovery.entries.map((e) => e.index),
      Array.from({ length: 20 }, (_, i) => i + 81),
    );
    assert.deepEqual(JSON.parse(Buffer.from(recovery.hardState!).toString()), { commit: 100 });
  });

  it('segment headers repeating an older snapshot mark do not drop entries above it', async () => {
    const dir = tempDir();
    const { wal } = await Wal.open(dir, { segmentBytes: 256 });
    wal.appendSnapshot({ index: 10, term: 1 });
    for (let i = 11; i <= 80; i++) {
      wal.append([entry(i, 1)]);
      await wal.sync();
    }
    await wal.close();
    const { wal: again, recovery } = await Wal.open(dir, { segmentBytes: 256 });
    await again.close();
    assert.ok(again.segmentCount() > 5);
    assert.deepEqual(
      recovery.entries.map((e) => e.index),
      Array.from({ length: 70 }, (_, i) => i + 11),
    );
  });

  it('a snapshot installed over a conflicting log replaces the whole log', async () => {
    const dir = tempDir();
    const { wal } = await Wal.open(dir);
    wal.append([entry(1, 1), entry(2, 1), entry(3, 1)]);
    wal.appendSnapshot({ index: 50, term: 4 });
    wal.append([entry(51, 4)]);
    await wal.sync();
    await wal.close();
    const { wal: again, recovery } = await Wal.open(dir);
    await again.close();
    assert.deepEqual(
      recovery.entries.map((e) => e.index),
      [51],
    );
  });
});
