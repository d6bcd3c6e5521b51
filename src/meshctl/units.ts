import { ValidationError } from '../common/errors.js';

/**
 * Human units on the command line, as swarm users type them:
 * durations `500ms`, `10s`, `1m30s`, `2h`; sizes `512k`, `64M`, `1G` (binary
 * multiples), or plain bytes.
 */
const DURATION_PART = /(\d+(?:\.\d+)?)(ms|s|m|h)/gy;
const DURATION_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

export function parseDurationMs(flag: string, text: string): number {
  const trimmed = text.trim();
  if (trimmed === '0') return 0;
  DURATION_PART.lastIndex = 0;
  let total = 0;
  let consumed = 0;
  for (let m = DURATION_PART.exec(trimmed); m !== null; m = DURATION_PART.exec(trimmed)) {
    total += Number(m[1]) * (DURATION_MS[m[2]!] ?? 0);
    consumed = DURATION_PART.lastIndex;
  }
  if (consumed === 0 || consumed !== trimmed.length)
    throw new ValidationError(
      flag,
      `--${flag} must be a duration like 500ms, 10s, 1m30s or 2h, got "${text}"`,
    );
  return Math.round(total);
}

const SIZE = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?$/i;
const SIZE_FACTOR: Record<string, number> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 };

export function parseSizeBytes(flag: string, text: string): number {
  const m = SIZE.exec(text.trim());
  if (m === null)
    throw new ValidationError(flag, `--${flag} must be a size like 512k, 64M or 1G, got "${text}"`);
  return Math.floor(Number(m[1]) * (SIZE_FACTOR[m[2]!.toLowerCase()] ?? 1));
}

export function parseIntInRange(flag: string, text: string, min: number, max: number): number {
  const n = Number(text);
  if (text.trim() === '' || !Number.isInteger(n) || n < min || n > max)
    throw new ValidationError(flag, `--${flag} must be an integer ${min}..${max}, got "${text}"`);
  return n;
}

/** `KEY=value` (value may contain `=`); the key must be non-empty. */
export function parseKeyValue(flag: string, text: string): [string, string] {
  const at = text.indexOf('=');
  if (at <= 0) throw new ValidationError(flag, `--${flag} must be KEY=VALUE, got "${text}"`);
  return [text.slice(0, at), text.slice(at + 1)];
}
