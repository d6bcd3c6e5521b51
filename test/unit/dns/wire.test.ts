import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { encodeHeaderError, encodeResponse, encodeTruncated } from '../../../dataplane/dns/encode.js';
import { PLAIN_UDP_MAX_BYTES, parseQuery, RCODE, RRTYPE, sameQuestion } from '../../../dataplane/dns/wire.js';
import { decode, queryBytes } from './fixtures.js';

function parsed(bytes: Buffer) {
  const r = parseQuery(bytes);
  assert.equal(r.kind, 'query', `expected a query, got ${JSON.stringify(r)}`);
  if (r.kind !== 'query') throw new Error('unreachable');
  return r.query;
}

describe('dns wire: query parsing', () => {
  it('reads the ID, name, type, class and RD bit of a query dns2 encoded', () => {
    const q = parsed(queryBytes('Web.App', RRTYPE.A, { id: 0xbeef }));
    assert.equal(q.id, 0xbeef);
    assert.equal(q.name, 'Web.App');
    assert.equal(q.nameLower, 'web.app');
    assert.equal(q.qtype, RRTYPE.A);
    assert.equal(q.qclass, 1);
    assert.equal(q.recursionDesired, true);
    assert.equal(q.hostnameLike, true);
    assert.equal(q.edns, undefined);
  });

  it('reads the EDNS payload size from an OPT record', () => {
    const q = parsed(queryBytes('web', RRTYPE.A, { edns: true }));
    assert.deepEqual(q.edns, { udpSizeBytes: 1232, version: 0 });
  });

  it('drops packets shorter than a header and responses', () => {
    assert.equal(parseQuery(Buffer.alloc(5)).kind, 'drop');
    const response = queryBytes('web', RRTYPE.A);
    response[2] = response[2]! | 0x80;
    assert.equal(parseQuery(response).kind, 'drop');
  });

  it('answers FORMERR to a compression pointer in the question (no pointer chasing, no loops)', () => {
    const bytes = Buffer.from([0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1]);
    const r = parseQuery(bytes);
    assert.equal(r.kind, 'error');
    if (r.kind === 'error') assert.equal(r.rcode, RCODE.FORMERR);
  });

  it('answers FORMERR to a label past the end, a label over 63 bytes, and two questions', () => {
    const cut = queryBytes('web', RRTYPE.A).subarray(0, 15);
    assert.equal(parseQuery(cut).kind, 'error');
    const long = Buffer.concat([
      Buffer.from([0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 64]),
      Buffer.alloc(70, 0x61),
    ]);
    assert.equal(parseQuery(long).kind, 'error');
    const two = queryBytes('web', RRTYPE.A);
    two[5] = 2;
    assert.equal(parseQuery(two).kind, 'error');
  });

  it('answers FORMERR to a name over 255 bytes', () => {
    const labels: number[] = [];
    for (let i = 0; i < 5; i++) labels.push(60, ...Buffer.alloc(60, 0x61));
    const bytes = Buffer.from([0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, ...labels, 0, 0, 1, 0, 1]);
    assert.equal(parseQuery(bytes).kind, 'error');
  });

  it('answers NOTIMP to opcodes other than QUERY', () => {
    const bytes = queryBytes('web', RRTYPE.A);
    bytes[2] = (bytes[2]! & 0x87) | (2 << 3);
    const r = parseQuery(bytes);
    assert.equal(r.kind === 'error' && r.rcode, RCODE.NOTIMP);
  });

  it('marks names with bytes outside host-name labels as not host-name-like', () => {
    const bytes = Buffer.from([0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 3, 0x77, 0x2e, 0x62, 0, 0, 1, 0, 1]);
    assert.equal(parsed(bytes).hostnameLike, false);
  });

  it('never throws on arbitrary bytes (property; prints the seed on failure)', () => {
    const seed = Number(process.env['SEED'] ?? Date.now() % 1_000_000);
    try {
      fc.assert(
        fc.property(fc.uint8Array({ minLength: 0, maxLength: 600 }), (bytes) => {
          parseQuery(Buffer.from(bytes));
        }),
        { seed, numRuns: 3000 },
      );
    } catch (err) {
      console.error(`wire property failed; replay with SEED=${seed}`);
      throw err;
    }
  });

  it('never throws on single-byte mutations of a valid query (property)', () => {
    const seed = Number(process.env['SEED'] ?? Date.now() % 1_000_000);
    const base = queryBytes('tasks.web.app', RRTYPE.SRV, { edns: true });
    try {
      fc.assert(
        fc.property(fc.nat(base.length - 1), fc.integer({ min: 0, max: 255 }), (at, value) => {
          const copy = Buffer.from(base);
          copy[at] = value;
          parseQuery(copy);
        }),
        { seed, numRuns: 3000 },
      );
    } catch (err) {
      console.error(`wire mutation property failed; replay with SEED=${seed}`);
      throw err;
    }
  });
});

