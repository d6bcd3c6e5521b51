import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { resolveConfig } from '../../../src/meshd/config.js';

const base = { hostname: 'host1', flags: { 'advertise-address': '192.0.2.10:4242' } };

describe('meshd config', () => {
  it('defaults: state in /var/lib/meshd, socket in /run/meshd, VXLAN 4789, lb-backend auto', () => {
    const c = resolveConfig(base);
    assert.equal(c.stateDir, '/var/lib/meshd');
    assert.equal(c.socketPath, '/run/meshd/meshd.sock');
    assert.equal(c.dataPathPort, 4789);
    assert.equal(c.lbBackend, 'auto');
    assert.equal(c.listenAddress, '0.0.0.0:4242');
    assert.equal(c.hostname, 'host1');
    assert.equal(c.netnsPrefix, 'md-');
    assert.equal(c.dispatcherHeartbeatMs, 1500);
  });

  it('dispatcher-heartbeat takes ms or s (a slow lab stretches it)', () => {
    const at = (v: string) =>
      resolveConfig({ ...base, flags: { ...base.flags, 'dispatcher-heartbeat': v } }).dispatcherHeartbeatMs;
    assert.equal(at('5s'), 5000);
    assert.equal(at('250ms'), 250);
    assert.equal(at('2.5s'), 2500);
  });

  it('flags override the file, the file overrides defaults', () => {
    const c = resolveConfig({
      ...base,
      fileText: 'lb-backend: ipvs\ndata-plane: none\ndata-path-port: 4790\nstate-dir: /srv/meshd\n',
      flags: { ...base.flags, 'data-path-port': '5789' },
    });
    assert.equal(c.lbBackend, 'ipvs');
    assert.equal(c.dataPathPort, 5789);
    assert.equal(c.stateDir, '/srv/meshd');
  });

  it('lb-backend accepts auto, ipvs and nftables, also with the kernel data plane', () => {
    for (const choice of ['auto', 'ipvs', 'nftables'] as const) {
      const c = resolveConfig({
        ...base,
        flags: { ...base.flags, 'lb-backend': choice, 'data-plane': 'kernel' },
      });
      assert.equal(c.lbBackend, choice);
      assert.equal(c.dataPlane, 'kernel');
    }
  });

  it('a wildcard listen address needs an advertise address, and the error says which', () => {
    assert.throws(() => resolveConfig({ hostname: 'h', flags: {} }), { field: 'advertise-address' });
    const c = resolveConfig({ hostname: 'h', flags: { 'listen-address': '10.0.0.1:4242' } });
    assert.equal(c.advertiseAddress, '10.0.0.1:4242');
    const v6 = resolveConfig({
      hostname: 'h',
      flags: { 'listen-address': '[::]:4242', 'advertise-address': '10.0.0.1:4242' },
    });
    assert.equal(v6.listenAddress, '[::]:4242');
    assert.throws(() => resolveConfig({ hostname: 'h', flags: { 'listen-address': '[::1]:4242' } }), {
      field: 'advertise-address',
    });
  });

  it('each bad value names its field and what is accepted', () => {
    const cases: [Record<string, string>, string, RegExp][] = [
      [
        { 'lb-backend': 'iptables' },
        'lb-backend',
        /lb-backend: must be one of auto, ipvs, nftables; got "iptables"/,
      ],
      [{ 'data-path-port': '80' }, 'data-path-port', /1024\.\.65535/],
      [{ 'listen-address': 'localhost:4242' }, 'listen-address', /must be an IP address/],
      [{ 'listen-address': '10.0.0.1' }, 'listen-address', /HOST:PORT/],
      [{ 'advertise-address': '[2001:db8::1]:4242' }, 'advertise-address', /IPv4 address.*IPv4-only/],
      [{ 'state-dir': 'relative/dir' }, 'state-dir', /absolute path/],
      [{ 'socket-group': 'Bad Group' }, 'socket-group', /group name/],
      [{ 'dispatcher-heartbeat': '5' }, 'dispatcher-heartbeat', /like 1500ms or 5s/],
      [{ 'dispatcher-heartbeat': '2m' }, 'dispatcher-heartbeat', /like 1500ms or 5s/],
      [{ 'dispatcher-heartbeat': '61s' }, 'dispatcher-heartbeat', /100ms\.\.60s/],
    ];
    for (const [flags, field, message] of cases)
      assert.throws(
        () => resolveConfig({ ...base, flags: { ...base.flags, ...flags } }),
        (err: unknown) => {
          assert.equal((err as { field?: string }).field, field);
          assert.match((err as Error).message, message);
          return true;
        },
      );
  });

  it('an unknown key or malformed YAML in the file is refused naming the file', () => {
    assert.throws(
      () => resolveConfig({ ...base, fileText: 'listen_adress: 1.2.3.4:1\n', filePath: '/etc/meshd.yaml' }),
      {
        field: 'listen_adress',
        message: /\/etc\/meshd\.yaml: unknown key "listen_adress"; accepted: state-dir, listen-address/,
      },
    );
    assert.throws(() => resolveConfig({ ...base, fileText: 'a: [1,\n' }), {
      field: 'config',
      message: /not valid YAML/,
    });
    assert.throws(() => resolveConfig({ ...base, fileText: '- a\n- b\n' }), {
      field: 'config',
      message: /mapping/,
    });
  });
});
