import assert from 'node:assert/strict';
import { createServer, type Server as NetServer, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { makeGenericClientConstructor } from '@grpc/grpc-js';
import type { RaftMessage } from '../../../../controlplane/raft/core/types.js';
import {
  GrpcTransport,
  type TransportHandler,
} from '../../../../controlplane/raft/transport/grpc-transport.js';
import { fromWire, toWire } from '../../../../controlplane/raft/transport/wire.js';
import {
  type RaftMessageType,
  RaftServiceClient,
  RaftServiceService,
  RaftMessage as WireMessage,
} from '../../../../src/api/gen/meshd/v1/raft.js';
import { waitFor } from '../../../lib/wait.js';
import { mintTlsFixture, type TlsFixture } from './tls-fixture.js';

const ctx = new Uint8Array([1, 2, 3]);
const entry = { term: 2, index: 7, type: 'normal' as const, data: new Uint8Array([9, 9]) };
const conf = { term: 2, index: 8, type: 'confChange' as const, data: new Uint8Array([1]) };
const base = { from: 'a', to: 'b', term: 3 };

const EVERY_TYPE: RaftMessage[] = [
  { ...base, type: 'preVote', lastLogIndex: 5, lastLogTerm: 2 },
  { ...base, type: 'preVoteResponse', reject: true },
  { ...base, type: 'vote', lastLogIndex: 5, lastLogTerm: 2, transfer: true },
  { ...base, type: 'voteResponse', reject: false },
  { ...base, type: 'append', prevLogIndex: 6, prevLogTerm: 2, entries: [entry, conf], commit: 4 },
  { ...base, type: 'appendResponse', index: 8, reject: true, rejectHint: 3, logTerm: 1 },
  { ...base, type: 'heartbeat', commit: 4, context: ctx },
  { ...base, type: 'heartbeatResponse', context: ctx },
  {
    ...base,
    type: 'snapshot',
    metadata: { index: 100, term: 3, confState: { voters: ['a', 'b'], learners: ['c'] } },
    offset: 10,
    totalBytes: 13,
    data: ctx,
    done: true,
  },
  { ...base, type: 'propose', entries: [entry] },
  { ...base, type: 'readIndex', context: ctx },
  { ...base, type: 'readIndexResponse', index: 9, context: ctx },
  { ...base, type: 'transferLeader', target: 'c' },
  { ...base, type: 'timeoutNow' },
];

function normalize(v: unknown): unknown {
  if (v instanceof Uint8Array) return [...v];
  if (Array.isArray(v)) return v.map(normalize);
  if (typeof v === 'object' && v !== null) {
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, normalize(x)]));
  }
  return v;
}

interface Recorder extends TransportHandler {
  messages: RaftMessage[];
  unreachable: string[];
  snapshots: Array<[string, boolean]>;
}

function recorder(): Recorder {
  const r: Recorder = {
    messages: [],
    unreachable: [],
    snapshots: [],
    onMessage: (m) => r.messages.push(m),
    onUnreachable: (p) => r.unreachable.push(p),
    onSnapshotStatus: (p, ok) => r.snapshots.push([p, ok]),
  };
  return r;
}

describe('raft wire format', () => {
  it('every message type survives toWire → protobuf bytes → fromWire unchanged', () => {
    for (const m of EVERY_TYPE) {
      const bytes = WireMessage.encode(toWire(m)).finish();
      assert.deepEqual(normalize(fromWire(WireMessage.decode(bytes))), normalize(m), m.type);
    }
  });

  it('rejects bad fields with an error naming the field', () => {
    const w = toWire(EVERY_TYPE[4]!);
    assert.throws(() => fromWire({ ...w, type: 99 as RaftMessageType }), /unknown type 99/);
    assert.throws(
      () => fromWire({ ...w, from: '' }),
      (e: Error & { field?: string }) => e.field === 'from',
    );
    assert.throws(() => fromWire({ ...w, commit: 2 ** 60 }), /commit must be a non-negative safe integer/);
    assert.throws(() => fromWire({ ...w, entries: [{ ...w.entries[0]!, type: 0 }] }), /entries\[0\]\.type/);
    const snap = toWire(EVERY_TYPE[8]!);
    assert.throws(() => fromWire({ ...snap, offset: 12 }), /exceeds totalBytes/);
    assert.throws(() => fromWire({ ...snap, snapshotMetadata: undefined }), /snapshotMetadata is required/);
  });
});

