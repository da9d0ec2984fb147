// Noise-level schedules of consistency training: the Karras grid (Sec. 2), the discretization
// curricula N(k) of CT and iCT, CT's teacher EMA μ(k), and iCT's lognormal distribution over the grid.
//
// Indexing: the paper numbers noise levels σ_1 … σ_N and pairs (σ_i, σ_{i+1}) by i ∈ ⟦1, N−1⟧.
// Arrays here are 0-based: sigmas[j] = σ_{j+1}, and pair index j means (sigmas[j], sigmas[j+1]).
import erf from "@stdlib/math-base-special-erf";
import erfc from "@stdlib/math-base-special-erfc";
import type { Rng } from "./rng.ts";
import type { Sigma, SigmaGrid } from "./types.ts";

export const SIGMA_MIN: Sigma = 0.002;
export const SIGMA_MAX: Sigma = 80;
export const RHO = 7;

export interface KarrasOptions {
  sigmaMin?: Sigma;
  sigmaMax?: Sigma;
  rho?: number;
}

/** σ_1 … σ_N, ascending (Sec. 2, the grid below Eq. 2). σ_1 = σ_min and σ_N = σ_max exactly. */
export function karrasSigmas(n: number, opts: KarrasOptions = {}): SigmaGrid {
  const { sigmaMin = SIGMA_MIN, sigmaMax = SIGMA_MAX, rho = RHO } = opts;
  if (!Number.isInteger(n) || n < 2) throw new Error(`karrasSigmas needs an integer n >= 2, got ${n}`);
  if (!(sigmaMin > 0 && sigmaMax > sigmaMin)) {
    throw new Error(`karrasSigmas needs 0 < sigmaMin < sigmaMax, got ${sigmaMin}, ${sigmaMax}`);
  }
  const lo = sigmaMin ** (1 / rho);
  const hi = sigmaMax ** (1 / rho);
  const sigmas = new Float64Array(n);
  for (let i = 0; i < n; i++) sigmas[i] = (lo + (i / (n - 1)) * (hi - lo)) ** rho; // σ_i, Sec. 2
  // The ρ-th power of a ρ-th root is off by an ulp or so: pin the ends, where c_skip/c_out must be exact.
  sigmas[0] = sigmaMin;
  sigmas[n - 1] = sigmaMax;
  return sigmas;
}

function checkStep(k: number, totalIters: number): void {
  if (!Number.isInteger(k) || k < 0) throw new Error(`training step k must be an integer >= 0, got ${k}`);
  if (!Number.isInteger(totalIters) || totalIters < 1) {
    throw new Error(`totalIters K must be an integer >= 1, got ${totalIters}`);
  }
}

/**
 * iCT's exponential curriculum (Sec. 3.4): N(k) = min(s0·2^⌊k/K′⌋, s1) + 1 with
 * K′ = ⌊K / (log2⌊s1/s0⌋ + 1)⌋. For K = 400,000: K′ = 50,000, N goes 11, 21, 41, …, 1281.
 */
export function ictDiscretizationSteps(k: number, totalIters: number, s0 = 10, s1 = 1280): number {
  checkStep(k, totalIters);
  const kPrime = Math.floor(totalIters / (Math.log2(Math.floor(s1 / s0)) + 1));
  if (kPrime < 1) throw new Error(`totalIters ${totalIters} is too small for s0=${s0}, s1=${s1}: K' = 0`);
  return Math.min(s0 * 2 ** Math.floor(k / kPrime), s1) + 1;
}

/** CT's square-root curriculum (Song et al. 2023): N(k) = ⌈√(k/K·((s1+1)² − s0²) + s0²) − 1⌉ + 1. */
export function ctDiscretizationSteps(k: number, totalIters: number, s0 = 2, s1 = 150): number {
  checkStep(k, totalIters);
  return Math.ceil(Math.sqrt((k / totalIters) * ((s1 + 1) ** 2 - s0 ** 2) + s0 ** 2) - 1) + 1;
}

