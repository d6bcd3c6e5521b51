import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { validateServiceSpec } from '../../../controlplane/orchestrator/validate-spec.js';
import { EndpointMode, PublishMode } from '../../../src/api/gen/meshd/v1/dataplane.js';
import { ServiceMode, type ServiceSpec } from '../../../src/api/gen/meshd/v1/objects.js';
import { ValidationError } from '../../../src/common/errors.js';
import { replicated } from './helpers.js';

function refused(edit: (s: ServiceSpec) => void): ValidationError {
  const spec = replicated('web', 3);
  edit(spec);
  try {
    validateServiceSpec(spec);
  } catch (err) {
    if (err instanceof ValidationError) return err;
    throw err;
  }
  assert.fail('spec was accepted');
}

describe('service spec validation', () => {
  it('accepts a plain replicated spec', () => {
    validateServiceSpec(replicated('web', 3));
  });

  it('names the field, the value and what is accepted', () => {
    const err = refused((s) => {
      s.replicas = -3;
    });
    assert.equal(err.field, 'replicas');
    assert.equal(err.message, 'service "web": replicas must be an integer 0..10000, got -3');
  });

  it('refuses names, env, constraints, ports and update configs that planners could not use', () => {
    const ingress80 = {
      name: '',
      protocol: 1,
      targetPort: 80,
      publishedPort: 0,
      publishMode: PublishMode.PUBLISH_MODE_INGRESS,
      healthPort: 0,
    };
    const cases: [string, (s: ServiceSpec) => void][] = [
      [
        'name',
        (s) => {
          s.name = 'Web_1';
        },
      ],
      [
        'task.env[0]',
        (s) => {
          s.task!.env = ['=x'];
        },
      ],
      [
        'task.placement.constraints[0]',
        (s) => {
          s.task!.placement = { constraints: ['zone=a'], preferences: [], maxReplicasPerNode: 0 };
        },
      ],
      [
        'endpoint.ports[0].publish_mode',
        (s) => {
          s.endpoint = { mode: EndpointMode.ENDPOINT_MODE_DNSRR, ports: [ingress80] };
        },
      ],
      [
        'update.max_failure_ratio',
        (s) => {
          s.update!.maxFailureRatio = 1.5;
        },
      ],
      [
        'replicas',
        (s) => {
          s.mode = ServiceMode.SERVICE_MODE_GLOBAL;
        },
      ],
    ];
    for (const [field, edit] of cases) assert.equal(refused(edit).field, field);
  });
});
