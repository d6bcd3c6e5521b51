import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { EndpointMode, Protocol, PublishMode } from '../../../src/api/gen/meshd/v1/dataplane.js';
import { RestartCondition, ServiceMode, UpdateOrder } from '../../../src/api/gen/meshd/v1/objects.js';
import { ValidationError } from '../../../src/common/errors.js';
import { parsePublish, serviceSpecFromFlags } from '../../../src/meshctl/service-flags.js';
import { parseDurationMs, parseSizeBytes } from '../../../src/meshctl/units.js';

const cmd = ['/usr/bin/server', '--port', '80'];

describe('meshctl service flags', () => {
  it('defaults follow swarm: 1 replica, restart any after 5s, update one at a time stop-first, vip', () => {
    const spec = serviceSpecFromFlags({ name: 'web' }, cmd);
    assert.equal(spec.mode, ServiceMode.SERVICE_MODE_REPLICATED);
    assert.equal(spec.replicas, 1);
    assert.equal(spec.task?.restart?.condition, RestartCondition.RESTART_CONDITION_ANY);
    assert.equal(spec.task?.restart?.delayMs, 5000);
    assert.equal(spec.update?.parallelism, 1);
    assert.equal(spec.update?.order, UpdateOrder.UPDATE_ORDER_STOP_FIRST);
    assert.equal(spec.endpoint?.mode, EndpointMode.ENDPOINT_MODE_VIP);
    assert.deepEqual(spec.task?.command, cmd);
  });

  it('--replicas outside 0..10000 names the flag and the value', () => {
    assert.throws(
      () => serviceSpecFromFlags({ name: 'web', replicas: '-3' }, cmd),
      (err: unknown) =>
        err instanceof ValidationError &&
        err.field === 'replicas' &&
        /0\.\.10000, got "-3"/.test(err.message),
    );
  });

  it('a service without a command says how to give one', () => {
    assert.throws(() => serviceSpecFromFlags({ name: 'web' }, []), /after "--"/);
  });

  it('rejects names that DNS could not carry', () => {
    for (const name of ['', '-web', 'web_1', 'a'.repeat(64)])
      assert.throws(() => serviceSpecFromFlags({ name }, cmd), { field: 'name' });
  });

  it('--mode global refuses --replicas', () => {
    assert.throws(() => serviceSpecFromFlags({ name: 'agent', mode: 'global', replicas: '3' }, cmd), {
      field: 'replicas',
    });
  });

  it('the same published port twice is refused at the CLI', () => {
    assert.throws(
      () => serviceSpecFromFlags({ name: 'web', publish: ['8080:80', 'published=8080,target=81'] }, cmd),
      /given twice/,
    );
  });

  it('dnsrr services cannot publish in ingress mode (no VIP to balance)', () => {
    assert.throws(
      () => serviceSpecFromFlags({ name: 'db', endpointMode: 'dnsrr', publish: ['5432:5432'] }, cmd),
      {
        field: 'endpoint-mode',
      },
    );
  });

  it('constraints must use the supported node attributes', () => {
    const ok = serviceSpecFromFlags(
      { name: 'web', constraint: ['node.labels.zone == a', 'node.role!=manager'] },
      cmd,
    );
    assert.equal(ok.task?.placement?.constraints.length, 2);
    assert.throws(() => serviceSpecFromFlags({ name: 'web', constraint: ['engine.labels.x==1'] }, cmd), {
      field: 'constraint',
    });
  });

  it('health options without --health-cmd are refused', () => {
    assert.throws(() => serviceSpecFromFlags({ name: 'web', healthInterval: '5s' }, cmd), {
      field: 'health-interval',
    });
    const spec = serviceSpecFromFlags(
      { name: 'web', healthCmd: 'curl -f localhost', healthInterval: '2s', healthRetries: '5' },
      cmd,
    );
    assert.deepEqual(spec.task?.health?.test, ['/bin/sh', '-c', 'curl -f localhost']);
    assert.equal(spec.task?.health?.intervalMs, 2000);
    assert.equal(spec.task?.health?.retries, 5);
  });

  it('rollback cannot itself fail over to rollback', () => {
    assert.throws(() => serviceSpecFromFlags({ name: 'web', rollbackFailureAction: 'rollback' }, cmd), {
      field: 'rollback-failure-action',
    });
  });
});

describe('--publish', () => {
  it('short form PUBLISHED:TARGET defaults to tcp in ingress mode', () => {
    assert.deepEqual(parsePublish('8080:80'), {
      name: '',
      protocol: Protocol.PROTOCOL_TCP,
      targetPort: 80,
      publishedPort: 8080,
      publishMode: PublishMode.PUBLISH_MODE_INGRESS,
      healthPort: 0,
    });
  });

  it('short form with /udp, and a bare target port leaves the published port to the cluster', () => {
    assert.equal(parsePublish('53:53/udp').protocol, Protocol.PROTOCOL_UDP);
    assert.equal(parsePublish('80').publishedPort, 0);
  });

  it('long form carries mode=local with a health port for external load balancers', () => {
    const p = parsePublish('published=8080,target=80,mode=local,name=http,health-port=30999');
    assert.equal(p.publishMode, PublishMode.PUBLISH_MODE_LOCAL);
    assert.equal(p.healthPort, 30999);
    assert.equal(p.name, 'http');
  });

  it('names the bad part of a bad spec', () => {
    assert.throws(() => parsePublish('8080:99999'), /a port must be 1\.\.65535, got "99999"/);
    assert.throws(() => parsePublish('published=1,target=2,colour=red'), /unknown key "colour"/);
    assert.throws(() => parsePublish('8080:80/sctp'), /PUBLISHED:TARGET/);
    assert.throws(() => parsePublish('published=8080,target=80,health-port=9000'), /mode=local only/);
  });

  it('never throws anything but a ValidationError on arbitrary input', () => {
    fc.assert(
      fc.property(fc.string(), (text) => {
        try {
          parsePublish(text);
        } catch (err) {
          assert.ok(err instanceof ValidationError, String(err));
        }
      }),
    );
  });
});

describe('units', () => {
  it('durations as swarm users type them', () => {
    assert.equal(parseDurationMs('d', '500ms'), 500);
    assert.equal(parseDurationMs('d', '1m30s'), 90_000);
    assert.equal(parseDurationMs('d', '2h'), 7_200_000);
    assert.equal(parseDurationMs('d', '0'), 0);
    assert.throws(() => parseDurationMs('update-delay', '10'), /--update-delay must be a duration/);
    assert.throws(() => parseDurationMs('d', '5s garbage'), /duration/);
  });

  it('sizes in binary multiples', () => {
    assert.equal(parseSizeBytes('m', '64M'), 64 * 1024 * 1024);
    assert.equal(parseSizeBytes('m', '512k'), 512 * 1024);
    assert.equal(parseSizeBytes('m', '1GiB'), 1024 ** 3);
    assert.throws(() => parseSizeBytes('reserve-memory', 'lots'), /--reserve-memory must be a size/);
  });
});
