import { type Node, NodeRole } from '../../src/api/gen/meshd/v1/objects.js';
import { ValidationError } from '../../src/common/errors.js';

export interface Constraint {
  text: string;
  key: string;
  equal: boolean;
  value: string;
}

const CONSTRAINT =
  /^\s*(node\.id|node\.hostname|node\.role|node\.labels\.[A-Za-z0-9_.\-/]+)\s*(==|!=)\s*(\S.*?)\s*$/;

/** Parses `node.labels.zone == a`-style constraints; the control API calls this to refuse bad ones early. */
export function parseConstraints(
  texts: readonly string[],
  field = 'task.placement.constraints',
): Constraint[] {
  return texts.map((text, i) => {
    const m = CONSTRAINT.exec(text);
    if (m === null)
      throw new ValidationError(
        `${field}[${i}]`,
        `${field}[${i}] must look like "node.labels.KEY==VALUE" (keys: node.id, node.hostname, node.role, node.labels.*; operators == and !=), got "${text}"`,
      );
    return { text: text.trim(), key: m[1]!, equal: m[2] === '==', value: m[3]! };
  });
}

function nodeValue(node: Node, key: string): string | undefined {
  switch (key) {
    case 'node.id':
      return node.meta?.id;
    case 'node.hostname':
      return node.hostname;
    case 'node.role':
      return node.role === NodeRole.NODE_ROLE_MANAGER ? 'manager' : 'worker';
    default:
      return node.labels[key.slice('node.labels.'.length)];
  }
}

/** Swarm semantics: values compare case-insensitively; `!=` holds when the label is absent. */
export function constraintHolds(node: Node, c: Constraint): boolean {
  const have = nodeValue(node, c.key);
  const same = have !== undefined && have.toLowerCase() === c.value.toLowerCase();
  return c.equal ? same : !same;
}

/** Value of a placement-preference descriptor (`node.labels.zone`) on a node; "" when absent. */
export function preferenceValue(node: Node, spread: string): string {
  const key = spread.startsWith('node.labels.') ? spread : `node.labels.${spread}`;
  return nodeValue(node, key) ?? '';
}
