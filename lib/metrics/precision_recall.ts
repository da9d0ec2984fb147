// Improved precision and recall (Kynkäänniemi et al. 2019, "Improved Precision and Recall Metric for
// Assessing Generative Models"), on feature rows such as the FID Inception's 2048-d pool features.
//
// Definitions (as in the authors' code and the ADM evaluator, openai/guided-diffusion evaluations/evaluator.py):
// - the radius of a feature x of a set S is its squared distance to its k-th nearest neighbour in S other than
//   itself: the (k+1)-th smallest of {‖x − y‖² : y ∈ S} counting x's own 0 once (their partition index k);
//   a duplicate of x in S is a neighbour at distance 0. k = 3 (their nhood_sizes = (3,)).
// - a point q lies in the manifold of S if ‖q − y‖² ≤ radius(y) for some y ∈ S (≤: on the sphere is inside).
// - precision = the fraction of generated features inside the real manifold; recall = the fraction of real
//   features inside the generated manifold.
// - no radii are clamped: clamp_to_percentile (drop spheres above a percentile of the radii) defaults to None
//   in both codes, and the published numbers use the default.
//
// Numbers: every decision compares float64 squared distances computed by direct differences in k order
// (lib/linalg.ts squaredDistances; duplicates give exactly 0 and equal distances of short dyadic coordinates
// compare equal). The ADM evaluator computes its distances in float16 (float32 if that overflows) by
// ‖a‖² + ‖b‖² − 2a·b, so its counts can differ from these by the pairs within that round-off of a radius.
//
// Cost: n real and m generated features make n² + m² + nm ordered pairs; D being symmetric, the radii compute
// each pair once, n²/2 + m²/2 + nm distances of `dim` terms in all. The host path does these in JS float64
// (about 1 ns a term here: some 3 h at n = m = 50k; tests/precision_recall_bench.ts). The Gram path (`gram`)
// computes a·b in float32 with TF.js (XNNPACK on the wasm backend), and is still exact: each Gram distance
// D̃ comes with a certified bound s ≥ |D̃ − D| (D the float64 direct-difference value), a pair is decided from
// D̃ when D̃ ± s are on the same side of the threshold, and only the pairs inside the band are recomputed as D.
// So both paths give the same counts bit for bit; the Gram path only chooses what to recompute.
import * as tf from "@tensorflow/tfjs";
import type { NpyArray } from "../io/npz.ts";
import { checkShape, squaredDistance, squaredDistances } from "../linalg.ts";

/** The paper's neighbourhood size. */
export const DEFAULT_K = 3;

/**
 * Gram products G = A Bᵀ of float32 row blocks, A [ra, dim] and B [rb, dim], row-major [ra, rb], with a bound
 * that holds for every entry: |G̃_ij − a_i·b_j| ≤ relBound · Σ_k |a_ik b_jk|.
 */
export interface GramKernel {
  name: string;
  relBound: number;
  gram(a: Float32Array, ra: number, b: Float32Array, rb: number, dim: number): Float32Array;
}

/**
 * The Gram products with TF.js's matMul on the current backend. The bound: float32 accumulation of dim
 * products, in any order and with or without fused multiply-adds, errs by at most γ_dim = dim·u/(1 − dim·u),
 * u = 2⁻²⁴, times Σ|a_k b_k| (Higham, Accuracy and Stability, §3.1). With `reducedPrecisionInputs` (a GPU,
 * where TensorFlow may round matmul inputs to TF32's 10-bit mantissa) each product may err by a further
 * (1 + 2⁻¹¹)² − 1. The bound used is twice that, for safety.
 */
export function tfGramKernel(dim: number, reducedPrecisionInputs: boolean): GramKernel {
  const u = 2 ** -24;
  const gamma = (dim * u) / (1 - dim * u);
  const inputs = reducedPrecisionInputs ? (1 + 2 ** -11) ** 2 - 1 : 0;
  return {
    name: `tfjs-${tf.getBackend()} float32 matMul${reducedPrecisionInputs ? " (TF32-safe bound)" : ""}`,
    relBound: 2 * (gamma * (1 + inputs) + inputs),
    gram(a, ra, b, rb, d) {
      checkShape(a.length, ra, d, "tfGramKernel (a)");
      checkShape(b.length, rb, d, "tfGramKernel (b)");
      return tf.tidy(() => {
        const g = tf.matMul(tf.tensor2d(a, [ra, d]), tf.tensor2d(b, [rb, d]), false, true);
        return g.dataSync() as Float32Array;
      });
    },
  };
}

