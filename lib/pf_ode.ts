// The probability-flow ODE (Eq. 1) solved exactly enough to serve as ground truth on toy data:
//   dx/dσ = −σ ∇_x log p_σ(x),   p_σ = p_data * N(0, σ² I).
// For data drawn from a mixture of Gaussians (widths ≥ 0; width 0 = a point mass) the score of p_σ is
// closed-form, so the true consistency function f*(x, σ) = x_{σ_min} is an ODE solve away.
// Points are float64 on the host, row-major [n, dim].
import * as tf from "@tensorflow/tfjs";
import type { ConsistencyFn } from "./losses.ts";
import { SIGMA_MIN } from "./schedules.ts";
import type { Sigma, SigmaBatch } from "./types.ts";

/** A Gaussian mixture p_data = Σ_k w_k N(mean_k, std_k² I) in `dim` dimensions. */
export interface GaussianMixture {
  dim: number;
  means: number[][];
  stds: number[];
  weights: number[];
}

/** Points in R^dim, row-major: point p is values[p·dim … p·dim + dim − 1]. */
export type Points = Float64Array;

/** ∇_x log p_σ(x) for the mixture: Σ_k r_k(x)·(mean_k − x)/(σ² + std_k²), r_k the posterior of component k. */
export function mixtureScore(mix: GaussianMixture, x: Points, sigma: Sigma): Points {
  const { dim, means, stds, weights } = mix;
  const n = x.length / dim;
  const out = new Float64Array(x.length);
  const logR = new Float64Array(means.length);
  for (let p = 0; p < n; p++) {
    let maxLog = -Infinity;
    for (let k = 0; k < means.length; k++) {
      const v = sigma * sigma + stds[k] * stds[k];
      let sq = 0;
      for (let d = 0; d < dim; d++) sq += (x[p * dim + d] - means[k][d]) ** 2;
      logR[k] = Math.log(weights[k]) - (0.5 * dim) * Math.log(v) - sq / (2 * v);
      maxLog = Math.max(maxLog, logR[k]);
    }
    let total = 0;
    for (let k = 0; k < means.length; k++) total += logR[k] = Math.exp(logR[k] - maxLog);
    for (let k = 0; k < means.length; k++) {
      const r = logR[k] / total;
      const v = sigma * sigma + stds[k] * stds[k];
      for (let d = 0; d < dim; d++) out[p * dim + d] += (r * (means[k][d] - x[p * dim + d])) / v;
    }
  }
  return out;
}

/** dx/dσ = −σ ∇_x log p_σ(x)  (Eq. 1). */
export function pfOdeDerivative(mix: GaussianMixture, x: Points, sigma: Sigma): Points {
  const score = mixtureScore(mix, x, sigma);
  for (let i = 0; i < score.length; i++) score[i] *= -sigma;
  return score;
}

/**
 * Solve Eq. 1 from σ_from down to σ_to. In t = ln σ the ODE reads dx/dt = −σ²∇log p_σ(x) = x − D(x, σ), which
 * stays smooth from σ_max to σ_min; classical RK4 with `steps` uniform steps in t is then accurate
 * at the default 200 steps (1e-7 relative on a Gaussian from σ = 80). `trajectory` receives every intermediate state.
 */
export function solvePfOde(
  mix: GaussianMixture,
  x: Points,
  sigmaFrom: Sigma,
  sigmaTo: Sigma = SIGMA_MIN,
  steps = 200,
  trajectory?: (x: Points, sigma: Sigma) => void,
): Points {
  if (!(sigmaFrom > sigmaTo)) return Float64Array.from(x);
  const dxdt = (y: Points, t: number) => pfOdeDerivative(mix, y, Math.exp(t)).map((v) => v * Math.exp(t)); // σ·dx/dσ
  const axpy = (y: Points, a: number, k: Points) => y.map((v, i) => v + a * k[i]);
  const [t0, t1] = [Math.log(sigmaFrom), Math.log(sigmaTo)];
  const h = (t1 - t0) / steps;
  let cur = Float64Array.from(x);
  trajectory?.(cur, sigmaFrom);
  for (let s = 0; s < steps; s++) {
    const t = t0 + s * h;
    const k1 = dxdt(cur, t);
    const k2 = dxdt(axpy(cur, h / 2, k1), t + h / 2);
    const k3 = dxdt(axpy(cur, h / 2, k2), t + h / 2);
    const k4 = dxdt(axpy(cur, h, k3), t + h);
    cur = cur.map((v, i) => v + (h / 6) * (k1[i] + 2 * k2[i] + 2 * k3[i] + k4[i]));
    trajectory?.(cur, s === steps - 1 ? sigmaTo : Math.exp(t + h));
  }
  return cur;
}

