// The statistics half of FID and Inception Score, in float64 on the host, matching the standard evaluators:
// pytorch-fid's calculate_frechet_distance (also used by the ADM evaluator) and improved-gan's IS.
// Features and logits come from a network elsewhere; this file sees only flat row-major [N, dim] arrays.
import { readNpz, writeNpz } from "../data/npz.ts";

const EPS = 2 ** -52;

function checkShape(length: number, n: number, dim: number, what: string): void {
  if (!Number.isInteger(n) || n < 0 || !Number.isInteger(dim) || dim < 1) {
    throw new Error(`${what}: bad shape [${n}, ${dim}]`);
  }
  if (length !== n * dim) throw new Error(`${what}: ${length} values is not [${n}, ${dim}]`);
}

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

/**
 * m[i][j] += ⟨xt_i, xt_j⟩ for j ≤ i; xt is [dim, b]. Tiled so a block of 64 rows stays in cache, and 2×2
 * register-blocked (four dot products share each pair of loads).
 */
function lowerGramAdd(xt: Float64Array, dim: number, b: number, m: Float64Array): void {
  const T = 64;
  for (let j0 = 0; j0 < dim; j0 += T) {
    const j1 = Math.min(dim, j0 + T);
    let i = j0;
    for (; i + 1 < dim; i += 2) {
      const oi = i * b, oi1 = oi + b, jEnd = Math.min(j1, i + 2);
      let j = j0;
      for (; j + 1 < jEnd; j += 2) {
        const oj = j * b, oj1 = oj + b;
        let s00 = 0, s01 = 0, s10 = 0, s11 = 0;
        for (let k = 0; k < b; k++) {
          const a0 = xt[oi + k], a1 = xt[oi1 + k], c0 = xt[oj + k], c1 = xt[oj1 + k];
          s00 += a0 * c0;
          s01 += a0 * c1;
          s10 += a1 * c0;
          s11 += a1 * c1;
        }
        m[i * dim + j] += s00;
        m[(i + 1) * dim + j] += s10;
        m[(i + 1) * dim + j + 1] += s11;
        if (j + 1 <= i) m[i * dim + j + 1] += s01; // j + 1 = i + 1 is above row i's diagonal
      }
      if (j < jEnd) { // jEnd − j0 odd: j ≤ i here
        m[i * dim + j] += dot(xt, oi, xt, j * b, b);
        m[(i + 1) * dim + j] += dot(xt, oi1, xt, j * b, b);
      }
    }
    if (i < dim) { // last row when dim − j0 is odd
      const jEnd = Math.min(j1, i + 1);
      for (let j = j0; j < jEnd; j++) m[i * dim + j] += dot(xt, i * b, xt, j * b, b);
    }
  }
}

/** Σ_k a[ao+k]·b[bo+k], four accumulators (breaks the add latency chain). */
function dot(a: Float64Array, ao: number, b: Float64Array, bo: number, len: number): number {
  let s0 = 0, s1 = 0, s2 = 0, s3 = 0, k = 0;
  for (; k + 3 < len; k += 4) {
    s0 += a[ao + k] * b[bo + k];
    s1 += a[ao + k + 1] * b[bo + k + 1];
    s2 += a[ao + k + 2] * b[bo + k + 2];
    s3 += a[ao + k + 3] * b[bo + k + 3];
  }
  for (; k < len; k++) s0 += a[ao + k] * b[bo + k];
  return (s0 + s1) + (s2 + s3);
}

/**
 * out[i·ldo + j] = Σ_k a[i·len + k]·b[j·len + k] (A Bᵀ for row-major A [ra, len], B [rb, len]), for j ≤ i only
 * when `lower`. The sum starts at k = i when `aZeroBeforeRow` (row i of A is zero before column i), at k = j
 * when `bZeroBeforeRow`. Tiles of 16 B rows stay in cache; 2×2 blocks share loads. Edge rows are computed
 * twice and written once.
 */
