// Sample-quality distances between point sets, for the CPU toy demo where FID does not apply.
// Point sets are flat [N, dim] arrays (row-major); all arithmetic is float64 on the host.
import { Rng } from "../rng.ts";

function count(x: ArrayLike<number>, dim: number, name: string): number {
  if (!Number.isInteger(dim) || dim < 1) throw new Error(`${name}: bad dim ${dim}`);
  if (x.length === 0 || x.length % dim !== 0) {
    throw new Error(`${name}: ${x.length} values is not a non-empty [N, ${dim}] set`);
  }
  return x.length / dim;
}

function allFinite(...xs: ArrayLike<number>[]): boolean {
  for (const x of xs) for (let i = 0; i < x.length; i++) if (!Number.isFinite(x[i])) return false;
  return true;
}

/**
 * W1 between two 1-D empirical distributions (uniform weights), sizes may differ: the exact integral
 * ∫₀¹ |F⁻¹(u) − G⁻¹(u)| du of the quantile functions, walking the merged breakpoints i/n and j/m
 * (scipy.stats.wasserstein_distance's value). Sorts `a` and `b` in place.
 */
export function wasserstein1dInPlace(a: Float64Array, b: Float64Array): number {
  a.sort();
  b.sort();
  const n = a.length, m = b.length;
  let i = 0, j = 0, u = 0, total = 0;
  while (i < n && j < m) {
    const next = Math.min((i + 1) / n, (j + 1) / m); // next quantile breakpoint
    total += (next - u) * Math.abs(a[i] - b[j]);
    u = next;
    // Integer comparison (i+1)·m vs (j+1)·n decides which block ends here, without rounding trouble.
    const ai = (i + 1) * m, bj = (j + 1) * n;
    if (ai <= bj) i++;
    if (bj <= ai) j++;
  }
  return total;
}

/** W1 between two 1-D samples (sizes may differ); see `wasserstein1dInPlace`. NaN if any value is not finite. */
export function wasserstein1d(a: ArrayLike<number>, b: ArrayLike<number>): number {
  count(a, 1, "wasserstein1d");
  count(b, 1, "wasserstein1d");
  if (!allFinite(a, b)) return NaN;
  return wasserstein1dInPlace(Float64Array.from(a), Float64Array.from(b));
}

export interface SlicedOptions {
  /** Number of random directions (default 256). */
  projections?: number;
  /** Seed for the directions (default 0): same seed, same directions. */
  seed?: number;
  /** Fixed directions instead, [K, dim] (normalised here); `projections` and `seed` are then unused. */
  directions?: ArrayLike<number>;
}

/**
 * Sliced 1-Wasserstein distance SW₁(a, b) = E_θ W₁(⟨a, θ⟩, ⟨b, θ⟩), θ uniform on the unit sphere, estimated
 * by the mean over `projections` directions (normalised Gaussians from `Rng.seeded(seed)`). Each 1-D W₁ is
 * exact for any two sizes (quantile matching, see `wasserstein1dInPlace`). In the units of the data; for a
 * set against its copy translated by t it is |t|·E|θ₁| (2/π in 2-D, 1/2 in 3-D). dim = 1 gives W₁ exactly.
 * NaN if any coordinate is not finite. Cost: K·(n log n + m log m).
 */
