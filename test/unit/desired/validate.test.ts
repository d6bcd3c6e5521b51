import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { assertValidDesiredState, validateDesiredState } from '../../../dataplane/desired/validate.js';
import { ValidationError } from '../../../src/common/errors.js';
import { sampleState } from './fixtures.js';

function fields(state: ReturnType<typeof sampleState>): string[] {
  return validateDesiredState(state).map((i) => i.field);
}

describe('desired-state validation', () => {
  test('a well-formed state has no issues', () => {
    assert.deepEqual(validateDesiredState(sampleState()), []);
  });

  test('overlapping subnets are rejected naming the later network subnet', () => {
    const state = sampleState();
    state.networks[1]!.subnet = '10.10.0.0/16';
    state.networks[1]!.gateway = '';
    state.networks[1]!.lbAddress = '';
    const issues = validateDesiredState(state);
    const overlap = issues.find((i) => i.field === 'networks[1].subnet');
    assert.ok(overlap, JSON.stringify(issues));
    assert.match(overlap.message, /10\.10\.0\.0\/16 overlaps 10\.10\.0\.0\/24 of networks\[0\] \("app"\)/);
  });

  test('a reused VNI is rejected naming the network vni field', () => {
    const state = sampleState();
    state.networks[1]!.vni = 4097;
    const issues = validateDesiredState(state);
    assert.deepEqual(
      issues.map((i) => i.field),
      ['networks[1].vni'],
    );
    assert.match(issues[0]!.message, /VNI 4097 is already used by networks\[0\]/);
  });

  test('an endpoint outside its network subnet is rejected naming the endpoint address', () => {
    const state = sampleState();
    state.services[0]!.endpoints[1]!.address = '10.99.0.12';
    const issues = validateDesiredState(state);
    assert.deepEqual(
      issues.map((i) => i.field),
      ['services[0].endpoints[1].address'],
    );
    assert.match(issues[0]!.message, /10\.99\.0\.12 is outside the subnet 10\.10\.0\.0\/24 of network "app"/);
  });

  test('an unknown network reference is rejected listing the known networks', () => {
    const state = sampleState();
    state.services[0]!.vips[0]!.networkId = 'nope';
    const issues = validateDesiredState(state);
    assert.deepEqual(
      issues.map((i) => i.field),
      ['services[0].vips[0].networkId'],
    );
    assert.match(issues[0]!.message, /unknown network "nope"; known networks: "app", "ingress"/);
  });

  test('malformed addresses, MACs, ports and enums name their fields', () => {
    const state = sampleState();
    state.node!.underlayAddress = '300.1.1.1';
    state.sandboxes[0]!.attachments[0]!.mac = 'zz';
    state.services[0]!.ports[0]!.targetPort = 0;
    state.services[0]!.ports[0]!.protocol = 0;
    state.services[0]!.endpoints[0]!.state = 0;
    assert.deepEqual(fields(state), [
      'node.underlayAddress',
      'sandboxes[0].attachments[0].mac',
      'services[0].ports[0].protocol',
      'services[0].ports[0].targetPort',
      'services[0].endpoints[0].state',
    ]);
  });

  test('a published port used twice and a health port outside local mode are rejected', () => {
    const state = sampleState();
    const copy = structuredClone(state.services[0]!);
    copy.id = 'web2';
    copy.ports[0]!.healthPort = 30081;
    state.services.push(copy);
    assert.deepEqual(fields(state), [
      'services[1].ports[0].healthPort',
      'services[1].ports[0].publishedPort',
    ]);
  });

  test('assertValidDesiredState throws one ValidationError naming the first field', () => {
    const state = sampleState();
    state.networks[1]!.vni = 4097;
    state.remoteEndpoints[0]!.networkId = 'gone';
    assert.throws(
      () => assertValidDesiredState(state),
      (err: unknown) =>
        err instanceof ValidationError &&
        err.field === 'networks[1].vni' &&
        /and 1 more: remoteEndpoints\[0\]\.networkId/.test(err.message),
    );
  });
});

describe('desired-state validation: LB addresses', () => {
  test('a network with a service VIP and the ingress network with published ports need an LB address', () => {
    const state = sampleState();
    state.networks[0]!.lbAddress = '';
    state.networks[1]!.lbAddress = '';
    assert.deepEqual(
      validateDesiredState(state).map((i) => i.field),
      ['networks[0].lbAddress', 'networks[1].lbAddress', 'networks[1].lbAddress'],
    );
  });
});