export interface PrecisionRecallOptions {
  /** Neighbourhood size (default 3). */
  k?: number;
  /** Gram products for the bulk of the distances; without one, every distance is computed on the host. */
  gram?: GramKernel;
  /**
   * Rows and columns per distance block (defaults: 256 × 1024 with a Gram kernel, 32 × 256 without); the
   * radii use square tiles of colBlock.
   */
  rowBlock?: number;
  colBlock?: number;
  /** Called after each block with the distances done and the total (n² + m² + nm for precisionRecall). */
  onProgress?: (done: number, total: number) => void;
}

export interface PrecisionRecall {
  precision: number;
  recall: number;
  k: number;
  /** Generated features inside the real manifold, of `fakeCount`. */
  fakeInReal: number;
  /** Real features inside the generated manifold, of `realCount`. */
  realInFake: number;
  realCount: number;
  fakeCount: number;
  /** Distances recomputed on the host because a Gram value was within its bound of a threshold. */
  rechecked: number;
  /** All distances considered (n² + m² + nm). */
  pairs: number;
}

/** Distances between rows of X [nx, dim] and Y [ny, dim], by blocks, with a bound on each block entry. */
class Pairs {
  readonly x: Float32Array;
  readonly y: Float32Array;
  readonly dim: number;
  readonly kernel?: GramKernel;
  #normX?: Float64Array;
  #normY?: Float64Array;
  rechecked = 0;

  constructor(x: Float32Array, y: Float32Array, dim: number, kernel?: GramKernel) {
    this.x = x, this.y = y, this.dim = dim, this.kernel = kernel;
    if (kernel) {
      this.#normX = rowSquares(x, dim);
      this.#normY = x === y ? this.#normX : rowSquares(y, dim);
    }
  }

  /**
   * out[(i − r0)·w + (j − c0)] = the distance of X row i and Y row j, w = c1 − c0; slack (the same layout) a
   * bound on its error against `exact(i, j)`: 0 on the host path, where the entries are the exact values.
   */
  fill(r0: number, r1: number, c0: number, c1: number, out: Float64Array, slack: Float64Array): void {
    const dim = this.dim, w = c1 - c0, h = r1 - r0;
    if (!this.kernel) {
      squaredDistances(
        Float64Array.from(this.x.subarray(r0 * dim, r1 * dim)),
        h,
        Float64Array.from(this.y.subarray(c0 * dim, c1 * dim)),
        w,
        dim,
        out,
        w,
      );
      slack.fill(0, 0, h * w);
      return;
    }
    const g = this.kernel.gram(
      this.x.subarray(r0 * dim, r1 * dim),
      h,
      this.y.subarray(c0 * dim, c1 * dim),
      w,
      dim,
    );
    const nx = this.#normX!, ny = this.#normY!;
    // |D̃ − D| ≤ 2·relBound·‖x‖‖y‖ (Cauchy–Schwarz on Σ|x_k y_k|) plus the float64 round-off of the norms, of
    // D itself and of nx + ny − 2g̃, each below (2·dim + 16)·2⁻⁵³ of nx + ny; the whole bound doubled.
    const rel = 2 * 2 * this.kernel.relBound, abs = 2 * (2 * dim + 16) * 2 ** -53;
    const sy = new Float64Array(w);
    for (let j = 0; j < w; j++) sy[j] = Math.sqrt(ny[c0 + j]);
    for (let i = 0; i < h; i++) {
      const a = nx[r0 + i], sa = rel * Math.sqrt(a), o = i * w;
      for (let j = 0; j < w; j++) {
        const b = ny[c0 + j];
        out[o + j] = a + b - 2 * g[o + j];
        slack[o + j] = sa * sy[j] + abs * (a + b);
      }
    }
  }

  /** The float64 direct-difference distance of X row i and Y row j (what the host path's blocks hold). */
  exact(i: number, j: number): number {
    this.rechecked++;
    return squaredDistance(this.x, i * this.dim, this.y, j * this.dim, this.dim);
  }
}

/** Σ_k x_ik² per row, in float64. */
function rowSquares(x: Float32Array, dim: number): Float64Array {
  const n = x.length / dim, out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let k = i * dim; k < (i + 1) * dim; k++) s += x[k] * x[k];
    out[i] = s;
  }
  return out;
}

/** The m-th smallest (1-based) of values[0..len). */
function kth(values: Float64Array | number[], len: number, m: number): number {
  const sorted = Float64Array.from({ length: len }, (_, i) => values[i]).sort();
  return sorted[m - 1];
}

function blockSizes(opts: PrecisionRecallOptions): { rb: number; cb: number } {
  const rb = opts.rowBlock ?? (opts.gram ? 256 : 32), cb = opts.colBlock ?? (opts.gram ? 1024 : 256);
  if (!Number.isInteger(rb) || rb < 1 || !Number.isInteger(cb) || cb < 1) {
    throw new Error(`precision/recall: block sizes must be positive integers, got ${rb} × ${cb}`);
  }
  return { rb, cb };
}

