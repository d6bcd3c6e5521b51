import { randomBytes } from 'node:crypto';
import type { Rng } from './rng.js';

/**
 * Object IDs: 25 lowercase base32 characters (125 random bits), like swarm's.
 * Unguessable when drawn from node:crypto (node IDs end up in certificate CNs);
 * reproducible when drawn from a seeded Rng (simulations).
 */
const ALPHABET = 'abcdefghijklmnopqrstuvwxyz234567';
export const ID_LENGTH = 25;
const ID_PATTERN = /^[a-z2-7]{25}$/;

export function newId(): string {
  const bytes = randomBytes(ID_LENGTH);
  let id = '';
  for (const b of bytes) id += ALPHABET[b & 31];
  return id;
}

export function newIdFrom(rng: Rng): string {
  let id = '';
  for (let i = 0; i < ID_LENGTH; i++) id += ALPHABET[rng.int(32)];
  return id;
}

export function isId(value: string): boolean {
  return ID_PATTERN.test(value);
}
