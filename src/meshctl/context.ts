import type { Command } from 'commander';
import { ValidationError } from '../common/errors.js';
import type { MeshdClients } from './client.js';
import type { Format, Output } from './format.js';

/** What meshctl needs from the world; tests pass fakes for the clock and output. */
export interface CliDeps {
  output: Output;
  connect(socketPath: string, timeoutMs: number): MeshdClients;
  sleep(ms: number): Promise<void>;
  nowMs(): number;
  /** Runs `meshd ARGS...` (init, join, leave act on the local daemon's state); resolves its exit code. */
  runMeshd(args: string[]): Promise<number>;
  /** Calls `fn` on SIGINT until the returned function is called (`service logs --follow`). */
  onInterrupt?(fn: () => void): () => void;
}

/** Per-invocation state shared by every command: global options and one lazily opened connection. */
export class CliContext {
  private opened: MeshdClients | undefined;
  /** Set by a command before it calls meshd, so a NOT_FOUND can say where to look. */
  listCommand: string | undefined;

  constructor(
    readonly deps: CliDeps,
    private readonly program: Command,
  ) {}

  private globals(): { socket: string; format: string; timeout: string } {
    return this.program.opts<{ socket: string; format: string; timeout: string }>();
  }

  get socketPath(): string {
    return this.globals().socket;
  }

  get format(): Format {
    const f = this.globals().format;
    if (f !== 'table' && f !== 'json')
      throw new ValidationError('format', `--format must be table or json, got "${f}"`);
    return f;
  }

  get clients(): MeshdClients {
    if (this.opened === undefined) {
      const t = Number(this.globals().timeout);
      if (!(Number.isInteger(t) && t >= 1 && t <= 3600))
        throw new ValidationError(
          'timeout',
          `--timeout must be 1..3600 seconds, got "${this.globals().timeout}"`,
        );
      this.opened = this.deps.connect(this.socketPath, t * 1000);
    }
    return this.opened;
  }

  out(line: string): void {
    this.deps.output.out(line);
  }

  /** JSON for `--format json` (proto3 JSON of each object), else the table. */
  print(json: unknown, tableText: () => string): void {
    this.out(this.format === 'json' ? JSON.stringify(json, null, 2) : tableText());
  }

  close(): void {
    this.opened?.close();
    this.opened = undefined;
  }
}

/** Repeatable option collector: `--env A=1 --env B=2`. */
export function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}