function checkK(k: number, n: number, what: string): void {
  if (!Number.isInteger(k) || k < 1) {
    throw new Error(`precision/recall: k must be a positive integer, got ${k}`);
  }
  if (n < k + 1) {
    throw new Error(
      `precision/recall: the ${what} set has ${n} features; a k = ${k} radius needs at least ${k + 1}`,
    );
  }
}

/**
 * Squared k-NN radii of the rows of `features` [n, dim]: row i's (k+1)-th smallest squared distance to all
 * rows, its own 0 included once. Batched: square tiles of colBlock rows at a time (each pair once, D being
 * symmetric), and per row only the candidates that can still be among its k + 1 nearest.
 */
export function manifoldRadii(
  features: Float32Array,
  n: number,
  dim: number,
  opts: PrecisionRecallOptions = {},
): Float64Array {
  checkShape(features.length, n, dim, "manifoldRadii");
  const k = opts.k ?? DEFAULT_K;
  checkK(k, n, "feature");
  return radiiOf(new Pairs(features, features, dim, opts.gram), n, k, opts, 0, n * n);
}

function radiiOf(
  pairs: Pairs,
  n: number,
  k: number,
  opts: PrecisionRecallOptions,
  doneBefore: number,
  total: number,
): Float64Array {
  // D is symmetric: square tiles of `cb` on and above the diagonal, each pair {i, j} computed once and offered
  // to both i's and j's candidates (half the distances of a full pass).
  const { cb: tile } = blockSizes(opts);
  const m = k + 1;
  // Per point: candidates j with lower bound D̃ − s ≤ t, where t is the m-th smallest upper bound D̃ + s seen
  // so far (an upper bound on the radius). Every j with D ≤ radius stays a candidate.
  const idx: number[][] = Array.from({ length: n }, () => []);
  const lo: number[][] = Array.from({ length: n }, () => []);
  const hi: number[][] = Array.from({ length: n }, () => []);
  const t = new Float64Array(n).fill(Infinity);
  const cap = new Int32Array(n).fill(4 * m + 60);
  const prune = (i: number) => {
    t[i] = Math.min(t[i], kth(hi[i], hi[i].length, m));
    const ii = idx[i], ll = lo[i], hh = hi[i];
    let w = 0;
    for (let q = 0; q < ii.length; q++) {
      if (ll[q] <= t[i]) ii[w] = ii[q], ll[w] = ll[q], hh[w] = hh[q], w++;
    }
    ii.length = ll.length = hh.length = w;
    if (w > cap[i] / 2) cap[i] = 2 * w; // many ties at the radius: prune less often
  };
  const offer = (i: number, j: number, l: number, h: number) => {
    if (l > t[i]) return;
    idx[i].push(j), lo[i].push(l), hi[i].push(h);
    if (idx[i].length > cap[i]) prune(i);
  };
  const out = new Float64Array(tile * tile), slack = new Float64Array(tile * tile);
  let done = doneBefore;
  for (let r0 = 0; r0 < n; r0 += tile) {
    const r1 = Math.min(n, r0 + tile), h = r1 - r0;
    for (let c0 = r0; c0 < n; c0 += tile) {
      const c1 = Math.min(n, c0 + tile), w = c1 - c0;
      pairs.fill(r0, r1, c0, c1, out, slack);
      for (let i = 0; i < h; i++) {
        const o = i * w, xi = r0 + i;
        for (let j = c0 === r0 ? i : 0; j < w; j++) { // on a diagonal tile, j ≥ i only
          const d = out[o + j], s = slack[o + j], yj = c0 + j;
          offer(xi, yj, d - s, d + s);
          if (yj !== xi) offer(yj, xi, d - s, d + s);
        }
      }
      done += (c0 === r0 ? 1 : 2) * h * w;
      opts.onProgress?.(done, total);
    }
  }
  const radii = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    prune(i);
    const exact = pairs.kernel ? idx[i].map((j) => pairs.exact(i, j)) : hi[i];
    radii[i] = kth(exact, exact.length, m);
  }
  return radii;
}

/**
 * Which rows of X lie in Y's manifold and which rows of Y lie in X's: xInY[i] = 1 when some j has
 * D(x_i, y_j) ≤ radiiY[j], yInX[j] = 1 when some i has D(x_i, y_j) ≤ radiiX[i]. One pass over the X × Y pairs.
 */