/** CT's teacher EMA decay: μ(k) = exp(s0·ln μ0 / N(k)), with N(k) the square-root curriculum. */
export function ctTeacherEmaDecay(k: number, totalIters: number, mu0 = 0.9, s0 = 2, s1 = 150): number {
  return Math.exp((s0 * Math.log(mu0)) / ctDiscretizationSteps(k, totalIters, s0, s1));
}

/** P(a < X < b) for X ~ N(0, 1) after dividing by √2: ½(erf(b) − erf(a)), computed without cancellation. */
function gaussianMassBetween(a: number, b: number): number {
  if (a >= 0) return 0.5 * (erfc(a) - erfc(b)); // both in the upper tail
  if (b <= 0) return 0.5 * (erfc(-b) - erfc(-a)); // both in the lower tail
  return 0.5 * (erf(b) - erf(a));
}

/**
 * iCT's discrete lognormal noise distribution (Sec. 3.5):
 * p(i) ∝ erf((ln σ_{i+1} − P_mean)/(√2·P_std)) − erf((ln σ_i − P_mean)/(√2·P_std)), i = 1 … N−1.
 * Returns N−1 probabilities summing to 1.
 */
export function lognormalNoiseProbabilities(sigmas: SigmaGrid, pMean = -1.1, pStd = 2.0): Float64Array {
  if (sigmas.length < 2) throw new Error(`need at least 2 noise levels, got ${sigmas.length}`);
  if (!(pStd > 0)) throw new Error(`pStd must be > 0, got ${pStd}`);
  const z = (sigma: Sigma) => (Math.log(sigma) - pMean) / (Math.SQRT2 * pStd);
  const p = new Float64Array(sigmas.length - 1);
  let total = 0;
  for (let j = 0; j < p.length; j++) {
    p[j] = gaussianMassBetween(z(sigmas[j]), z(sigmas[j + 1]));
    total += p[j];
  }
  for (let j = 0; j < p.length; j++) p[j] /= total;
  return p;
}

/** iCT's weighting λ(σ_i) = 1 / (σ_{i+1} − σ_i) (Sec. 3.1), one value per pair i = 1 … N−1. */
export function ictWeighting(sigmas: SigmaGrid): Float64Array {
  const lambda = new Float64Array(sigmas.length - 1);
  for (let j = 0; j < lambda.length; j++) lambda[j] = 1 / (sigmas[j + 1] - sigmas[j]);
  return lambda;
}

/** CT's weighting λ(σ_i) = 1 for every pair. */
export function uniformWeighting(sigmas: SigmaGrid): Float64Array {
  return new Float64Array(sigmas.length - 1).fill(1);
}

/** Draw `count` pair indices j (0-based: the pair (σ_{j+1}, σ_{j+2})) from the probabilities `p` (inverse CDF). */
export function sampleNoiseIndices(p: Float64Array, count: number, rng: Rng): Int32Array {
  const cdf = new Float64Array(p.length);
  let acc = 0;
  for (let j = 0; j < p.length; j++) cdf[j] = acc += p[j];
  const out = new Int32Array(count);
  for (let b = 0; b < count; b++) {
    const u = rng.uniform() * acc; // scale by the total so round-off in Σp cannot push u past the end
    let lo = 0;
    let hi = p.length - 1;
    while (lo < hi) { // first j with cdf[j] > u
      const mid = (lo + hi) >> 1;
      if (cdf[mid] > u) hi = mid;
      else lo = mid + 1;
    }
    out[b] = lo;
  }
  return out;
}

/** iCT: pair indices under the discrete lognormal distribution of `lognormalNoiseProbabilities`. */
export function sampleLognormalIndices(
  sigmas: SigmaGrid,
  count: number,
  rng: Rng,
  pMean = -1.1,
  pStd = 2.0,
): Int32Array {
  return sampleNoiseIndices(lognormalNoiseProbabilities(sigmas, pMean, pStd), count, rng);
}

/** CT: pair indices i ~ U⟦1, N−1⟧ (returned 0-based). */
export function sampleUniformIndices(sigmas: SigmaGrid, count: number, rng: Rng): Int32Array {
  const out = new Int32Array(count);
  for (let b = 0; b < count; b++) out[b] = rng.int(0, sigmas.length - 2);
  return out;
}
