// One consistency-training step (Eq. 5) with every choice of Table 1 switchable between iCT and CT:
//   L = E[ λ(σ_i) · d( f_θ(x + σ_{i+1} z, σ_{i+1}), f_θ⁻(x + σ_i z, σ_i) ) ]
// `planStep` draws everything random on the host (pair indices, noise seed, dropout seeds) so a step is a pure
// function of (config, k, RNG state); `lossAndGrads` runs it over micro-batches and accumulates the gradient.
import * as tf from "@tensorflow/tfjs";
import type { ConsistencyModel } from "../consistency_model.ts";
import { ctLoss, ictMetric, type Metric, squaredL2, teacherOutput } from "../losses.ts";
import { type Params, trainableParams } from "../nn/params.ts";
import type { Rng } from "../rng.ts";
import {
  ctDiscretizationSteps,
  ctTeacherEmaDecay,
  ictDiscretizationSteps,
  ictWeighting,
  karrasSigmas,
  lognormalNoiseProbabilities,
  sampleNoiseIndices,
  sampleUniformIndices,
  uniformWeighting,
} from "../schedules.ts";
import type { SampleBatch, SigmaBatch, SigmaGrid } from "../types.ts";
import { microBatchOf, type TrainConfig } from "./config.ts";

/** Everything random about step k, drawn on the host. */
export interface StepPlan {
  k: number;
  /** N(k): number of noise levels of the discretization. */
  n: number;
  sigmas: SigmaGrid;
  /** Pair index j per sample (0-based: the pair (sigmas[j], sigmas[j+1])). */
  indices: Int32Array;
  sigmaLo: SigmaBatch;
  sigmaHi: SigmaBatch;
  lambda: Float64Array;
  /** Seed of z ~ N(0, I) for the whole batch (the same z at both noise levels). */
  zSeed: number;
  studentDropoutSeed: number;
  /** Equal to the student's with sharedDropout. */
  teacherDropoutSeed: number;
  /** μ(k) of CT's teacher EMA; 0 with the stop-gradient teacher (θ⁻ = θ). */
  mu: number;
}

/** N(k) under the configured curriculum. */
export function discretizationSteps(c: TrainConfig, k: number): number {
  return c.curriculum === "exponential"
    ? ictDiscretizationSteps(k, c.totalIters, c.s0, c.s1) // iCT, Sec. 3.4
    : ctDiscretizationSteps(k, c.totalIters, c.s0, c.s1); // CT
}

/** Draw step k's randomness from `rng`, in a fixed order (resume depends on it). */
export function planStep(c: TrainConfig, k: number, rng: Rng, batch = c.batch): StepPlan {
  const n = discretizationSteps(c, k);
  const sigmas = karrasSigmas(n);
  const indices = c.noise === "lognormal"
    ? sampleNoiseIndices(lognormalNoiseProbabilities(sigmas, c.pMean, c.pStd), batch, rng) // Sec. 3.5
    : sampleUniformIndices(sigmas, batch, rng);
  const weights = c.weighting === "ict" ? ictWeighting(sigmas) : uniformWeighting(sigmas); // Sec. 3.1
  const pick = (offset: number, from: Float64Array) => Float64Array.from(indices, (j) => from[j + offset]);
  const zSeed = rng.seed();
  const studentDropoutSeed = rng.seed();
  const teacherDropoutSeed = c.sharedDropout ? studentDropoutSeed : rng.seed();
  return {
    k,
    n,
    sigmas,
    indices,
    sigmaLo: pick(0, sigmas),
    sigmaHi: pick(1, sigmas),
    lambda: pick(0, weights),
    zSeed,
    studentDropoutSeed,
    teacherDropoutSeed,
    mu: c.teacher === "ema" ? ctTeacherEmaDecay(k, c.totalIters, c.teacherMu0, c.s0, c.s1) : 0,
  };
}

/** The configured metric d for samples of `dim` values. */
export function metricOf(c: TrainConfig, dim: number): Metric {
  return c.metric === "pseudo-huber" ? ictMetric(dim) : squaredL2;
}

/** Dropout seed of micro-batch j: the step's own seed for the first, a distinct one for the others. */
function microSeed(seed: number, j: number): number {
  return j === 0 ? seed : (seed ^ Math.imul(j, 0x9e3779b1)) >>> 1;
}

export interface StepBatch {
  x: SampleBatch;
  /** One-hot labels [B, labelDim] for class-conditional models. */
  labels?: tf.Tensor2D;
}

