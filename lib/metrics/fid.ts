// The statistics half of FID and Inception Score, in float64 on the host, matching the standard evaluators:
// pytorch-fid's calculate_frechet_distance (also used by the ADM evaluator) and improved-gan's IS.
// Features and logits come from a network elsewhere; this file sees only flat row-major [N, dim] arrays.
import { type NpyArray, readNpz, writeNpz } from "../io/npz.ts";
import {
  checkShape,
  choleskyFactor,
  eighFactor,
  EPS,
  frobenius,
  lowerGramAdd,
  symmetricEigen,
  symmetrized,
} from "../linalg.ts";

export { symmetricEigen } from "../linalg.ts";
export type { SymmetricEigen } from "../linalg.ts";

// ---------------------------------------------------------------------------------------------------------
// Streaming mean and covariance.

/** Rows per internal chunk of `add`: bounds the transposed scratch copy to CHUNK·dim doubles. */
const CHUNK = 128;

/**
 * Mean and covariance of feature rows seen in batches, in float64, without keeping the rows.
 *
 * Scheme: each chunk of ≤ 128 rows is centred on its own mean (two passes over rows in memory) and its
 * co-moment Σ(x−x̄_b)(x−x̄_b)ᵀ is added; chunks are combined with Chan, Golub & LeVeque's pairwise update
 * (1979): M = M_a + M_b + δδᵀ·n_a·n_b/n, δ = x̄_b − x̄_a, mean = x̄_a + δ·n_b/n. Unlike raw sums Σx, Σxxᵀ,
 * which lose digits to cancellation in Σxxᵀ/n − x̄x̄ᵀ when |mean| ≫ std, every added term here is already
 * centred. Cost is the same dim²/2 multiply-adds per row. Only the lower triangle of M is kept up to date.
 */
export class FeatureStats {
  #dim: number;
  #n = 0;
  #mean: Float64Array;
  #m2: Float64Array; // co-moment, lower triangle, dim×dim
  #scratch: Float64Array | null = null;

  /** `dim` may be left out and is then fixed by the first `add`. */
  constructor(dim?: number) {
    if (dim !== undefined && (!Number.isInteger(dim) || dim < 1)) {
      throw new Error(`FeatureStats: bad dim ${dim}`);
    }
    this.#dim = dim ?? 0;
    this.#mean = new Float64Array(this.#dim);
    this.#m2 = new Float64Array(this.#dim * this.#dim);
  }

  /** Number of rows added. */
  get count(): number {
    return this.#n;
  }

  /** Feature dimension (0 until known). */
  get dim(): number {
    return this.#dim;
  }