function crossMembership(
  pairs: Pairs,
  nx: number,
  ny: number,
  radiiX: Float64Array,
  radiiY: Float64Array,
  opts: PrecisionRecallOptions,
  doneBefore: number,
  total: number,
): { xInY: Uint8Array; yInX: Uint8Array } {
  const { rb, cb } = blockSizes(opts);
  const xInY = new Uint8Array(nx), yInX = new Uint8Array(ny);
  const out = new Float64Array(rb * cb), slack = new Float64Array(rb * cb);
  let done = doneBefore;
  for (let r0 = 0; r0 < nx; r0 += rb) {
    const r1 = Math.min(nx, r0 + rb), h = r1 - r0;
    for (let c0 = 0; c0 < ny; c0 += cb) {
      const c1 = Math.min(ny, c0 + cb), w = c1 - c0;
      pairs.fill(r0, r1, c0, c1, out, slack);
      for (let i = 0; i < h; i++) {
        const xi = r0 + i, rx = radiiX[xi], o = i * w;
        for (let j = 0; j < w; j++) {
          const yj = c0 + j;
          if (xInY[xi] && yInX[yj]) continue;
          const d = out[o + j], s = slack[o + j];
          let exact = NaN; // computed at most once per pair, only when a bound straddles a radius
          if (!xInY[xi]) {
            const r = radiiY[yj];
            if (d + s <= r) xInY[xi] = 1;
            else if (d - s <= r) {
              exact = pairs.exact(xi, yj);
              if (exact <= r) xInY[xi] = 1;
            }
          }
          if (!yInX[yj]) {
            if (d + s <= rx) yInX[yj] = 1;
            else if (d - s <= rx) {
              if (Number.isNaN(exact)) exact = pairs.exact(xi, yj);
              if (exact <= rx) yInX[yj] = 1;
            }
          }
        }
      }
      done += h * w;
      opts.onProgress?.(done, total);
    }
  }
  return { xInY, yInX };
}

function count(flags: Uint8Array): number {
  let c = 0;
  for (const f of flags) c += f;
  return c;
}

/**
 * Improved precision and recall of generated features `fake` [m, dim] against real features `real` [n, dim]
 * (row-major float32, as the feature network gives them).
 */
export function precisionRecall(
  real: Float32Array,
  n: number,
  fake: Float32Array,
  m: number,
  dim: number,
  opts: PrecisionRecallOptions = {},
): PrecisionRecall {
  checkShape(real.length, n, dim, "precisionRecall (real)");
  checkShape(fake.length, m, dim, "precisionRecall (generated)");
  const k = opts.k ?? DEFAULT_K;
  checkK(k, n, "real");
  checkK(k, m, "generated");
  for (const [name, x] of [["real", real], ["generated", fake]] as const) {
    const bad = x.findIndex((v) => !Number.isFinite(v));
    if (bad >= 0) {
      throw new Error(
        `precisionRecall: ${name} row ${Math.floor(bad / dim)}, feature ${bad % dim} is ${x[bad]}`,
      );
    }
  }
  const total = n * n + m * m + n * m;
  const rr = new Pairs(real, real, dim, opts.gram);
  const radiiReal = radiiOf(rr, n, k, opts, 0, total);
  const ff = new Pairs(fake, fake, dim, opts.gram);
  const radiiFake = radiiOf(ff, m, k, opts, n * n, total);
  const rf = new Pairs(real, fake, dim, opts.gram);
  const { xInY, yInX } = crossMembership(rf, n, m, radiiReal, radiiFake, opts, n * n + m * m, total);
  const fakeInReal = count(yInX), realInFake = count(xInY);
  return {
    precision: fakeInReal / m,
    recall: realInFake / n,
    k,
    fakeInReal,
    realInFake,
    realCount: n,
    fakeCount: m,
    rechecked: rr.rechecked + ff.rechecked + rf.rechecked,
    pairs: total,
  };
}

/**
 * The feature rows `features` [n, dim] (float32) of an .npz's arrays, as `deno task fid:ref --pr` writes them.
 * `missing` says what to do when there are none (e.g. which command writes them).
 */
export function referenceFeatures(
  arrays: Map<string, NpyArray>,
  dim: number,
  name: string,
  missing: string,
): { features: Float32Array; count: number } {
  const a = arrays.get("features");
  if (!a) {
    throw new Error(
      `${name} holds no reference features (no 'features' array) for precision/recall: ${missing}`,
    );
  }
  if (a.dtype !== "float32" || a.shape.length !== 2 || a.shape[1] !== dim) {
    throw new Error(
      `${name}: 'features' is ${a.dtype} (${a.shape}), expected float32 (n, ${dim}); ${missing}`,
    );
  }
  return { features: a.data as Float32Array, count: a.shape[0] };
}