/** The true consistency function f*(x, σ) = the PF-ODE solution at σ_min (Sec. 2); f*(x, σ_min) = x. */
export function exactConsistencyFunction(
  mix: GaussianMixture,
  x: Points,
  sigma: Sigma,
  sigmaMin: Sigma = SIGMA_MIN,
  steps = 200,
): Points {
  return solvePfOde(mix, x, sigma, sigmaMin, steps);
}

/** ∇_x log p_σ(x) as tensor ops, for x [B, dim] and σ [B, 1] (the same formula as `mixtureScore`). */
function mixtureScoreOp(mix: GaussianMixture) {
  const means = tf.tensor2d(mix.means.flat(), [mix.means.length, mix.dim]); // [K, dim]
  const variances = tf.tensor2d(mix.stds.map((s) => s * s), [1, mix.stds.length]);
  const logW = tf.tensor2d(mix.weights.map(Math.log), [1, mix.weights.length]);
  return (x: tf.Tensor2D, sigma: tf.Tensor2D): tf.Tensor2D => {
    const v = tf.add(tf.square(sigma), variances); // [B, K]
    const sq = tf.sum(tf.square(tf.sub(tf.expandDims(x, 1), tf.expandDims(means, 0))), 2); // [B, K]
    const logR = tf.sub(tf.sub(logW, tf.mul(0.5 * mix.dim, tf.log(v))), tf.div(sq, tf.mul(2, v)));
    const rOverV = tf.div(tf.softmax(logR), v); // r_k / v_k
    // Σ_k r_k (mean_k − x) / v_k = (r/v)·means − x·Σ_k r_k/v_k
    return tf.sub(tf.matMul(rOverV, means), tf.mul(x, tf.sum(rOverV, 1, true)));
  };
}

/**
 * f* as a batch consistency function over [B, dim] tensors, so the kit's losses and samplers can run on the
 * ground truth. Each sample is solved from its own σ with `solvePfOde`'s scheme (RK4, `steps` uniform steps in
 * ln σ), all samples at once in float32 tensor ops: nothing is read back, so it runs on every backend (webgpu
 * cannot read synchronously).
 */
export function exactConsistencyFn(
  mix: GaussianMixture,
  sigmaMin: Sigma = SIGMA_MIN,
  steps = 200,
): ConsistencyFn {
  return (x: tf.Tensor, sigmas: SigmaBatch) =>
    tf.tidy(() => {
      const b = sigmas.length;
      const score = mixtureScoreOp(mix);
      const t0 = Float32Array.from(sigmas, (s) => Math.log(Math.max(s, sigmaMin)));
      // Per-sample step in t = ln σ; 0 for a sample already at σ_min (then f* = x exactly).
      const h = tf.tensor2d(Float32Array.from(t0, (t) => (Math.log(sigmaMin) - t) / steps), [b, 1]);
      const [half, sixth, start] = [tf.mul(h, 0.5), tf.div(h, 6), tf.tensor2d(t0, [b, 1])];
      // dx/dt = −σ² ∇log p_σ(x), σ = e^t
      const dxdt = (y: tf.Tensor2D, t: tf.Tensor) => {
        const sigma = tf.exp(t) as tf.Tensor2D;
        return tf.mul(tf.neg(tf.square(sigma)), score(y, sigma)) as tf.Tensor2D;
      };
      let cur = tf.reshape(x, [b, mix.dim]) as tf.Tensor2D;
      for (let s = 0; s < steps; s++) {
        const next = tf.tidy(() => { // one step's intermediates are freed at once: 200 steps add up
          const t = tf.add(start, tf.mul(h, s));
          const tMid = tf.add(t, half);
          const k1 = dxdt(cur, t);
          const k2 = dxdt(tf.add(cur, tf.mul(half, k1)), tMid);
          const k3 = dxdt(tf.add(cur, tf.mul(half, k2)), tMid);
          const k4 = dxdt(tf.add(cur, tf.mul(h, k3)), tf.add(t, h));
          return tf.add(cur, tf.mul(sixth, tf.addN([k1, tf.mul(2, k2), tf.mul(2, k3), k4]))) as tf.Tensor2D;
        });
        if (s > 0) cur.dispose();
        cur = next;
      }
      return tf.reshape(cur, x.shape);
    });
}

/** Draw n points from the mixture with a host normal generator (e.g. `() => rng.normal()`). */
export function sampleMixture(
  mix: GaussianMixture,
  n: number,
  normal: () => number,
  uniform: () => number,
): Points {
  const out = new Float64Array(n * mix.dim);
  const total = mix.weights.reduce((a, b) => a + b, 0);
  for (let p = 0; p < n; p++) {
    let u = uniform() * total;
    let k = 0;
    while (k < mix.weights.length - 1 && u >= mix.weights[k]) u -= mix.weights[k++];
    for (let d = 0; d < mix.dim; d++) out[p * mix.dim + d] = mix.means[k][d] + mix.stds[k] * normal();
  }
  return out;
}

