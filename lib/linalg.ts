// Dense float64 linear algebra on the host, for the statistics in lib/metrics/ (FID's Fréchet distance,
// precision/recall's distances): Gram products, a symmetric eigensolver, and PSD factors. Matrices are flat
// row-major Float64Arrays; every routine is O(n³) at most and backward stable.

export const EPS = 2 ** -52;

/** Throws unless `length` values make an [n, dim] matrix. */
export function checkShape(length: number, n: number, dim: number, what: string): void {
  if (!Number.isInteger(n) || n < 0 || !Number.isInteger(dim) || dim < 1) {
    throw new Error(`${what}: bad shape [${n}, ${dim}]`);
  }
  if (length !== n * dim) throw new Error(`${what}: ${length} values is not [${n}, ${dim}]`);
}

// ---------------------------------------------------------------------------------------------------------
// Gram products.

/**
 * m[i][j] += ⟨xt_i, xt_j⟩ for j ≤ i; xt is [dim, b]. Tiled so a block of 64 rows stays in cache, and 2×2
 * register-blocked (four dot products share each pair of loads).
 */
export function lowerGramAdd(xt: Float64Array, dim: number, b: number, m: Float64Array): void {
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
export function dot(a: Float64Array, ao: number, b: Float64Array, bo: number, len: number): number {
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
export function rowDots(
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
// Pairwise squared Euclidean distances, by direct differences.
//
// Why not ‖a‖² + ‖b‖² − 2a·b: its round-off is relative to ‖a‖² + ‖b‖², not to the distance, so for near
// neighbours (the k-NN radii of precision/recall) it loses the digits that decide ties, a duplicate pair
// comes out as a small nonzero (even negative) number, and d(a, b) need not equal d(b, a). Σ_k (a_k − b_k)²
// adds only non-negative terms: the computed value is within (dim + 1)·2⁻⁵³ relative of the exact one, a
// duplicate gives exactly 0, d(a, b) = d(b, a) bit for bit, and points whose coordinates are small integers
// (or other short dyadic numbers) give exact distances, so equal distances compare equal. Every pair is summed
// in the same order (k = 0, 1, …, one accumulator), so squaredDistances and squaredDistance agree bit for bit
// and whatever blocks a caller uses gives the same numbers.

/**
 * out[i·ldo + j] = Σ_k (a[i·dim + k] − b[j·dim + k])² for rows i < ra of A [ra, dim] and j < rb of B [rb, dim].
 * Tiles of 16 B rows stay in cache; 2×2 blocks share loads (four independent sums, each in k order).
 */
export function squaredDistances(
  a: Float64Array,
  ra: number,
  b: Float64Array,
  rb: number,
  dim: number,
  out: Float64Array,
  ldo: number,
): void {
  checkShape(a.length, ra, dim, "squaredDistances (a)");
  checkShape(b.length, rb, dim, "squaredDistances (b)");
  if (ra > 0 && rb > 0 && (ldo < rb || out.length < (ra - 1) * ldo + rb)) {
    throw new Error(
      `squaredDistances: out holds ${out.length} values, [${ra}, ${rb}] with stride ${ldo} does not fit`,
    );
  }
  const T = 16;
  for (let jt = 0; jt < rb; jt += T) {
    const jtEnd = Math.min(rb, jt + T);
    for (let i = 0; i < ra; i += 2) {
      const i1 = Math.min(i + 1, ra - 1), oi = i * dim, oi1 = i1 * dim;
      for (let j = jt; j < jtEnd; j += 2) {
        const j1 = Math.min(j + 1, jtEnd - 1), oj = j * dim, oj1 = j1 * dim;
        let s00 = 0, s01 = 0, s10 = 0, s11 = 0;
        for (let k = 0; k < dim; k++) {
          const a0 = a[oi + k], a1 = a[oi1 + k], c0 = b[oj + k], c1 = b[oj1 + k];
          const d00 = a0 - c0, d01 = a0 - c1, d10 = a1 - c0, d11 = a1 - c1;
          s00 += d00 * d00;
          s01 += d01 * d01;
          s10 += d10 * d10;
          s11 += d11 * d11;
        }
        out[i * ldo + j] = s00;
        if (j1 !== j) out[i * ldo + j1] = s01;
        if (i1 !== i) {
          out[i1 * ldo + j] = s10;
          if (j1 !== j) out[i1 * ldo + j1] = s11;
        }
      }
    }
  }
}

/** Σ_k (a[ao + k] − b[bo + k])², in k order: bit for bit what squaredDistances gives for the same rows. */
export function squaredDistance(
  a: Float32Array | Float64Array,
  ao: number,
  b: Float32Array | Float64Array,
  bo: number,
  dim: number,
): number {
  let s = 0;
  for (let k = 0; k < dim; k++) {
    const d = a[ao + k] - b[bo + k];
    s += d * d;
  }
  return s;
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
// Factors of positive semidefinite matrices.

/** Symmetric copy (A + Aᵀ)/2, so round-off asymmetry in stored covariances does not matter. */
export function symmetrized(s: ArrayLike<number>, n: number): Float64Array {
  const out = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) out[i * n + j] = out[j * n + i] = 0.5 * (s[i * n + j] + s[j * n + i]);
  }
  return out;
}

export function frobenius(s: Float64Array): number {
  let t = 0;
  for (let k = 0; k < s.length; k++) t += s[k] * s[k];
  return Math.sqrt(t);
}

/** Round-off level for a PSD test of an n×n matrix: n·ε·‖S‖_F ≥ the backward error of its factorizations. */
export function roundoff(s: Float64Array, n: number): number {
  return n * EPS * frobenius(s);
}

/** A factor F (Σ = FFᵀ, n×r) of a PSD matrix, applied as the congruence M ↦ Fᵀ M F (r×r, lower triangle). */
export type Congruence = (m: Float64Array) => { c: Float64Array; r: number };

/**
 * Pivoted (semidefinite) Cholesky, left-looking: at step k the largest remaining Schur-complement diagonal is
 * the pivot; stop when it is ≤ tol (rank r), as LAPACK's dpstrf does with tol = n·ε·‖S‖. Returns null when
 * the dropped Schur complement shows S is not PSD beyond tol (a diagonal < −tol or an entry > 2·tol in
 * magnitude, impossible for a PSD remainder whose diagonals are ≤ tol, as |S_ij| ≤ √(S_ii S_jj)).
 */
export function choleskyFactor(s: Float64Array, n: number): Congruence | null {
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
export function eighFactor(s: Float64Array, n: number): Congruence | null {
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
