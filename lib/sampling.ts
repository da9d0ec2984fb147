// Sampling from a consistency model (Sec. 2, CM Algorithm 1).
//   one step:   x = f_θ(z, σ_max),  z ~ N(0, σ_max² I)
//   multistep:  for τ in τ_2 > τ_3 > …:  x ← f_θ(x + √(τ² − σ_min²)·z, τ),  z ~ N(0, I)
import * as tf from "@tensorflow/tfjs";
import type { ConsistencyFn } from "./losses.ts";
import type { Rng } from "./rng.ts";
import { SIGMA_MAX, SIGMA_MIN } from "./schedules.ts";
import type { Sigma } from "./types.ts";

/** The intermediate σ of the paper's two-step samples. */
export const TWO_STEP_SIGMA = { cifar10: 0.821, imagenet64: 1.526 } as const;

/** Noise levels τ_1 = σ_max > τ_2 > … of an n-step sample; two steps use the dataset's σ_mid. */
export function samplingSchedule(steps: number, sigmaMid: Sigma = TWO_STEP_SIGMA.cifar10): Sigma[] {
  if (steps === 1) return [SIGMA_MAX];
  if (steps === 2) return [SIGMA_MAX, sigmaMid];
  throw new Error(`samplingSchedule knows 1 or 2 steps; pass your own τ list to sample() for ${steps}`);
}

/**
 * Draw a batch of `shape` (shape[0] = batch) with CM Algorithm 1 over the descending noise levels `taus`
 * (taus[0] is where sampling starts, usually σ_max). Noise comes from `rng`, so samples are reproducible.
 */
export function sample(
  f: ConsistencyFn,
  shape: number[],
  taus: Sigma[],
  rng: Rng,
  sigmaMin = SIGMA_MIN,
): tf.Tensor {
  if (taus.length === 0) throw new Error("sample needs at least one noise level");
  for (let i = 1; i < taus.length; i++) {
    if (!(taus[i] < taus[i - 1] && taus[i] > sigmaMin)) {
      throw new Error(`noise levels must descend and stay above σ_min=${sigmaMin}: got [${taus}]`);
    }
  }
  const perSample = (sigma: Sigma) => new Float64Array(shape[0]).fill(sigma);
  let x = tf.tidy(() =>
    f(tf.mul(tf.randomNormal(shape, 0, 1, "float32", rng.seed()), taus[0]), perSample(taus[0]))
  );
  for (const tau of taus.slice(1)) {
    const prev = x;
    x = tf.tidy(() => {
      const z = tf.randomNormal(shape, 0, 1, "float32", rng.seed());
      return f(tf.add(prev, tf.mul(z, Math.sqrt(tau * tau - sigmaMin * sigmaMin))), perSample(tau));
    });
    prev.dispose();
  }
  return x;
}