describe('GrpcTransport over mutual TLS', () => {
  let tls: TlsFixture;
  const open: GrpcTransport[] = [];
  before(() => {
    tls = mintTlsFixture();
  });
  after(async () => {
    for (const t of open) await t.close();
  });

  async function node(
    id: string,
    handler: TransportHandler,
    extra: Partial<ConstructorParameters<typeof GrpcTransport>[0]> = {},
  ) {
    const t = new GrpcTransport({
      selfId: id,
      listenAddress: '127.0.0.1:0',
      serverCredentials: tls.serverCredentials(),
      channelCredentials: tls.channelCredentials(),
      handler,
      ...extra,
    });
    open.push(t);
    const port = await t.start();
    return { t, address: `127.0.0.1:${port}` };
  }

  it('delivers every message type in order', async () => {
    const ra = recorder();
    const rb = recorder();
    const a = await node('a', ra);
    const b = await node('b', rb);
    a.t.addPeer('b', b.address);
    a.t.send(EVERY_TYPE);
    await waitFor('all messages', () => rb.messages.length === EVERY_TYPE.length);
    assert.deepEqual(rb.messages.map(normalize), EVERY_TYPE.map(normalize));
    await waitFor('snapshot status', () => ra.snapshots.length === 1);
    assert.deepEqual(ra.snapshots, [['b', true]]);
  });

  it('reports a peer that does not answer as unreachable', async () => {
    const ra = recorder();
    const a = await node('a', ra, { reconnectBackoffMs: 10 });
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', () => r()));
    const port = (closed.address() as { port: number }).port;
    await new Promise<void>((r) => closed.close(() => r()));
    a.t.addPeer('b', `127.0.0.1:${port}`);
    a.t.send([{ ...base, type: 'timeoutNow' }]);
    await waitFor('unreachable report', () => ra.unreachable.includes('b'));
  });

  it('drops a peer stream carrying a malformed message, logs why, and keeps serving others', async () => {
    const rb = recorder();
    const b = await node('b', rb);
    const client = new RaftServiceClient(b.address, tls.channelCredentials());
    const bad = {
      ...toWire(EVERY_TYPE[4]!),
      entries: [{ term: 1, index: 1, type: 7, data: Buffer.alloc(0) }],
    };
    const outcome = await new Promise<string>((resolve) => {
      const call = client.stream((err) => resolve(err === null ? 'ok' : err.details));
      call.write({ messages: [bad] });
    });
    client.close();
    assert.match(outcome, /malformed raft message \(entries\[0\]\.type\)/);
    assert.equal(rb.messages.length, 0);
    const ra = recorder();
    const a = await node('a', ra);
    a.t.addPeer('b', b.address);
    a.t.send([{ ...base, type: 'timeoutNow' }]);
    await waitFor('a good message after a bad stream', () => rb.messages.length === 1);
  });

  it('survives bytes that are not a protobuf message and keeps serving', async () => {
    const rb = recorder();
    const b = await node('b', rb);
    const Garbage = makeGenericClientConstructor(
      {
        stream: {
          ...RaftServiceService.stream,
          requestSerialize: (v: Buffer) => v,
        },
      },
      'meshd.v1.RaftService',
    );
    const client = new Garbage(b.address, tls.channelCredentials()) as unknown as {
      stream(cb: (err: { code: number } | null) => void): { write(b: Buffer): void; end(): void };
      close(): void;
    };
    const outcome = await new Promise<string>((resolve) => {
      const call = client.stream((err) =>
        resolve(err === null ? 'ok' : String((err as { details?: string }).details)),
      );
      call.write(Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01]));
      call.end();
    });
    client.close();
    assert.match(outcome, /undecodable raft request/);
    assert.equal(rb.messages.length, 0);
    const ra = recorder();
    const a = await node('a', ra);
    a.t.addPeer('b', b.address);
    a.t.send([{ ...base, type: 'timeoutNow' }]);
    await waitFor('a good message after garbage', () => rb.messages.length === 1);
  });

  it('refuses messages addressed to another node and messages from a removed member', async () => {
    const rb = recorder();
    const b = await node('b', rb);
    b.t.removePeer('gone');
    const client = new RaftServiceClient(b.address, tls.channelCredentials());
    const send = (m: RaftMessage) =>
      new Promise<string>((resolve) => {
        const call = client.stream((err) => resolve(err === null ? 'ok' : err.details));
        call.write({ messages: [toWire(m)] });
        call.end();
      });
    assert.match(await send({ ...base, to: 'z', type: 'timeoutNow' }), /for "z" arrived at "b"/);
    assert.match(await send({ ...base, from: 'gone', type: 'timeoutNow' }), /removed member "gone"/);
    client.close();
    assert.equal(rb.messages.length, 0);
  });

  it('refuses an oversized message without crashing', async () => {
    const rb = recorder();
    const ra = recorder();
    const b = await node('b', rb, { maxMessageBytes: 64 * 1024 });
    const a = await node('a', ra);
    a.t.addPeer('b', b.address);
    const big = {
      ...base,
      type: 'propose' as const,
      entries: [{ ...entry, data: new Uint8Array(200 * 1024) }],
    };
    a.t.send([big]);
    await waitFor('oversized stream failure', () => ra.unreachable.includes('b'));
    assert.equal(rb.messages.length, 0);
  });

  it('refuses a client without a certificate from the cluster CA', async () => {
    const rb = recorder();
    const b = await node('b', rb);
    const other = mintTlsFixture();
    const client = new RaftServiceClient(b.address, other.channelCredentials());
    const outcome = await new Promise<string>((resolve) => {
      const call = client.stream((err) => resolve(err === null ? 'ok' : String(err.code)));
      call.write({ messages: [toWire({ ...base, type: 'timeoutNow' })] });
      call.end();
    });
    client.close();
    assert.notEqual(outcome, 'ok');
    assert.equal(rb.messages.length, 0);
  });

  it('keeps the queue to a peer that stops reading bounded and drops the overflow', async () => {
    // A TCP listener that accepts and never reads: TLS never completes, like a SIGSTOPped peer.
    const sockets: Socket[] = [];
    const stuck: NetServer = createServer((s) => {
      s.pause();
      sockets.push(s);
    });
    await new Promise<void>((r) => stuck.listen(0, '127.0.0.1', () => r()));
    try {
      const ra = recorder();
      const a = await node('a', ra, { maxQueuedMessages: 100 });
      a.t.addPeer('b', `127.0.0.1:${(stuck.address() as { port: number }).port}`);
      const payload = new Uint8Array(1024);
      for (let i = 0; i < 200; i++) {
        const batch: RaftMessage[] = [];
        for (let j = 0; j < 100; j++)
          batch.push({ ...base, type: 'propose', entries: [{ ...entry, data: payload }] });
        a.t.send(batch);
        await new Promise((r) => setImmediate(r));
      }
      const stats = a.t.peerStats('b')!;
      assert.ok(stats.queued <= 100, `queued ${stats.queued}`);
      assert.ok(stats.dropped > 0, 'expected drops');
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => stuck.close(() => r()));
    }
  });
});
