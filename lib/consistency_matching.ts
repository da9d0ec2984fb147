// Consistency matching (Eq. 3) against consistency training (Eq. 5) on a Gaussian mixture, where the score is
// exact (lib/pf_ode.ts). Points are float64 on the host, row-major [n, dim].
//
//   Eq. 3 / CD:  x̆_σi = x_σi+1 − (σ_i − σ_i+1)·σ_i+1·∇log p_σi+1(x_σi+1)   (one Euler step of Eq. 1; CD's x̂
//                with a score model s_φ in place of the exact score)
//   Eq. 5 / CT:  x̌_σi = x + σ_i z, where x_σi+1 = x + σ_i+1 z: one draw of (x, z) given x_σi+1.
//
// Given x_σi+1, the pair (x, z) is a draw from the posterior p(x | x_σi+1), and E[x̌ | x_σi+1] = x̆ (Tweedie:
// E[z | x_σ] = −σ ∇log p_σ(x_σ)). So CT replaces CM's target by an unbiased one-sample estimate of it.
import * as tf from "@tensorflow/tfjs";
import { type ConsistencyFn, ctLoss, ictMetric } from "./losses.ts";
import { cOut } from "./parameterization.ts";
import {
  exactConsistencyPerRow,
  type GaussianMixture,
  mixtureScore,
  type Points,
  sampleMixture,
} from "./pf_ode.ts";
import { type Rng } from "./rng.ts";
import { ictWeighting, karrasSigmas, sampleLognormalIndices, SIGMA_MIN } from "./schedules.ts";

/** x̆ of Eq. 3 (= CD's x̂ with the exact score): one Euler step of Eq. 1 from σ_hi down to σ_lo, per row. */
export function eulerTarget(
  mix: GaussianMixture,
  xHi: Points,
  sigmaHi: ArrayLike<number>,
  sigmaLo: ArrayLike<number>,
): Points {
  const dim = mix.dim;
  const out = new Float64Array(xHi.length);
  for (let b = 0; b < sigmaHi.length; b++) {
    const row = xHi.subarray(b * dim, (b + 1) * dim);
    const score = mixtureScore(mix, row, sigmaHi[b]);
    for (let d = 0; d < dim; d++) {
      out[b * dim + d] = row[d] - (sigmaLo[b] - sigmaHi[b]) * sigmaHi[b] * score[d];
    }
  }
  return out;
}

/**
 * n draws of the clean point x from p(x | x_σ) for one noisy point `xNoisy` (the mixture's posterior: a
 * component with probability ∝ w_k N(x_σ; m_k, (s_k² + σ²) I), then a Gaussian with mean
 * (s_k² x_σ + σ² m_k)/(s_k² + σ²) and variance s_k² σ²/(s_k² + σ²)). Returns [n, dim].
 */
export function posteriorSamples(
  mix: GaussianMixture,
  xNoisy: ArrayLike<number>,
  sigma: number,
  n: number,
  rng: Rng,
): Points {
  const { dim, means, stds, weights } = mix;
  const logR = means.map((m, k) => {
    const v = stds[k] ** 2 + sigma ** 2;
    let sq = 0;
    for (let d = 0; d < dim; d++) sq += (xNoisy[d] - m[d]) ** 2;
    return Math.log(weights[k]) - 0.5 * dim * Math.log(v) - sq / (2 * v);
  });
  const top = Math.max(...logR);
  const r = logR.map((l) => Math.exp(l - top));
  const total = r.reduce((a, b) => a + b, 0);
  const out = new Float64Array(n * dim);
  for (let p = 0; p < n; p++) {
    let u = rng.uniform() * total;
    let k = 0;
    while (k < r.length - 1 && u >= r[k]) u -= r[k++];
    const v = stds[k] ** 2 + sigma ** 2;
    const sd = Math.sqrt((stds[k] ** 2 * sigma ** 2) / v);
    for (let d = 0; d < dim; d++) {
      out[p * dim + d] = (stds[k] ** 2 * xNoisy[d] + sigma ** 2 * means[k][d]) / v + sd * rng.normal();
    }
  }
  return out;
}

/**
 * CT's targets x̌_σlo = x + σ_lo z for draws x ~ p(x | x_σhi) with z = (x_σhi − x)/σ_hi, i.e.
 * x̌ = x_σhi − (σ_hi − σ_lo)·z. Returns [n, dim].
 */
export function ctTargets(
  mix: GaussianMixture,
  xHi: ArrayLike<number>,
  sigmaHi: number,
  sigmaLo: number,
  n: number,
  rng: Rng,
): Points {
  const x = posteriorSamples(mix, xHi, sigmaHi, n, rng);
  const dim = mix.dim;
  return x.map((xv, i) => {
    const z = (xHi[i % dim] - xv) / sigmaHi;
    return xv + sigmaLo * z;
  });
}

/**
 * A one-parameter family of consistency functions around the true one: f_a(x, σ) = f*(x, σ) + a·c_out(σ)·x.
 * It meets the boundary condition for every a (c_out(σ_min) = 0) and is consistent only at a = 0.
 */