function rowDots(
  a: Float64Array,
  ra: number,
  b: Float64Array,
  rb: number,
  len: number,
  out: Float64Array,
  ldo: number,
  lower: boolean,
  aZeroBeforeRow: boolean,
  bZeroBeforeRow: boolean,
): void {
  const T = 16;
  for (let jt = 0; jt < rb; jt += T) {
    const jtEnd = Math.min(rb, jt + T);
    for (let i = lower ? jt - (jt % 2) : 0; i < ra; i += 2) {
      const i1 = Math.min(i + 1, ra - 1), oi = i * len, oi1 = i1 * len;
      const jEnd = lower ? Math.min(jtEnd, i1 + 1) : jtEnd;
      for (let j = jt; j < jEnd; j += 2) {
        const j1 = Math.min(j + 1, jEnd - 1), oj = j * len, oj1 = j1 * len;
        const from = aZeroBeforeRow ? i : bZeroBeforeRow ? j : 0;
        let s00 = 0, s01 = 0, s10 = 0, s11 = 0;
        for (let k = from; k < len; k++) {
          const a0 = a[oi + k], a1 = a[oi1 + k], c0 = b[oj + k], c1 = b[oj1 + k];
          s00 += a0 * c0;
          s01 += a0 * c1;
          s10 += a1 * c0;
          s11 += a1 * c1;
        }
        if (!lower || j <= i) out[i * ldo + j] = s00;
        if (j1 !== j && (!lower || j1 <= i)) out[i * ldo + j1] = s01;
        if (i1 !== i) {
          out[i1 * ldo + j] = s10;
          if (j1 !== j) out[i1 * ldo + j1] = s11;
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// Symmetric eigensolver: Householder tridiagonalization, then implicit QL with Wilkinson-type shifts
// (Golub & Van Loan §8.3; Wilkinson & Reinsch's tred2/tql2). Both are O(n³) and backward stable.

/**
 * Reduce the symmetric matrix held in the lower triangle of `a` (n×n row-major, overwritten) to tridiagonal
 * T = Qᵀ A Q: d[i] = T_ii, e[i] = T_{i,i−1} (e[0] = 0). Row i is reduced last-to-first by a reflector
 * H_i = I − β v vᵀ acting on coordinates < i; v is left in row i of `a`. Returns Qᵀ = H_1⋯H_{n−1} if asked.
 */
function tridiagonalize(a: Float64Array, n: number, d: Float64Array, e: Float64Array, wantQ: boolean) {
  const beta = new Float64Array(n);
  const p = new Float64Array(n);
  for (let i = n - 1; i >= 1; i--) {
    const ri = i * n, l = i - 1;
    d[i] = a[ri + i];
    let ss = 0;
    for (let k = 0; k < l; k++) ss += a[ri + k] * a[ri + k];
    const xl = a[ri + l];
    if (ss === 0) { // row already tridiagonal
      e[i] = xl;
      continue;
    }
    // H x = α e_l with α = −sign(x_l)‖x‖: v = x − α e_l, β = 2/vᵀv = 1/(‖x‖(‖x‖ + |x_l|)).
    const norm = Math.sqrt(ss + xl * xl);
    const alpha = xl >= 0 ? -norm : norm;
    const b = 1 / (norm * (norm + Math.abs(xl)));
    a[ri + l] = xl - alpha;
    e[i] = alpha;
    beta[i] = b;
    // H B H = B − v wᵀ − w vᵀ on the leading i×i block B, with p = βBv, w = p − (β vᵀp / 2) v.
    p.fill(0, 0, i);
    for (let r = 0; r < i; r++) { // p = B v from the lower triangle, row by row
      const rr = r * n, vr = a[ri + r];
      let s = 0;
      for (let c = 0; c < r; c++) {
        const arc = a[rr + c];
        s += arc * a[ri + c];
        p[c] += arc * vr;
      }
      p[r] += s + a[rr + r] * vr;
    }
    let vp = 0;
    for (let r = 0; r < i; r++) {
      p[r] *= b;
      vp += a[ri + r] * p[r];
    }
    const half = 0.5 * b * vp;
    for (let r = 0; r < i; r++) p[r] -= half * a[ri + r];
    for (let r = 0; r < i; r++) {
      const rr = r * n, vr = a[ri + r], wr = p[r];
      for (let c = 0; c <= r; c++) a[rr + c] -= vr * p[c] + wr * a[ri + c];
    }
  }
  d[0] = a[0];
  if (!wantQ) return null;
  // Qᵀ = H_1 H_2 ⋯ H_{n−1}, built left to right: Qᵀ ← Qᵀ H_i touches only rows and columns < i.
  const qt = new Float64Array(n * n);
  for (let k = 0; k < n; k++) qt[k * n + k] = 1;
  for (let i = 1; i < n; i++) {
    const b = beta[i];
    if (b === 0) continue;
    const ri = i * n;
    for (let r = 0; r < i; r++) {
      const rr = r * n;
      const t = b * dot(qt, rr, a, ri, i);
      for (let c = 0; c < i; c++) qt[rr + c] -= t * a[ri + c];
    }
  }
  return qt;
}

/**
 * Eigenvalues of the symmetric tridiagonal (d, off), off[k] = T_{k,k+1}, by implicit QL with a shift from the
 * leading 2×2 block; results in d (unsorted). Rotations are applied to rows i, i+1 of `zt` when given, so
 * that zt = Vᵀ holds eigenvectors as rows.
 */
function tridiagonalQL(d: Float64Array, off: Float64Array, n: number, zt: Float64Array | null): void {
  const MAX_ITER = 60;
  for (let l = 0; l < n; l++) {
    for (let iter = 0;; iter++) {
      let m = l;
      for (; m < n - 1; m++) { // first negligible off-diagonal at or below l splits the matrix
        if (Math.abs(off[m]) <= EPS * (Math.abs(d[m]) + Math.abs(d[m + 1]))) break;
      }
      if (m === l) break;
      if (iter === MAX_ITER) throw new Error(`symmetricEigen: QL did not converge for eigenvalue ${l}`);
      let g = (d[l + 1] - d[l]) / (2 * off[l]);
      let r = Math.hypot(g, 1);
      g = d[m] - d[l] + off[l] / (g + (g >= 0 ? r : -r));
      let s = 1, c = 1, p = 0, underflow = false;
      for (let i = m - 1; i >= l; i--) { // chase the bulge from m up to l with Givens rotations
        const f = s * off[i], b = c * off[i];
        r = Math.hypot(f, g);
        off[i + 1] = r;
        if (r === 0) {
          d[i + 1] -= p;
          off[m] = 0;
          underflow = true;
          break;
        }
        s = f / r;
        c = g / r;
        g = d[i + 1] - p;
        r = (d[i] - g) * s + 2 * c * b;
        p = s * r;
        d[i + 1] = g + p;
        g = c * r - b;
        if (zt) {
          const oi = i * n, oj = oi + n;
          for (let k = 0; k < n; k++) {
            const zi = zt[oi + k], zj = zt[oj + k];
            zt[oj + k] = s * zi + c * zj;
            zt[oi + k] = c * zi - s * zj;
          }
        }
      }
      if (underflow) continue;
      d[l] -= p;
      off[l] = g;
      off[m] = 0;
    }
  }
}

export interface SymmetricEigen {
  /** Ascending. */
  values: Float64Array;
  /** n×n row-major, column j is the unit eigenvector of values[j] (numpy.linalg.eigh's layout); null if not asked. */
  vectors: Float64Array | null;
}

/**
 * Eigen-decomposition A = V diag(values) Vᵀ of a symmetric n×n matrix (row-major; only the lower triangle is
 * read, as eigh's default). Householder tridiagonalization + implicit QL, float64. Values only costs ≈ 2n³/3
 * multiply-adds (≈ 5 s at n = 2048 here); with vectors ≈ 5× longer.
 */
export function symmetricEigen(
  a: ArrayLike<number>,
  n: number,
  opts: { vectors?: boolean } = {},
): SymmetricEigen {
  if (n === 0 && a.length === 0) {
    return { values: new Float64Array(0), vectors: opts.vectors === false ? null : new Float64Array(0) };
  }
  checkShape(a.length, n, n, "symmetricEigen");
  const wantVectors = opts.vectors ?? true;
  const work = Float64Array.from(a);
  const d = new Float64Array(n), e = new Float64Array(n);
  const zt = tridiagonalize(work, n, d, e, wantVectors);
  const off = new Float64Array(n);
  for (let k = 0; k + 1 < n; k++) off[k] = e[k + 1];
  tridiagonalQL(d, off, n, zt);
  const order = Array.from({ length: n }, (_, k) => k).sort((x, y) => d[x] - d[y]);
  const values = Float64Array.from(order, (k) => d[k]);
  if (!zt) return { values, vectors: null };
  const vectors = new Float64Array(n * n);
  for (let j = 0; j < n; j++) {
    const o = order[j] * n;
    for (let k = 0; k < n; k++) vectors[k * n + j] = zt[o + k];
  }
  return { values, vectors };
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

/** Symmetric copy (A + Aᵀ)/2, so round-off asymmetry in stored covariances does not matter. */
function symmetrized(s: ArrayLike<number>, n: number): Float64Array {
  const out = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) out[i * n + j] = out[j * n + i] = 0.5 * (s[i * n + j] + s[j * n + i]);
  }
  return out;
}

function frobenius(s: Float64Array): number {
  let t = 0;
  for (let k = 0; k < s.length; k++) t += s[k] * s[k];
  return Math.sqrt(t);
}

/** Round-off level for a PSD test of an n×n matrix: n·ε·‖S‖_F ≥ the backward error of its factorizations. */
function roundoff(s: Float64Array, n: number): number {
  return n * EPS * frobenius(s);
}

/** A factor F (Σ = FFᵀ, n×r) of a PSD matrix, applied as the congruence M ↦ Fᵀ M F (r×r, lower triangle). */
type Congruence = (m: Float64Array) => { c: Float64Array; r: number };

/**
 * Pivoted (semidefinite) Cholesky, left-looking: at step k the largest remaining Schur-complement diagonal is
 * the pivot; stop when it is ≤ tol (rank r), as LAPACK's dpstrf does with tol = n·ε·‖S‖. Returns null when
 * the dropped Schur complement shows S is not PSD beyond tol (a diagonal < −tol or an entry > 2·tol in
 * magnitude, impossible for a PSD remainder whose diagonals are ≤ tol, as |S_ij| ≤ √(S_ii S_jj)).
 */
function choleskyFactor(s: Float64Array, n: number): Congruence | null {
  const tol = roundoff(s, n);
  const perm = Int32Array.from({ length: n }, (_, k) => k);
  const diag = new Float64Array(n);
  for (let k = 0; k < n; k++) diag[k] = s[k * n + k];
  const l = new Float64Array(n * n); // row i holds L[i][0..min(i, r−1)]
  let r = 0;
  for (; r < n; r++) {
    let piv = r;
    for (let j = r + 1; j < n; j++) if (diag[j] > diag[piv]) piv = j;
    if (!(diag[piv] > tol)) break;
    if (piv !== r) {
      [perm[r], perm[piv]] = [perm[piv], perm[r]];
      [diag[r], diag[piv]] = [diag[piv], diag[r]];
      const or = r * n, op = piv * n;
      for (let k = 0; k < r; k++) [l[or + k], l[op + k]] = [l[op + k], l[or + k]];
    }
    const lkk = Math.sqrt(diag[r]), rr = r * n, srow = perm[r] * n;
    l[rr + r] = lkk;
    for (let i = r + 1; i < n; i++) {
      const ri = i * n;
      const lik = (s[srow + perm[i]] - dot(l, ri, l, rr, r)) / lkk;
      l[ri + r] = lik;
      diag[i] -= lik * lik;
    }
  }
  for (let i = r; i < n; i++) { // the dropped Schur complement must be PSD up to round-off
    if (diag[i] < -tol) return null;
    for (let j = r; j < i; j++) {
      if (Math.abs(s[perm[i] * n + perm[j]] - dot(l, i * n, l, j * n, r)) > 2 * tol) return null;
    }
  }
  const u = new Float64Array(r * n); // U = Lᵀ, r×n, row k zero before column k
  for (let i = 0; i < n; i++) for (let k = 0; k < Math.min(i + 1, r); k++) u[k * n + i] = l[i * n + k];
  return (m) => {
    // Fᵀ M F with F = P L is U M' Uᵀ, M' = Pᵀ M P (M'[i][j] = M[perm i][perm j]).
    const mp = new Float64Array(n * n);
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) mp[i * n + j] = m[perm[i] * n + perm[j]];
    const y = new Float64Array(r * n);
    rowDots(u, r, mp, n, n, y, n, false, true, false); // Y = U M' (M' symmetric), skipping U's leading zeros
    const c = new Float64Array(r * r);
    rowDots(y, r, u, r, n, c, r, true, false, true); // C = Y Uᵀ, lower triangle, from U's first nonzero
    return { c, r };
  };
}

/**
 * F = V diag(√λ₊) (so Fᵀ M F has the eigenvalues of √S M √S, √S = V diag(√λ₊) Vᵀ). Eigenvalues of S in
 * [−tol, 0] are round-off and clamped to 0 (dropped); one below −tol means S is not PSD: null.
 */
function eighFactor(s: Float64Array, n: number): Congruence | null {
  const tol = roundoff(s, n);
  const { values, vectors } = symmetricEigen(s, n);
  if (n > 0 && values[0] < -tol) return null;
  const keep: number[] = [];
  for (let j = 0; j < n; j++) if (values[j] > 0) keep.push(j);
  const r = keep.length;
  const u = new Float64Array(r * n); // U = Fᵀ: row q = √λ_j · v_jᵀ
  keep.forEach((j, q) => {
    const sq = Math.sqrt(values[j]);
    for (let k = 0; k < n; k++) u[q * n + k] = sq * vectors![k * n + j];
  });
  return (m) => {
    const y = new Float64Array(r * n);
    rowDots(u, r, m, n, n, y, n, false, false, false); // Y = U M (M symmetric)
    const c = new Float64Array(r * r);
    rowDots(y, r, u, r, n, c, r, true, false, false); // C = Y Uᵀ, lower triangle
    return { c, r };
  };
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

/** Write {mu, sigma} as float64 `mu` [dim] and `sigma` [dim, dim] in an .npz (np.load reads it). */
export async function saveStats(
  path: string,
  stats: { mu: ArrayLike<number>; sigma: ArrayLike<number> },
): Promise<void> {
  const dim = stats.mu.length;
  if (dim < 1) throw new Error("saveStats: mu is empty");
  if (stats.sigma.length !== dim * dim) {
    throw new Error(`saveStats: sigma has ${stats.sigma.length} values, mu's dim ${dim} needs ${dim * dim}`);
  }
  await writeNpz(path, {
    mu: { shape: [dim], data: Float64Array.from(stats.mu) },
    sigma: { shape: [dim, dim], data: Float64Array.from(stats.sigma) },
  });
}

/**
 * Read `mu` and `sigma` from an .npz (a path, or its bytes) in pytorch-fid's layout; other members (the ADM
 * evaluator's reference batches also hold mu_s, sigma_s, arr_0) are ignored. float32 is widened to float64.
 * Errors say which key is missing or which shape, dtype or value is wrong.
 */
export function loadStats(source: string | Uint8Array, name?: string): FidStats {
  name ??= typeof source === "string" ? source : "stats npz";
  const arrays = readNpz(source, name);
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
