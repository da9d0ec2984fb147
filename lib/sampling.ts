// Sampling from a consistency model (Sec. 2, CM Algorithm 1).
//   one step:   x = f_θ(z, σ_max),  z ~ N(0, σ_max² I)
//   multistep:  for τ in τ_2 > τ_3 > …:  x ← f_θ(x + √(τ² − σ_min²)·z, τ),  z ~ N(0, I)
import * as tf from "@tensorflow/tfjs";
import type { ConsistencyFn } from "./losses.ts";
import { concat } from "./arrays.ts";
import type { ConsistencyModel } from "./consistency_model.ts";
import { oneHotLabels } from "./models/network.ts";
import { EVAL, type Params } from "./nn/params.ts";
import { Rng } from "./rng.ts";
import { karrasSigmas, SIGMA_MAX, SIGMA_MIN } from "./schedules.ts";
import type { Sigma } from "./types.ts";

/** The intermediate σ of the paper's two-step samples. */
export const TWO_STEP_SIGMA = { cifar10: 0.821, imagenet64: 1.526 } as const;

/**
 * Noise levels τ_1 = σ_max > τ_2 > … of an n-step sample. Two steps use the dataset's σ_mid (the paper's);
 * more steps use the top n levels of an (n+1)-level Karras grid (the kit's choice: the paper reports only one
 * and two steps). Pass your own list to `sample` for any other schedule.
 */
export function samplingSchedule(steps: number, sigmaMid: Sigma = TWO_STEP_SIGMA.cifar10): Sigma[] {
  if (!Number.isInteger(steps) || steps < 1) {
    throw new Error(`sampling steps must be an integer >= 1, got ${steps}`);
  }
  if (steps === 1) return [SIGMA_MAX];
  if (steps === 2) return [SIGMA_MAX, sigmaMid];
  return Array.from(karrasSigmas(steps + 1)).reverse().slice(0, steps);
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

export interface SampleManyOptions {
  /** Noise levels of CM Algorithm 1, descending (`samplingSchedule`). */
  taus: Sigma[];
  /** Samples per network call. */
  batch: number;
  seed: number;
  /** Class-conditional models: the class of sample i (default i mod labelDim). */
  classes?: (i: number) => number;
}

/**
 * `n` samples of a consistency model, `batch` at a time, as host arrays ([b, …sampleShape] float32, and the
 * classes when the model is class-conditional). The same seed gives the same samples.
 */
export async function* sampleMany(
  model: ConsistencyModel,
  params: Params,
  n: number,
  opts: SampleManyOptions,
): AsyncGenerator<{ x: Float32Array; classes?: Int32Array; count: number }> {
  const rng = Rng.seeded(opts.seed);
  const labelDim = model.network.labelDim;
  const classOf = opts.classes ?? ((i: number) => i % Math.max(labelDim, 1));
  for (let done = 0; done < n;) {
    const count = Math.min(opts.batch, n - done);
    const classes = labelDim > 0
      ? Int32Array.from({ length: count }, (_, i) => classOf(done + i))
      : undefined;
    const labels = classes ? oneHotLabels(classes, labelDim) : undefined;
    const x = sample(
      model.fn(params, EVAL, labels),
      [count, ...model.network.sampleShape],
      opts.taus,
      rng,
      model.sigmaMin,
    );
    const data = (await x.data()) as Float32Array;
    x.dispose();
    labels?.dispose();
    yield { x: data, classes, count };
    done += count;
  }
}

/** All `n` samples of `sampleMany` in one array [n, …sampleShape]. */
export async function sampleAll(
  model: ConsistencyModel,
  params: Params,
  n: number,
  opts: SampleManyOptions,
): Promise<Float32Array> {
  const parts: Float32Array[] = [];
  for await (const b of sampleMany(model, params, n, opts)) parts.push(b.x);
  return concat(parts, Float32Array);
}
