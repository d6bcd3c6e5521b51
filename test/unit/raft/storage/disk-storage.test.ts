import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { decodeConfChange } from '../../../../controlplane/raft/core/conf-change.js';
import type { Entry } from '../../../../controlplane/raft/core/types.js';
import { DiskStorage, forceNewCluster } from '../../../../controlplane/raft/storage/disk-storage.js';

const dirs: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'meshd-storage-'));
  dirs.push(d);
  return d;
}
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const founders = { voters: ['a', 'b', 'c'], learners: [] };

function entries(from: number, to: number, term: number): Entry[] {
  const out: Entry[] = [];
  for (let i = from; i <= to; i++) out.push({ index: i, term, type: 'normal', data: Buffer.from(`v${i}`) });
  return out;
}

describe('DiskStorage', () => {
  it('a new directory starts from the bootstrap membership and survives a restart', async () => {
    const dir = tempDir();
    const s = await DiskStorage.open(dir, { bootstrap: founders });
    assert.deepEqual(s.initialState().confState, founders);
    await s.close();
    const again = await DiskStorage.open(dir);
    assert.deepEqual(again.initialState().confState, founders);
    await again.close();
  });

  it('a new cluster logs its founders as the first committed entries, so a manager that joins later learns them', async () => {
    const dir = tempDir();
    const s = await DiskStorage.open(dir, { bootstrap: { voters: ['a'], learners: ['l'] } });
    assert.equal(s.firstIndex(), 1);
    const logged = s.entries(1, s.lastIndex() + 1, 0);
    assert.deepEqual(
      logged.map((e) => ({ index: e.index, term: e.term, change: decodeConfChange(e.data) })),
      [
        { index: 1, term: 1, change: { type: 'addVoter', nodeId: 'a' } },
        { index: 2, term: 1, change: { type: 'addLearner', nodeId: 'l' } },
      ],
    );
    assert.deepEqual(s.currentHardState(), { term: 1, vote: null, commit: 2 });
    await s.close();
    const again = await DiskStorage.open(dir, { bootstrap: { voters: ['a'], learners: ['l'] } });
    assert.equal(again.lastIndex(), 2, 'bootstrapping is done once');
    await again.close();
  });

  it('restart reproduces entries, term, vote and commit', async () => {
    const dir = tempDir();
    const s = await DiskStorage.open(dir, { bootstrap: founders });
    await s.saveReady({
      entries: entries(1, 5, 1),
      hardState: { term: 1, vote: 'a', commit: 3 },
      mustSync: true,
    });
    await s.saveReady({
      entries: entries(4, 6, 2),
      hardState: { term: 2, vote: 'b', commit: 5 },
      mustSync: true,
    });
    await s.close();
    const r = await DiskStorage.open(dir);
    assert.deepEqual(r.initialState().hardState, { term: 2, vote: 'b', commit: 5 });
    assert.equal(r.lastIndex(), 6);
    assert.equal(r.term(3), 1);
    assert.equal(r.term(4), 2);
    assert.equal(Buffer.from(r.entries(6, 7, 1e9)[0]!.data).toString(), 'v6');
    await r.close();
  });

  it('a snapshot compacts the log, removes old segments, and restart resumes from it', async () => {
    const dir = tempDir();
    const s = await DiskStorage.open(dir, {
      bootstrap: founders,
      segmentBytes: 1024,
      keepEntriesAfterSnapshot: 10,
    });
    for (let i = 1; i <= 300; i += 10) {
      await s.saveReady({
        entries: entries(i, i + 9, 1),
        hardState: { term: 1, vote: 'a', commit: i + 9 },
        mustSync: true,
      });
    }
    const segmentsBefore = s.walSegmentCount();
    await s.createSnapshot(250, founders, Buffer.from('state@250'));
    assert.ok(s.walSegmentCount() < segmentsBefore);
    assert.equal(s.firstIndex(), 241);
    await s.close();
    const r = await DiskStorage.open(dir, { segmentBytes: 1024 });
    assert.equal(r.snapshot().metadata.index, 250);
    assert.equal(Buffer.from(r.snapshot().data).toString(), 'state@250');
    assert.equal(r.firstIndex(), 251);
    assert.equal(r.lastIndex(), 300);
    assert.equal(r.initialState().hardState.commit, 300);
    await r.close();
  });

  it('a snapshot received from the leader replaces the log and is kept across restarts', async () => {
    const dir = tempDir();
    const s = await DiskStorage.open(dir, { bootstrap: founders });
    await s.saveReady({
      entries: entries(1, 3, 1),
      hardState: { term: 1, vote: null, commit: 1 },
      mustSync: true,
    });
    const snapshot = {
      metadata: { index: 100, term: 5, confState: founders },
      data: Buffer.from('big state'),
    };
    await s.saveReady({
      snapshot,
      entries: [],
      hardState: { term: 5, vote: null, commit: 100 },
      mustSync: true,
    });
    await s.saveReady({ entries: entries(101, 102, 5), mustSync: true });
    await s.close();
    const r = await DiskStorage.open(dir);
    assert.equal(r.firstIndex(), 101);
    assert.equal(r.lastIndex(), 102);
    assert.equal(r.term(100), 5);
    await r.close();
  });

  it('a corrupt snapshot file stops the node with an error naming the file', async () => {
    const dir = tempDir();
    const s = await DiskStorage.open(dir, { bootstrap: founders });
    await s.saveReady({
      entries: entries(1, 5, 1),
      hardState: { term: 1, vote: null, commit: 5 },
      mustSync: true,
    });
    await s.createSnapshot(5, founders, Buffer.from('state'));
    await s.close();
    const snapDir = join(dir, 'snap');
    const newest = readdirSync(snapDir).sort().at(-1)!;
    const bytes = readFileSync(join(snapDir, newest));
    bytes[bytes.length - 6]! ^= 0xff;
    writeFileSync(join(snapDir, newest), bytes);
    await assert.rejects(DiskStorage.open(dir), new RegExp(`${newest}.*corrupt`));
  });

  it('WAL and snapshot files are 0600 in 0700 directories (they hold the CA root key), also after an older open', async () => {
    const dir = join(tempDir(), 'raft');
    const s = await DiskStorage.open(dir, { bootstrap: founders });
    await s.saveReady({
      entries: entries(1, 3, 1),
      hardState: { term: 1, vote: null, commit: 3 },
      mustSync: true,
    });
    await s.createSnapshot(3, founders, Buffer.from('state'));
    await s.close();
    const mode = (p: string) => statSync(p).mode & 0o777;
    // An earlier version left umask modes behind: the next open fixes them.
    chmodSync(join(dir, 'wal'), 0o755);
    for (const f of readdirSync(join(dir, 'wal'))) chmodSync(join(dir, 'wal', f), 0o644);
    await (await DiskStorage.open(dir)).close();
    for (const sub of ['wal', 'snap']) {
      assert.equal(mode(join(dir, sub)), 0o700, `${sub}/ mode`);
      const files = readdirSync(join(dir, sub));
      assert.ok(files.length > 0);
      for (const f of files) assert.equal(mode(join(dir, sub, f)), 0o600, `${sub}/${f} mode`);
    }
  });

  it('force-new-cluster keeps committed entries, drops uncommitted ones and removes every other member', async () => {
    const dir = tempDir();
    const s = await DiskStorage.open(dir, { bootstrap: founders });
    await s.saveReady({
      entries: entries(1, 8, 3),
      hardState: { term: 3, vote: 'a', commit: 6 },
      mustSync: true,
    });
    await s.close();
    const conf = await forceNewCluster(dir, 'a');
    assert.deepEqual(conf, { voters: ['a'], learners: [] });
    const r = await DiskStorage.open(dir);
    const hs = r.initialState().hardState;
    assert.equal(hs.commit, 8);
    const tail = r.entries(7, 9, 1e9);
    assert.deepEqual(
      tail.map((e) => (e.type === 'confChange' ? decodeConfChange(e.data) : null)),
      [
        { type: 'removeNode', nodeId: 'b' },
        { type: 'removeNode', nodeId: 'c' },
      ],
    );
    assert.equal(r.lastIndex(), 8);
    await r.close();
  });
});
