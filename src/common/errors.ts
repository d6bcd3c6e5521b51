/**
 * The one error base class. Every error a person may see carries a stable
 * machine-readable `code` (for tests, metrics and API status mapping) and a
 * message written for the person: name the field, the value, and what is
 * accepted.
 */
export class MeshError extends Error {
  readonly code: string;
  readonly details: Readonly<Record<string, unknown>>;

  constructor(
    code: string,
    message: string,
    options?: { cause?: unknown; details?: Record<string, unknown> },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'MeshError';
    this.code = code;
    this.details = Object.freeze({ ...(options?.details ?? {}) });
  }
}

/** Input from a user or a peer did not pass validation; `field` names what was wrong. */
export class ValidationError extends MeshError {
  readonly field: string;

  constructor(field: string, message: string, details?: Record<string, unknown>) {
    super('INVALID_ARGUMENT', message, { details: { field, ...details } });
    this.name = 'ValidationError';
    this.field = field;
  }
}

/** A programming invariant was broken: a bug, never a user error. */
export class AssertionFailed extends MeshError {
  constructor(message: string) {
    super('ASSERTION_FAILED', message);
    this.name = 'AssertionFailed';
  }
}

/** Asserts an invariant; throws AssertionFailed with `message` when it does not hold. */
export function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new AssertionFailed(message);
}

/** Exhaustiveness check for discriminated unions in `switch` statements. */
export function assertNever(value: never, what = 'value'): never {
  throw new AssertionFailed(`unexpected ${what}: ${JSON.stringify(value)}`);
}

/** Text of any thrown value, for logs and one-line CLI errors. */
export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