/**
 * f*(x_b, σ_b) for rows with their own σ, on the host in float64, all rows in one pass: each row is solved
 * with `solvePfOde`'s scheme and arithmetic (RK4, `steps` uniform steps in ln σ), so its numbers are exactly
 * those of `solvePfOde` on that row alone, but without allocating per step — about a hundred times faster than
 * one `solvePfOde` call per row or per distinct σ. Rows at or below σ_min are returned as they are.
 */
export function exactConsistencyPerRow(
  mix: GaussianMixture,
  x: Points,
  sigmas: ArrayLike<number>,
  sigmaMin: Sigma = SIGMA_MIN,
  steps = 200,
): Points {
  const dim = mix.dim;
  if (x.length !== sigmas.length * dim) {
    throw new Error(`exactConsistencyPerRow: ${x.length / dim} points for ${sigmas.length} noise levels`);
  }
  const out = Float64Array.from(x);
  const [cur, tmp, k1, k2, k3, k4] = Array.from({ length: 6 }, () => new Float64Array(dim));
  const logR = new Float64Array(mix.means.length);
  // dx/dt = σ·dx/dσ = (−σ ∇log p_σ(y))·σ, σ = e^t: the same operations as solvePfOde's dxdt
  const dxdt = (y: Float64Array, t: number, k: Float64Array) => {
    const sigma = Math.exp(t);
    rowScore(mix, y, sigma, k, logR);
    for (let d = 0; d < dim; d++) k[d] = k[d] * -sigma * Math.exp(t);
  };
  for (let b = 0; b < sigmas.length; b++) {
    const sigmaFrom = sigmas[b];
    if (!(sigmaFrom > sigmaMin)) continue;
    cur.set(x.subarray(b * dim, (b + 1) * dim));
    const [t0, t1] = [Math.log(sigmaFrom), Math.log(sigmaMin)];
    const h = (t1 - t0) / steps;
    for (let s = 0; s < steps; s++) {
      const t = t0 + s * h;
      dxdt(cur, t, k1);
      for (let d = 0; d < dim; d++) tmp[d] = cur[d] + (h / 2) * k1[d];
      dxdt(tmp, t + h / 2, k2);
      for (let d = 0; d < dim; d++) tmp[d] = cur[d] + (h / 2) * k2[d];
      dxdt(tmp, t + h / 2, k3);
      for (let d = 0; d < dim; d++) tmp[d] = cur[d] + h * k3[d];
      dxdt(tmp, t + h, k4);
      for (let d = 0; d < dim; d++) cur[d] = cur[d] + (h / 6) * (k1[d] + 2 * k2[d] + 2 * k3[d] + k4[d]);
    }
    out.set(cur, b * dim);
  }
  return out;
}

/** `mixtureScore` of one point into `out`, with the same operations in the same order (no allocation). */
function rowScore(
  mix: GaussianMixture,
  y: Float64Array,
  sigma: Sigma,
  out: Float64Array,
  logR: Float64Array,
) {
  const { dim, means, stds, weights } = mix;
  let maxLog = -Infinity;
  for (let k = 0; k < means.length; k++) {
    const v = sigma * sigma + stds[k] * stds[k];
    let sq = 0;
    for (let d = 0; d < dim; d++) sq += (y[d] - means[k][d]) ** 2;
    logR[k] = Math.log(weights[k]) - (0.5 * dim) * Math.log(v) - sq / (2 * v);
    maxLog = Math.max(maxLog, logR[k]);
  }
  let total = 0;
  for (let k = 0; k < means.length; k++) total += logR[k] = Math.exp(logR[k] - maxLog);
  out.fill(0);
  for (let k = 0; k < means.length; k++) {
    const r = logR[k] / total;
    const v = sigma * sigma + stds[k] * stds[k];
    for (let d = 0; d < dim; d++) out[d] += (r * (means[k][d] - y[d])) / v;
  }
}

/**
 * f* as a batch consistency function computed by `exactConsistencyPerRow` (float64 on the host, the result
 * rounded to float32). It reads x synchronously, so it runs on cpu and wasm, not webgpu (use
 * `exactConsistencyFn` there); on those it is much faster than `exactConsistencyFn`.
 */
export function exactConsistencyFnHost(
  mix: GaussianMixture,
  sigmaMin: Sigma = SIGMA_MIN,
  steps = 200,
): ConsistencyFn {
  return (x: tf.Tensor, sigmas: SigmaBatch) => {
    const host = Float64Array.from(x.dataSync());
    return tf.tensor(Float32Array.from(exactConsistencyPerRow(mix, host, sigmas, sigmaMin, steps)), x.shape);
  };
}