  #fixDim(dim: number, what: string): void {
    if (this.#dim === 0) {
      this.#dim = dim;
      this.#mean = new Float64Array(dim);
      this.#m2 = new Float64Array(dim * dim);
    } else if (dim !== this.#dim) {
      throw new Error(`FeatureStats.${what}: dim ${dim} != ${this.#dim} of the rows added before`);
    }
  }

  /** Add `n` rows of `features` ([n, dim] row-major). A non-finite value is an error, and then nothing is added. */
  add(features: Float32Array | Float64Array, n: number, dim: number): void {
    checkShape(features.length, n, dim, "FeatureStats.add");
    for (let k = 0; k < features.length; k++) {
      if (!Number.isFinite(features[k])) {
        throw new Error(`FeatureStats.add: row ${Math.floor(k / dim)}, feature ${k % dim} is ${features[k]}`);
      }
    }
    this.#fixDim(dim, "add");
    for (let start = 0; start < n; start += CHUNK) {
      this.#addChunk(features, start, Math.min(n, start + CHUNK));
    }
  }

  #addChunk(x: Float32Array | Float64Array, r0: number, r1: number): void {
    const dim = this.#dim, b = r1 - r0;
    const mb = new Float64Array(dim);
    for (let r = r0; r < r1; r++) {
      const o = r * dim;
      for (let j = 0; j < dim; j++) mb[j] += x[o + j];
    }
    for (let j = 0; j < dim; j++) mb[j] /= b;
    // Centred chunk, transposed to [dim, b] so each co-moment entry is a dot product of two contiguous rows.
    if (this.#scratch === null || this.#scratch.length < dim * CHUNK) {
      this.#scratch = new Float64Array(dim * CHUNK);
    }
    const xt = this.#scratch;
    for (let r = 0; r < b; r++) {
      const o = (r0 + r) * dim;
      for (let j = 0; j < dim; j++) xt[j * b + r] = x[o + j] - mb[j];
    }
    lowerGramAdd(xt, dim, b, this.#m2);
    this.#combine(mb, b, null);
  }

  /** Chan's update with a part of `nb` rows, mean `mb` and (unless already added) co-moment `m2b`. */
  #combine(mb: Float64Array, nb: number, m2b: Float64Array | null): void {
    const dim = this.#dim, na = this.#n, n = na + nb;
    const mean = this.#mean, m2 = this.#m2;
    const delta = new Float64Array(dim);
    for (let j = 0; j < dim; j++) delta[j] = mb[j] - mean[j];
    const w = (na * nb) / n;
    for (let i = 0; i < dim; i++) {
      const o = i * dim, di = delta[i] * w;
      for (let j = 0; j <= i; j++) m2[o + j] += di * delta[j];
      if (m2b) { for (let j = 0; j <= i; j++) m2[o + j] += m2b[o + j]; }
    }
    for (let j = 0; j < dim; j++) mean[j] += delta[j] * (nb / n);
    this.#n = n;
  }

  /** Fold another accumulator's rows into this one (the result is as if all rows were added here). */
  merge(other: FeatureStats): void {
    if (other.#n === 0) return;
    this.#fixDim(other.#dim, "merge");
    // Copies, so that merging an accumulator into itself reads its state from before the update.
    this.#combine(other.#mean.slice(), other.#n, other === this ? other.#m2.slice() : other.#m2);
  }

  /** The mean row, [dim]. */
  mean(): Float64Array {
    if (this.#n === 0) throw new Error("FeatureStats.mean: no rows added");
    return this.#mean.slice();
  }

  /** The unbiased covariance (divisor n − 1, as np.cov(x, rowvar=False)), [dim, dim] row-major, symmetric. */
  covariance(): Float64Array {
    if (this.#n < 2) throw new Error(`FeatureStats.covariance: needs ≥ 2 rows, has ${this.#n}`);
    const dim = this.#dim, m2 = this.#m2, out = new Float64Array(dim * dim), s = 1 / (this.#n - 1);
    for (let i = 0; i < dim; i++) {
      for (let j = 0; j <= i; j++) out[i * dim + j] = out[j * dim + i] = m2[i * dim + j] * s;
    }
    return out;
  }
}

// ---------------------------------------------------------------------------------------------------------
// Fréchet distance.

/** Which factor F of the PSD covariance (Σ = FFᵀ) turns Tr√(Σ1Σ2) into a symmetric eigenproblem. */
export type FrechetFactor = "cholesky" | "eigh";

export interface FrechetOptions {
  /** Added to both diagonals when neither covariance is PSD beyond round-off (pytorch-fid's default 1e-6). */
  eps?: number;
  /**
   * "cholesky" (default): pivoted Cholesky, Σ = P L Lᵀ Pᵀ, ≈ 1.5n³ multiply-adds in all. "eigh": F = √Σ via
   * an eigendecomposition, the textbook √Σ1 Σ2 √Σ1, ≈ 4× slower. Both give the same eigenvalues.
   */
  factor?: FrechetFactor;
  /** Where the eps message goes (default console.warn; pytorch-fid prints it). */
  warn?: (message: string) => void;
}

export interface FrechetParts {
  /** ‖μ1 − μ2‖² + Tr Σ1 + Tr Σ2 − 2·traceSqrt. */
  fid: number;
  /** ‖μ1 − μ2‖². */
  meanTerm: number;
  /** Tr((Σ1Σ2)^½), the real part: eigenvalues below zero count as 0. */
  traceSqrt: number;
  /** Σ √|λ| over eigenvalues below −round-off: the imaginary part a complex sqrtm's trace would have. */
  traceSqrtImag: number;
  /** The eps that was added to both diagonals, or 0. */
  offset: number;
}

/**
 * Tr((Σ1Σ2)^½) = Σ √λ_i(Fᵀ Σ2 F) for any F with FFᵀ = Σ1: Σ1Σ2 = F(FᵀΣ2) and (FᵀΣ2)F share nonzero
 * eigenvalues, and Fᵀ Σ2 F is symmetric PSD when Σ2 is. If Σ1 is not PSD the roles swap (Σ2Σ1 has the same
 * eigenvalues); null if neither is PSD. Eigenvalues in [−tol, 0) are round-off and clamped to 0; those below
 * −tol are summed into `imag` as √|λ|, which is what a complex sqrtm would put in the trace's imaginary part.
 */
function traceSqrtProduct(s1: Float64Array, s2: Float64Array, n: number, factor: FrechetFactor) {
  const make = factor === "eigh" ? eighFactor : choleskyFactor;
  let f = make(s1, n), mid = s2;
  if (!f) [f, mid] = [make(s2, n), s1];
  if (!f) return null;
  const { c, r } = f(mid);
  const { values } = symmetricEigen(c, r, { vectors: false });
  const tol = n * EPS * frobenius(s1) * frobenius(s2);
  let real = 0, imag = 0;
  for (const lam of values) {
    if (lam > 0) real += Math.sqrt(lam);
    else if (lam < -tol) imag += Math.sqrt(-lam);
  }
  return { real, imag };
}

/**
 * The Fréchet distance between N(μ1, Σ1) and N(μ2, Σ2) (Dowson & Landau 1982; FID: Heusel et al. 2017):
 *   d² = ‖μ1 − μ2‖² + Tr(Σ1 + Σ2 − 2(Σ1Σ2)^½),
 * with its parts. All float64; Σ are [dim, dim] row-major and symmetrized first. Non-finite inputs give NaN.
 *
 * Tr((Σ1Σ2)^½) comes from a symmetric eigenproblem (see traceSqrtProduct), never a general complex sqrtm.
 * How this maps onto pytorch-fid's calculate_frechet_distance:
 * - Singular but PSD covariances (fewer samples than dims, dead features) need nothing here: the route is exact
 *   for them (the null space is cut off at round-off by the factor). pytorch-fid adds eps·I when scipy's sqrtm
 *   of the singular product comes back non-finite, and its value then differs from the exact one by O(√eps)
 *   per near-null direction; when sqrtm stays finite it is still off by √ of round-off (≈ 2e-8 relative for
 *   2048 features from 1000 samples) or raises on a spurious imaginary part (see tests/fid_test.ts).
 * - pytorch-fid keeps the real part of a complex sqrtm, which is our clamp of negative eigenvalues to 0, and
 *   raises if a diagonal imaginary part exceeds 1e-3. We have no diagonal, so we raise when the trace's
 *   imaginary part (√|λ| summed over eigenvalues below round-off) exceeds 1e-3, a slightly stricter test.
 * - eps·I is added to both covariances (inside the square root only; the Tr Σ terms stay, as in pytorch-fid)
 *   when neither Σ1 nor Σ2 is PSD beyond round-off, so no factor exists; if that is still so, it throws.
 * For identical inputs the result is round-off around 0 and may be slightly negative (pytorch-fid: likewise).
 */
export function frechetDistanceParts(
  mu1: ArrayLike<number>,
  sigma1: ArrayLike<number>,
  mu2: ArrayLike<number>,
  sigma2: ArrayLike<number>,
  dim: number,
  opts: FrechetOptions = {},
): FrechetParts {
  const { eps = 1e-6, factor = "cholesky", warn = console.warn } = opts;
  checkShape(mu1.length, 1, dim, "frechetDistance mu1");
  checkShape(mu2.length, 1, dim, "frechetDistance mu2");
  checkShape(sigma1.length, dim, dim, "frechetDistance sigma1");
  checkShape(sigma2.length, dim, dim, "frechetDistance sigma2");
  const nan = { fid: NaN, meanTerm: NaN, traceSqrt: NaN, traceSqrtImag: NaN, offset: 0 };
  for (const x of [mu1, mu2, sigma1, sigma2]) {
    for (let i = 0; i < x.length; i++) if (!Number.isFinite(x[i])) return nan;
  }

  let meanTerm = 0, traces = 0;
  for (let i = 0; i < dim; i++) meanTerm += (mu1[i] - mu2[i]) ** 2;
  for (let i = 0; i < dim; i++) traces += sigma1[i * dim + i] + sigma2[i * dim + i];
  const s1 = symmetrized(sigma1, dim), s2 = symmetrized(sigma2, dim);
  let offset = 0;
  let t = traceSqrtProduct(s1, s2, dim, factor);
  if (!t) {
    offset = eps;
    warn(`frechetDistance: neither covariance is PSD beyond round-off; adding ${eps} to both diagonals`);
    for (let i = 0; i < dim; i++) {
      s1[i * dim + i] += eps;
      s2[i * dim + i] += eps;
    }
    t = traceSqrtProduct(s1, s2, dim, factor);
    if (!t) {
      throw new Error(
        `frechetDistance: neither covariance is positive semidefinite, even with ${eps} added to the diagonals`,
      );
    }
  }
  if (t.imag > 1e-3) {
    throw new Error(
      `frechetDistance: Tr((Σ1Σ2)^½) has imaginary component ${t.imag} (> 1e-3): Σ1Σ2 has negative ` +
        "eigenvalues beyond round-off, so a covariance is not positive semidefinite",
    );
  }
  const fid = meanTerm + traces - 2 * t.real;
  return { fid, meanTerm, traceSqrt: t.real, traceSqrtImag: t.imag, offset };
}

/** FID from two Gaussians' statistics; see `frechetDistanceParts` for the method and the near-singular cases. */
export function frechetDistance(
  mu1: ArrayLike<number>,
  sigma1: ArrayLike<number>,
  mu2: ArrayLike<number>,
  sigma2: ArrayLike<number>,
  dim: number,
  opts: FrechetOptions = {},
): number {
  return frechetDistanceParts(mu1, sigma1, mu2, sigma2, dim, opts).fid;
}

// ---------------------------------------------------------------------------------------------------------
// Inception Score.

export interface InceptionScore {
  mean: number;
  /** Population std over splits (np.std, ddof 0), as improved-gan reports. */
  std: number;
  /** exp(E_x KL) of each split. */
  scores: number[];
}

/**
 * IS = exp(E_x KL(p(y|x) ‖ p(y))) (Salimans et al. 2016), p(y) the mean of p(y|x) over the split, computed on
 * `splits` contiguous parts, rows [⌊i·n/splits⌋, ⌊(i+1)·n/splits⌋) as improved-gan does (no shuffling).
 * `logits` is [n, classes]; p(y|x) = softmax in float64 via log-sum-exp, and 0·log 0 terms count as 0.
 */
export function inceptionScore(
  logits: Float32Array | Float64Array,
  n: number,
  classes: number,
  splits = 10,
): InceptionScore {
  checkShape(logits.length, n, classes, "inceptionScore");
  if (!Number.isInteger(splits) || splits < 1 || splits > n) {
    throw new Error(`inceptionScore: splits must be an integer in [1, n = ${n}], got ${splits}`);
  }
  const logp = new Float64Array(classes);
  const rowLogSoftmax = (r: number) => {
    const o = r * classes;
    let max = -Infinity;
    for (let c = 0; c < classes; c++) max = Math.max(max, logits[o + c]);
    if (!Number.isFinite(max)) throw new Error(`inceptionScore: row ${r} has a non-finite logit`);
    let sum = 0;
    for (let c = 0; c < classes; c++) sum += Math.exp(logits[o + c] - max);
    const lse = max + Math.log(sum);
    for (let c = 0; c < classes; c++) logp[c] = logits[o + c] - lse;
  };
  const scores: number[] = [];
  const py = new Float64Array(classes);
  for (let s = 0; s < splits; s++) {
    const lo = Math.floor((s * n) / splits), hi = Math.floor(((s + 1) * n) / splits);
    py.fill(0);
    for (let r = lo; r < hi; r++) {
      rowLogSoftmax(r);
      for (let c = 0; c < classes; c++) py[c] += Math.exp(logp[c]);
    }
    for (let c = 0; c < classes; c++) py[c] = Math.log(py[c] / (hi - lo));
    let kl = 0;
    for (let r = lo; r < hi; r++) {
      rowLogSoftmax(r);
      for (let c = 0; c < classes; c++) {
        const p = Math.exp(logp[c]);
        if (p > 0) kl += p * (logp[c] - py[c]);
      }
    }
    scores.push(Math.exp(kl / (hi - lo)));
  }
  const mean = scores.reduce((a, b) => a + b, 0) / splits;
  const std = Math.sqrt(scores.reduce((a, b) => a + (b - mean) ** 2, 0) / splits);
  return { mean, std, scores };
}

// ---------------------------------------------------------------------------------------------------------
// Reference statistics files, pytorch-fid's layout: an .npz with mu [dim] and sigma [dim, dim], float64.

export interface FidStats {
  mu: Float64Array;
  sigma: Float64Array;
  dim: number;
}

/** Write {mu, sigma} as float64 `mu` [dim] and `sigma` [dim, dim] in an .npz (np.load reads it), and `features` [n, dim] float32 when given. */
export async function saveStats(
  path: string,
  stats: { mu: ArrayLike<number>; sigma: ArrayLike<number>; features?: Float32Array },
): Promise<void> {
  const dim = stats.mu.length;
  if (dim < 1) throw new Error("saveStats: mu is empty");
  if (stats.sigma.length !== dim * dim) {
    throw new Error(`saveStats: sigma has ${stats.sigma.length} values, mu's dim ${dim} needs ${dim * dim}`);
  }
  if (stats.features && stats.features.length % dim !== 0) {
    throw new Error(`saveStats: ${stats.features.length} feature values are not whole rows of ${dim}`);
  }
  await writeNpz(path, {
    mu: { shape: [dim], data: Float64Array.from(stats.mu) },
    sigma: { shape: [dim, dim], data: Float64Array.from(stats.sigma) },
    // The rows themselves (float32, as the network gave them), for precision/recall (`fid:ref --pr`).
    ...(stats.features
      ? { features: { shape: [stats.features.length / dim, dim], data: stats.features } }
      : {}),
  });
}

/**
 * Read `mu` and `sigma` from an .npz (a path, its bytes, or its arrays as readNpz gave them) in pytorch-fid's
 * layout; other members (the ADM evaluator's reference batches also hold mu_s, sigma_s, arr_0) are ignored.
 * float32 is widened to float64. Errors say which key is missing or which shape, dtype or value is wrong.
 */
export function loadStats(source: string | Uint8Array | Map<string, NpyArray>, name?: string): FidStats {
  name ??= typeof source === "string" ? source : "stats npz";
  const arrays = source instanceof Map ? source : readNpz(source, name);
  const get = (key: string) => {
    const arr = arrays.get(key);
    if (!arr) {
      throw new Error(`${name}: no '${key}' array (has: ${[...arrays.keys()].join(", ") || "nothing"})`);
    }
    if (arr.dtype !== "float64" && arr.dtype !== "float32") {
      throw new Error(`${name}: '${key}' is ${arr.dtype}, expected float64 (or float32)`);
    }
    return arr;
  };
  const mu = get("mu"), sigma = get("sigma");
  if (mu.shape.length !== 1 || mu.shape[0] < 1) {
    throw new Error(`${name}: 'mu' has shape (${mu.shape}), expected a non-empty vector (dim,)`);
  }
  const dim = mu.shape[0];
  if (sigma.shape.length !== 2 || sigma.shape[0] !== dim || sigma.shape[1] !== dim) {
    throw new Error(`${name}: 'sigma' has shape (${sigma.shape}), expected (${dim}, ${dim}) to match 'mu'`);
  }
  const out = {
    mu: Float64Array.from(mu.data as Float64Array),
    sigma: Float64Array.from(sigma.data as Float64Array),
  };
  for (const [key, data] of Object.entries(out)) {
    const bad = data.findIndex((v) => !Number.isFinite(v));
    if (bad >= 0) {
      throw new Error(`${name}: '${key}' has a non-finite value (${data[bad]}) at flat index ${bad}`);
    }
  }
  return { ...out, dim };
}