export interface LossAndGrads {
  /** The batch's loss of Eq. 5 (mean over the whole batch). */
  loss: number;
  /** Gradients of that loss, by parameter name (trainable parameters only). */
  grads: Map<string, tf.Tensor>;
  /** Global ℓ2 norm of the gradient. */
  gradNorm: number;
}

/**
 * Loss and gradient of one step. `teacherParams` is θ⁻: the student's own parameters in iCT (then evaluated
 * outside the tape, i.e. under a stop-gradient), the EMA teacher in CT. The batch is split into micro-batches
 * of `microBatch` samples whose gradients are summed with weights m/B, so the result equals one pass over B
 * (exactly so without dropout; with dropout each micro-batch draws its own masks).
 */
export async function lossAndGrads(
  model: ConsistencyModel,
  params: Params,
  teacherParams: Params,
  c: TrainConfig,
  plan: StepPlan,
  batch: StepBatch,
): Promise<LossAndGrads> {
  const b = batch.x.shape[0];
  if (b !== plan.indices.length) throw new Error(`batch of ${b} for a plan of ${plan.indices.length}`);
  const m = Math.min(microBatchOf(c), b);
  if (b % m !== 0) throw new Error(`batch ${b} is not a multiple of the micro-batch ${m}`);
  const dim = batch.x.size / b;
  const metric = metricOf(c, dim);
  const trainable = trainableParams(params);
  const vars = [...trainable.values()];
  const names = new Map([...trainable].map(([name, v]) => [v.name, name])); // variable name → parameter name
  const z = tf.randomNormal(batch.x.shape, 0, 1, "float32", plan.zSeed);
  const grads = new Map<string, tf.Tensor>();
  let loss = 0;
  try {
    for (let j = 0; j * m < b; j++) {
      const lo = j * m;
      const part = <T extends tf.Tensor>(t: T) => (m === b ? t : t.slice(lo, m)) as T;
      const xj = part(batch.x);
      const zj = part(z);
      const labels = batch.labels ? part(batch.labels) : undefined;
      const sigmaLo = plan.sigmaLo.subarray(lo, lo + m);
      const sigmaHi = plan.sigmaHi.subarray(lo, lo + m);
      const teacher = model.fn(
        teacherParams,
        { training: true, dropoutSeed: microSeed(plan.teacherDropoutSeed, j) },
        labels,
      );
      // f_θ⁻(x + σ_i z, σ_i), outside the tape: no activations kept, no backward pass.
      const fTeacher = teacherOutput(teacher, xj, zj, sigmaLo);
      const student = model.fn(
        params,
        { training: true, dropoutSeed: microSeed(plan.studentDropoutSeed, j) },
        labels,
      );
      const { value, grads: g } = tf.variableGrads(() =>
        tf.mul(
          ctLoss({
            student,
            teacher: fTeacher,
            x: xj,
            z: zj,
            sigmaLo,
            sigmaHi,
            lambda: plan.lambda.subarray(lo, lo + m),
            metric,
          }),
          m / b,
        ) as tf.Scalar, vars);
      loss += (await value.data())[0]; // async read: webgpu cannot read synchronously
      value.dispose();
      fTeacher.dispose();
      for (const [varName, gv] of Object.entries(g)) {
        const name = names.get(varName)!;
        const prev = grads.get(name);
        if (prev) {
          grads.set(name, tf.add(prev, gv));
          prev.dispose();
          gv.dispose();
        } else grads.set(name, gv);
      }
      if (m !== b) [xj, zj, labels].forEach((t) => t?.dispose());
    }
  } finally {
    z.dispose();
  }
  const squared = tf.tidy(() => tf.addN([...grads.values()].map((g) => tf.sum(tf.square(g)))));
  const gradNorm = Math.sqrt((await squared.data())[0]);
  squared.dispose();
  return { loss, grads, gradNorm };
}

/** target ← decay·target + (1 − decay)·source for every trainable parameter (EMA; the arguments in this order). */
export function emaUpdate(target: Params, source: Params, decay: number): void {
  tf.tidy(() => {
    for (const [name, t] of target) {
      if (!(t instanceof tf.Variable)) continue;
      const s = source.get(name);
      if (!s) throw new Error(`EMA: parameter ${name} is missing from the source`);
      t.assign(tf.add(tf.mul(t, decay), tf.mul(s, 1 - decay)));
    }
  });
}

/** A copy of a parameter map: trainable parameters as new variables, the others as clones. */
export function copyParams(params: Params): Map<string, tf.Tensor> {
  const out = new Map<string, tf.Tensor>();
  for (const [name, t] of params) {
    out.set(name, t instanceof tf.Variable ? tf.variable(t, t.trainable) : t.clone());
  }
  return out;
}