export function slicedWasserstein(
  a: ArrayLike<number>,
  b: ArrayLike<number>,
  dim: number,
  opts: SlicedOptions = {},
): number {
  const n = count(a, dim, "slicedWasserstein");
  const m = count(b, dim, "slicedWasserstein");
  const { projections = 256, seed = 0 } = opts;
  let dirs: Float64Array;
  if (opts.directions) {
    dirs = Float64Array.from(opts.directions);
    count(dirs, dim, "slicedWasserstein directions");
  } else {
    if (!Number.isInteger(projections) || projections < 1) {
      throw new Error(`slicedWasserstein: bad projections ${projections}`);
    }
    const rng = Rng.seeded(seed);
    dirs = Float64Array.from({ length: projections * dim }, () => rng.normal());
  }
  const k = dirs.length / dim;
  for (let p = 0; p < k; p++) {
    let norm = 0;
    for (let d = 0; d < dim; d++) norm += dirs[p * dim + d] ** 2;
    norm = Math.sqrt(norm);
    if (!(norm > 0) || !Number.isFinite(norm)) {
      throw new Error(`slicedWasserstein: direction ${p} is not usable`);
    }
    for (let d = 0; d < dim; d++) dirs[p * dim + d] /= norm;
  }
  if (!allFinite(a, b)) return NaN;
  const pa = new Float64Array(n), pb = new Float64Array(m);
  const project = (x: ArrayLike<number>, out: Float64Array, p: number) => {
    for (let i = 0; i < out.length; i++) {
      let s = 0;
      for (let d = 0; d < dim; d++) s += x[i * dim + d] * dirs[p * dim + d];
      out[i] = s;
    }
  };
  let total = 0;
  for (let p = 0; p < k; p++) {
    project(a, pa, p);
    project(b, pb, p);
    total += wasserstein1dInPlace(pa, pb);
  }
  return total / k;
}

/** Σ over i in x, j in y of the Euclidean distance |x_i − y_j| (x, y as [·, dim] float64). */
function sumDistances(x: Float64Array, y: Float64Array, dim: number, sameSet: boolean): number {
  const n = x.length / dim, m = y.length / dim;
  let total = 0;
  if (dim === 2) { // the toy-data case, unrolled
    for (let i = 0; i < n; i++) {
      const x0 = x[2 * i], x1 = x[2 * i + 1];
      let row = 0;
      for (let j = sameSet ? i + 1 : 0; j < m; j++) {
        const d0 = x0 - y[2 * j], d1 = x1 - y[2 * j + 1];
        row += Math.sqrt(d0 * d0 + d1 * d1);
      }
      total += row;
    }
  } else {
    for (let i = 0; i < n; i++) {
      let row = 0;
      for (let j = sameSet ? i + 1 : 0; j < m; j++) {
        let s = 0;
        for (let d = 0; d < dim; d++) {
          const t = x[i * dim + d] - y[j * dim + d];
          s += t * t;
        }
        row += Math.sqrt(s);
      }
      total += row;
    }
  }
  return sameSet ? 2 * total : total; // within a set: each unordered pair counted twice, diagonal is 0
}

/**
 * Squared energy distance D² = 2·E|X − Y| − E|X − X'| − E|Y − Y'| (Euclidean norms), exact over all pairs in
 * O((n + m)²·dim). Default "V": the V-statistic, the energy distance between the two empirical distributions
 * (means over all n², nm, m² pairs, diagonal included; ≥ 0 up to rounding, 0 iff the sets are equal as distributions;
 * dcor.energy_distance's value). "U": the unbiased U-statistic (within-set means over the n(n−1) pairs i ≠ j),
 * which can be slightly negative; needs n, m ≥ 2. NaN if any coordinate is not finite.
 */
export function energyDistance(
  a: ArrayLike<number>,
  b: ArrayLike<number>,
  dim: number,
  statistic: "V" | "U" = "V",
): number {
  const n = count(a, dim, "energyDistance");
  const m = count(b, dim, "energyDistance");
  if (statistic === "U" && (n < 2 || m < 2)) {
    throw new Error("energyDistance: the U-statistic needs n, m ≥ 2");
  }
  if (!allFinite(a, b)) return NaN;
  const x = Float64Array.from(a), y = Float64Array.from(b);
  const xy = sumDistances(x, y, dim, false) / (n * m);
  const xx = sumDistances(x, x, dim, true) / (statistic === "V" ? n * n : n * (n - 1));
  const yy = sumDistances(y, y, dim, true) / (statistic === "V" ? m * m : m * (m - 1));
  return 2 * xy - xx - yy;
}