describe('dns wire: response encoding', () => {
  it('encodes A, SRV and PTR answers that dns2 decodes back, echoing the question case', () => {
    const bytes = queryBytes('_HTTP._tcp.Web', RRTYPE.SRV, { id: 7 });
    const q = parsed(bytes);
    const out = encodeResponse(bytes, q, {
      rcode: RCODE.NOERROR,
      authoritative: true,
      answers: [{ type: 'SRV', name: undefined, ttlS: 5, priority: 0, weight: 0, port: 80, target: 'web' }],
      additionals: [{ type: 'A', name: 'web', ttlS: 5, address: '10.0.1.2' }],
      maxBytes: 512,
    });
    const p = decode(out);
    assert.equal(p.header.id, 7);
    assert.equal(p.header.qr, 1);
    assert.equal(p.header.aa, 1);
    assert.equal(p.questions[0]?.name, '_HTTP._tcp.Web');
    assert.equal(p.answers[0]?.name, '_HTTP._tcp.Web');
    assert.equal(p.answers[0]?.port, 80);
    assert.equal(p.answers[0]?.target, 'web');
    assert.equal(p.additionals[0]?.address, '10.0.1.2');

    const ptrQuery = queryBytes('2.1.0.10.in-addr.arpa', RRTYPE.PTR);
    const ptr = encodeResponse(ptrQuery, parsed(ptrQuery), {
      rcode: RCODE.NOERROR,
      authoritative: true,
      answers: [{ type: 'PTR', name: undefined, ttlS: 5, target: 'web.1.abc' }],
      additionals: [],
      maxBytes: 512,
    });
    assert.equal(decode(ptr).answers[0]?.domain, 'web.1.abc');
  });

  it('drops the records and sets TC when the answer exceeds the limit', () => {
    const bytes = queryBytes('tasks.big', RRTYPE.A);
    const q = parsed(bytes);
    const answers = Array.from({ length: 40 }, (_, i) => ({
      type: 'A' as const,
      name: undefined,
      ttlS: 1,
      address: `10.0.0.${i}`,
    }));
    const out = encodeResponse(bytes, q, {
      rcode: RCODE.NOERROR,
      authoritative: true,
      answers,
      additionals: [],
      maxBytes: PLAIN_UDP_MAX_BYTES,
    });
    const p = decode(out);
    assert.equal(p.header.tc, 1);
    assert.equal(p.answers.length, 0);
    assert.ok(out.length <= PLAIN_UDP_MAX_BYTES);
    assert.equal(decode(encodeTruncated(bytes, q, 0)).header.tc, 1);
  });

  it('echoes an OPT record when the query had one, and answers BADVERS to EDNS version 1', () => {
    const bytes = queryBytes('web', RRTYPE.A, { edns: true });
    const q = parsed(bytes);
    const spec = { rcode: RCODE.NOERROR, authoritative: true, answers: [], additionals: [], maxBytes: 512 };
    assert.equal(decode(encodeResponse(bytes, q, spec)).additionals[0]?.type, RRTYPE.OPT);
    const v1 = encodeResponse(bytes, { ...q, edns: { udpSizeBytes: 1232, version: 1 } }, spec);
    assert.equal(v1.readUInt32BE(v1.length - 6) >>> 24, 1);
  });

  it('builds a header-only error with the query ID, RD copied and QR set', () => {
    const out = encodeHeaderError(0xabcd, 0x0100, RCODE.FORMERR);
    const p = decode(out);
    assert.equal(p.header.id, 0xabcd);
    assert.equal(p.header.qr, 1);
    assert.equal(p.header.rd, 1);
    assert.equal(p.header.rcode, RCODE.FORMERR);
  });

  it('matches a reply question to the query question case-insensitively only', () => {
    const a = queryBytes('Web', RRTYPE.A);
    const q = parsed(a);
    assert.ok(sameQuestion(queryBytes('wEB', RRTYPE.A), a, q.questionEnd));
    assert.ok(!sameQuestion(queryBytes('wec', RRTYPE.A), a, q.questionEnd));
  });
});
