// Seeded random numbers on the host, with a state that can be saved and restored exactly (for resume).
import { xoroshiro128plusFromState } from "pure-rand/generator/xoroshiro128plus";
import { uniformFloat64 } from "pure-rand/distribution/uniformFloat64";
import { uniformInt } from "pure-rand/distribution/uniformInt";
import type { JumpableRandomGenerator } from "pure-rand/types/JumpableRandomGenerator";

/** The generator's whole state: four 32-bit words of xoroshiro128+. */
export type RngState = readonly number[];

/**
 * Four well-mixed 32-bit words from an integer seed (SplitMix32: a Weyl sequence through a 32-bit finalizer).
 * pure-rand's own xoroshiro128plus(seed) uses the raw seed as state, whose first outputs are ≈ 1 for small
 * seeds (seed 3 → uniform 0.99999…, a 5σ normal); mixing first avoids that.
 */
function seedState(seed: number): number[] {
  let x = seed | 0;
  return Array.from({ length: 4 }, () => {
    x = (x + 0x9e3779b9) | 0;
    let z = x;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return (z ^ (z >>> 16)) | 0;
  });
}

export class Rng {
  private constructor(private gen: JumpableRandomGenerator) {}

  /** A generator seeded with an integer. */
  static seeded(seed: number): Rng {
    if (!Number.isInteger(seed)) throw new Error(`Rng seed must be an integer, got ${seed}`);
    return new Rng(xoroshiro128plusFromState(seedState(seed)));
  }

  /** A generator that continues exactly where the one that produced `state` stopped. */
  static fromState(state: RngState): Rng {
    if (state.length !== 4 || !state.every(Number.isInteger)) {
      throw new Error(`Rng state must be 4 integers (xoroshiro128+), got ${JSON.stringify(state)}`);
    }
    return new Rng(xoroshiro128plusFromState(state));
  }

  state(): RngState {
    return [...this.gen.getState()];
  }

  /** Uniform in [0, 1), 53 random bits. */
  uniform(): number {
    return uniformFloat64(this.gen);
  }

  /** Uniform integer in {min, …, max}, unbiased. */
  int(min: number, max: number): number {
    return uniformInt(this.gen, min, max);
  }

  /** Standard normal by Box–Muller (two uniforms per value, no cached spare, so the state says everything). */
  normal(): number {
    const u1 = 1 - this.uniform(); // (0, 1]: log is finite
    const u2 = this.uniform();
    return Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
  }

  /** A 32-bit integer seed for TF.js random ops, drawn from this stream. */
  seed(): number {
    return this.int(0, 0x7fffffff);
  }
}
