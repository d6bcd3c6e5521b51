import { type Logger, pino } from 'pino';

export type { Logger } from 'pino';

/**
 * The one logger. Subsystems take a child: `logger.child({ subsystem: 'raft' })`
 * or `subsystemLogger('raft')`. Level comes from LOG_LEVEL; under the test
 * runner (MESHD_TEST=1) the default is silent so test output stays readable.
 */
function defaultLevel(): string {
  const fromEnv = process.env['LOG_LEVEL'];
  if (fromEnv !== undefined && fromEnv !== '') return fromEnv;
  return process.env['MESHD_TEST'] === '1' ? 'silent' : 'info';
}

export const rootLogger: Logger = pino({
  level: defaultLevel(),
  base: { pid: process.pid },
  timestamp: pino.stdTimeFunctions.isoTime,
  // Private keys and tokens never reach a log line, whatever a caller passes.
  redact: {
    paths: ['key', 'privateKey', '*.privateKey', 'token', '*.token', 'secret'],
    censor: '[redacted]',
  },
});

export function subsystemLogger(subsystem: string, bindings: Record<string, unknown> = {}): Logger {
  return rootLogger.child({ subsystem, ...bindings });
}
