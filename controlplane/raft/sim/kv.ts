/**
 * The replicated state machine the simulation drives: a key-value register
 * map. Commands carry an operation ID and are applied at most once, because
 * a forwarded proposal may be duplicated by the network and committed twice.
 */
export interface KvCommand {
  opId: string;
  key: string;
  value: string;
}

export function encodeKvCommand(command: KvCommand): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(command));
}

export function decodeKvCommand(data: Uint8Array): KvCommand | undefined {
  if (data.byteLength === 0) return undefined;
  try {
    const v = JSON.parse(new TextDecoder().decode(data)) as KvCommand;
    return typeof v.opId === 'string' && typeof v.key === 'string' && typeof v.value === 'string'
      ? v
      : undefined;
  } catch {
    return undefined;
  }
}

export class KvStateMachine {
  values = new Map<string, string>();
  appliedOps = new Set<string>();

  /** Applies a command; returns false for a duplicate that was ignored. */
  apply(command: KvCommand): boolean {
    if (this.appliedOps.has(command.opId)) return false;
    this.appliedOps.add(command.opId);
    this.values.set(command.key, command.value);
    return true;
  }

  snapshot(): Uint8Array {
    const body = { values: [...this.values.entries()], ops: [...this.appliedOps] };
    return new TextEncoder().encode(JSON.stringify(body));
  }

  static restore(data: Uint8Array): KvStateMachine {
    const sm = new KvStateMachine();
    if (data.byteLength === 0) return sm;
    const body = JSON.parse(new TextDecoder().decode(data)) as { values: [string, string][]; ops: string[] };
    sm.values = new Map(body.values);
    sm.appliedOps = new Set(body.ops);
    return sm;
  }
}