export function perturbedConsistency(
  mix: GaussianMixture,
  a: number,
  x: Points,
  sigmas: ArrayLike<number>,
  steps = 100,
): Points {
  const f = exactConsistencyPerRow(mix, x, sigmas, SIGMA_MIN, steps);
  const dim = mix.dim;
  for (let i = 0; i < f.length; i++) f[i] += a * cOut(sigmas[Math.floor(i / dim)]) * x[i];
  return f;
}

export interface ScaledGradient {
  /** N of the grid. */
  n: number;
  /** (N − 1)·∂L/∂a of CT's Eq. 5 with θ⁻ = stopgrad(θ) (μ = 0), and its standard error. */
  ct: number;
  ctSe: number;
  /** (N − 1)·∂L/∂a of consistency matching, Eq. 3 with the exact score, θ⁻ = θ. */
  cm: number;
  cmSe: number;
  /** (N − 1)·∂L/∂a of Eq. 5 with a teacher that lags the student by `lag` (an EMA teacher, μ > 0). */
  ctEma: number;
  ctEmaSe: number;
}

/**
 * The gradients §3.2 compares, for the student f_a and squared ℓ2, λ = 1, i ~ U⟦1, N−1⟧ (CT's choices), all
 * scaled by N − 1: ∂/∂a E[‖f_a(x_σi+1, σ_i+1) − f_a⁻(target, σ_i)‖²] = 2 E[(f_a(…) − f_a⁻(…))·c_out(σ_i+1)·x_σi+1]
 * with the teacher held fixed (stopgrad). The same draws (x, z, i) serve all three, for every N.
 */
export function scaledGradients(
  mix: GaussianMixture,
  opts: { n: number; a: number; lag: number; batch: number; rng: Rng; steps?: number },
): ScaledGradient {
  const { n, a, lag, batch, rng } = opts;
  if (mix.dim !== 1) throw new Error("scaledGradients is written for 1-D mixtures");
  const sigmas = karrasSigmas(n);
  const sHi = new Float64Array(batch);
  const sLo = new Float64Array(batch);
  const xHi = new Float64Array(batch);
  const xCheck = new Float64Array(batch);
  for (let b = 0; b < batch; b++) {
    const i = Math.min(n - 2, Math.floor(rng.uniform() * (n - 1)));
    [sLo[b], sHi[b]] = [sigmas[i], sigmas[i + 1]];
    const x = sampleOne(mix, rng);
    const z = rng.normal();
    xHi[b] = x + sHi[b] * z;
    xCheck[b] = x + sLo[b] * z;
  }
  const xBreve = eulerTarget(mix, xHi, sHi, sLo);
  const student = perturbedConsistency(mix, a, xHi, sHi, opts.steps);
  const grad = (target: Points, aTeacher: number) => {
    const teacher = perturbedConsistency(mix, aTeacher, target, sLo, opts.steps);
    const g = Float64Array.from(student, (s, b) => 2 * (s - teacher[b]) * cOut(sHi[b]) * xHi[b] * (n - 1));
    const mean = g.reduce((u, v) => u + v, 0) / batch;
    const se = Math.sqrt(g.reduce((u, v) => u + (v - mean) ** 2, 0) / (batch - 1) / batch);
    return [mean, se];
  };
  const [ct, ctSe] = grad(xCheck, a);
  const [cm, cmSe] = grad(xBreve, a);
  const [ctEma, ctEmaSe] = grad(xCheck, a + lag);
  return { n, ct, ctSe, cm, cmSe, ctEma, ctEmaSe };
}

function sampleOne(mix: GaussianMixture, rng: Rng): number {
  const total = mix.weights.reduce((u, v) => u + v, 0);
  let u = rng.uniform() * total;
  let k = 0;
  while (k < mix.weights.length - 1 && u >= mix.weights[k]) u -= mix.weights[k++];
  return mix.means[k][0] + mix.stds[k] * rng.normal();
}

/**
 * One batch's value of Eq. 5 with iCT's choices (lognormal pair sampling, λ = 1/(σ_i+1 − σ_i), Pseudo-Huber
 * for `mix.dim`-dimensional samples) on data from the mixture, for a consistency function `f` used as both
 * student and teacher (θ⁻ = θ).
 */
export async function ictLossOnMixture(
  mix: GaussianMixture,
  f: ConsistencyFn,
  n: number,
  batch: number,
  rng: Rng,
): Promise<number> {
  const sigmas = karrasSigmas(n);
  const idx = sampleLognormalIndices(sigmas, batch, rng);
  const lambda = ictWeighting(sigmas);
  const data = sampleMixture(mix, batch, () => rng.normal(), () => rng.uniform());
  const x = tf.tensor2d(Float32Array.from(data), [batch, mix.dim]);
  const z = tf.randomNormal([batch, mix.dim], 0, 1, "float32", rng.seed());
  const loss = ctLoss({
    student: f,
    teacher: f,
    x,
    z,
    sigmaLo: Float64Array.from(idx, (j) => sigmas[j]),
    sigmaHi: Float64Array.from(idx, (j) => sigmas[j + 1]),
    lambda: Float64Array.from(idx, (j) => lambda[j]),
    metric: ictMetric(mix.dim),
  });
  const value = (await loss.data())[0];
  tf.dispose([x, z, loss]);
  return value;
}
