/**
 * Seeded pseudo-random numbers for pure code and simulations
 * (xoshiro128**, seeded through splitmix32). The same seed gives the same
 * sequence on every platform and Node version, so a failing simulation seed
 * replays exactly. Not for secrets: use node:crypto for those.
 */
export interface Rng {
  /** Uniform float in [0, 1). */
  next(): number;
  /** Uniform integer in [0, bound); bound must be a positive integer ≤ 2^32. */
  int(bound: number): number;
  /** Uniform integer in [min, max], both inclusive. */
  intBetween(min: number, max: number): number;
  /** A new independent generator derived from this one. */
  fork(): Rng;
}

function splitmix32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x9e3779b9) >>> 0;
    let z = state;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return (z ^ (z >>> 16)) >>> 0;
  };
}

export class SeededRng implements Rng {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;

  constructor(seed: number) {
    if (!Number.isFinite(seed)) throw new RangeError(`SeededRng: seed must be a finite number, got ${seed}`);
    const mix = splitmix32(Math.floor(seed) >>> 0);
    this.s0 = mix();
    this.s1 = mix();
    this.s2 = mix();
    this.s3 = mix();
    if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) this.s0 = 1;
  }

  private nextU32(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5) >>> 0, 7), 9) >>> 0;
    const t = (this.s1 << 9) >>> 0;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    this.s0 >>>= 0;
    this.s1 >>>= 0;
    this.s2 >>>= 0;
    this.s3 >>>= 0;
    return result;
  }

  next(): number {
    return this.nextU32() / 0x1_0000_0000;
  }

  int(bound: number): number {
    if (!Number.isInteger(bound) || bound <= 0 || bound > 0x1_0000_0000)
      throw new RangeError(`Rng.int: bound must be an integer in 1..2^32, got ${bound}`);
    // Rejection sampling keeps the distribution exactly uniform.
    const limit = 0x1_0000_0000 - (0x1_0000_0000 % bound);
    for (;;) {
      const x = this.nextU32();
      if (x < limit) return x % bound;
    }
  }

  intBetween(min: number, max: number): number {
    if (max < min) throw new RangeError(`Rng.intBetween: max ${max} < min ${min}`);
    return min + this.int(max - min + 1);
  }

  fork(): Rng {
    return new SeededRng(this.nextU32());
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}
