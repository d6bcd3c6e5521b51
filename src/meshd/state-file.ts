import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DesiredState } from '../api/gen/meshd/v1/dataplane.js';
import { writeFileDurable } from '../common/durable-file.js';
import { errorMessage, MeshError, ValidationError } from '../common/errors.js';

/** Reads a DesiredState from its JSON form (`DesiredState.toJSON`); errors name the file. */
export function readDesiredStateFile(path: string): DesiredState {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ValidationError('--state', `--state: cannot read ${path}: ${errorMessage(err)}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new ValidationError('--state', `--state: ${path} is not JSON: ${errorMessage(err)}`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json))
    throw new ValidationError(
      '--state',
      `--state: ${path} must hold a JSON object (a DesiredState), got ${typeof json}`,
    );
  return DesiredState.fromJSON(json);
}

/** Where `apply` records the last applied state, so `dump` can compare desired with programmed. */
export function appliedStatePath(stateDir: string): string {
  return join(stateDir, 'dataplane-applied.json');
}

/** Writes atomically: temp file, fsync, rename, fsync of the directory. */
export function writeAppliedState(stateDir: string, state: DesiredState): void {
  const path = appliedStatePath(stateDir);
  try {
    writeFileDurable(path, `${JSON.stringify(DesiredState.toJSON(state), null, 2)}\n`, 0o600);
  } catch (err) {
    throw new MeshError(
      'STATE_WRITE_FAILED',
      `cannot record the applied state in ${path}: ${errorMessage(err)}`,
      {
        cause: err,
      },
    );
  }
}

/**
 * For a daemon (`meshd run`): records each applied state durably, but only
 * when it differs from the one recorded last (a state sent again after a
 * reconnect, or a resync, costs no fsync). A failed write is reported through
 * `onError` and retried with the next state: it must not stop the data plane.
 */
export function appliedStateRecorder(
  stateDir: string,
  onError: (err: unknown) => void,
  write: (stateDir: string, state: DesiredState) => void = writeAppliedState,
): (state: DesiredState) => boolean {
  let last: string | undefined;
  return (state) => {
    const text = JSON.stringify(DesiredState.toJSON(state));
    if (text === last) return false;
    try {
      write(stateDir, state);
      last = text;
      return true;
    } catch (err) {
      onError(err);
      return false;
    }
  };
}

export function readAppliedState(stateDir: string): DesiredState | null {
  try {
    return DesiredState.fromJSON(JSON.parse(readFileSync(appliedStatePath(stateDir), 'utf8')));
  } catch {
    return null;
  }
}
