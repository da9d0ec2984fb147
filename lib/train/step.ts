// One consistency-training step (Eq. 5) with every choice of Table 1 switchable between iCT and CT:
//   L = E[ λ(σ_i) · d( f_θ(x + σ_{i+1} z, σ_{i+1}), f_θ⁻(x + σ_i z, σ_i) ) ]
// `planStep` draws everything random on the host (pair indices, noise seed, dropout seeds) so a step is a pure
// function of (config, k, RNG state). `lossAndGrads` runs it: `forwardBackward` on each micro-batch, whose
// gradients `accumulate` sums. Dropout masks are a function of (seed, layer, global sample index, element), so
// any split of the batch takes exactly the same step as one pass.
import * as tf from "@tensorflow/tfjs";
import type { ConsistencyModel } from "../consistency_model.ts";
import { ctLoss, ictMetric, type Metric, pseudoHuber, squaredL2, teacherOutput } from "../losses.ts";
import { type Params, trainableParams } from "../nn/params.ts";
import type { Rng } from "../rng.ts";
import {
  ctDiscretizationSteps,
  ctTeacherEmaDecay,
  ictDiscretizationSteps,
  ictWeighting,
  karrasSigmas,
  sampleLognormalIndices,
  sampleUniformIndices,
  uniformWeighting,
} from "../schedules.ts";
import type { Shard } from "../data/dataset.ts";
import type { SampleBatch, SigmaBatch, SigmaGrid } from "../types.ts";
import { microBatchOf, type TrainConfig } from "./config.ts";
import { emaOf, sumOfSquaresOf } from "../wasm_kernels.ts";

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
    ? sampleLognormalIndices(sigmas, batch, rng, c.pMean, c.pStd) // Sec. 3.5
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
  if (c.metric === "l2") return squaredL2;
  const pc = c.pseudoHuberC ?? 0; // absent in configs stored before the setting existed
  return pc > 0 ? (x, y) => pseudoHuber(x, y, pc) : ictMetric(dim); // Sec. 3.3: c = 0.00054·√d by default
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

/** A micro-batch's share of the step, still on the device. */
interface Partial {
  loss: tf.Scalar;
  grads: Map<string, tf.Tensor>;
}

/**
 * Loss and gradient of one step. `teacherParams` is θ⁻: the student's own parameters in iCT (then evaluated
 * outside the tape, i.e. under a stop-gradient), the EMA teacher in CT. The batch is split into micro-batches
 * of `microBatch` samples whose losses and gradients are summed with weights m/B: the result equals one pass
 * over the batch (to float32 round-off), dropout included. With `shard`, `batch` holds only samples
 * offset … offset+count−1 of the step's B (a data-parallel rank's share): the result is that share's part of
 * the sums, which the ranks' all-reduce adds up to the one-process step.
 */
export async function lossAndGrads(
  model: ConsistencyModel,
  params: Params,
  teacherParams: Params,
  c: TrainConfig,
  plan: StepPlan,
  batch: StepBatch,
  shard: Shard = { offset: 0, count: plan.indices.length },
): Promise<LossAndGrads> {
  const b = batch.x.shape[0];
  if (b !== shard.count || shard.offset + shard.count > plan.indices.length) {
    throw new Error(
      `batch of ${b} (samples ${shard.offset}+${shard.count}) for a plan of ${plan.indices.length}`,
    );
  }
  const m = Math.min(microBatchOf(c), b);
  if (b % m !== 0) throw new Error(`batch ${b} is not a multiple of the micro-batch ${m}`);
  // One z for the step's whole batch, so any pass or shard sees its own samples' noise.
  const z = tf.tidy(() => {
    const all = tf.randomNormal(
      [plan.indices.length, ...batch.x.shape.slice(1)],
      0,
      1,
      "float32",
      plan.zSeed,
    );
    return b === plan.indices.length ? all : all.slice(shard.offset, b);
  });
  let total: Partial | undefined;
  try {
    for (let lo = 0; lo < b; lo += m) {
      const part = forwardBackward(model, params, teacherParams, c, plan, batch, z, lo, m, shard.offset);
      total = accumulate(total, part);
    }
  } finally {
    z.dispose();
  }
  // The one read from the device per step (a sync point): the loss and the squared gradient norm.
  const readout = tf.tidy(() => tf.stack([total!.loss, sumOfSquaresOf([...total!.grads.values()])]));
  const [loss, squaredNorm] = await readout.data(); // async: webgpu cannot read synchronously
  tf.dispose([readout, total!.loss]);
  return { loss, grads: total!.grads, gradNorm: Math.sqrt(squaredNorm) };
}

/**
 * Eq. 5 on local samples lo … lo+m−1 (global offset + lo …) of the step, weighted m/B, and its gradient
 * (nothing read back).
 */
function forwardBackward(
  model: ConsistencyModel,
  params: Params,
  teacherParams: Params,
  c: TrainConfig,
  plan: StepPlan,
  batch: StepBatch,
  z: tf.Tensor,
  lo: number,
  m: number,
  offset: number,
): Partial {
  const whole = m === batch.x.shape[0];
  const slice = <T extends tf.Tensor>(t: T) => (whole ? t : t.slice(lo, m)) as T;
  const [x, zj, labels] = [slice(batch.x), slice(z), batch.labels && slice(batch.labels)];
  const at = offset + lo; // the global index of this pass's first sample
  const sigmaLo = plan.sigmaLo.subarray(at, at + m);
  // The same masks as a pass over the whole batch: masks follow the global sample index.
  const ctx = (dropoutSeed: number) => ({ training: true, dropoutSeed, sampleOffset: at });
  // f_θ⁻(x + σ_i z, σ_i), outside the tape: no activations kept, no backward pass.
  const fTeacher = teacherOutput(
    model.fn(teacherParams, ctx(plan.teacherDropoutSeed), labels),
    x,
    zj,
    sigmaLo,
  );
  const student = model.fn(params, ctx(plan.studentDropoutSeed), labels);
  const trainable = [...trainableParams(params)];
  const { value, grads } = tf.variableGrads(() =>
    tf.mul(
      ctLoss({
        student,
        teacher: fTeacher,
        x,
        z: zj,
        sigmaLo,
        sigmaHi: plan.sigmaHi.subarray(at, at + m),
        lambda: plan.lambda.subarray(at, at + m),
        metric: metricOf(c, x.size / m),
      }),
      m / plan.indices.length,
    ) as tf.Scalar, trainable.map(([, v]) => v));
  fTeacher.dispose();
  if (!whole) tf.dispose([x, zj, labels ?? []]);
  const byName = new Map(trainable.map(([name, v]) => [v.name, name])); // variable name → parameter name
  return { loss: value, grads: new Map(Object.entries(grads).map(([v, g]) => [byName.get(v)!, g])) };
}

/** total + part, disposing both inputs (the first part is taken as is). */
function accumulate(total: Partial | undefined, part: Partial): Partial {
  if (!total) return part;
  const sum = (a: tf.Tensor, b: tf.Tensor) => {
    const s = tf.add(a, b);
    tf.dispose([a, b]);
    return s;
  };
  return {
    loss: sum(total.loss, part.loss) as tf.Scalar,
    grads: new Map([...total.grads].map(([name, g]) => [name, sum(g, part.grads.get(name)!)])),
  };
}

/** target ← decay·target + (1 − decay)·source for every trainable parameter (EMA; the arguments in this order). */
export function emaUpdate(target: Params, source: Params, decay: number): void {
  tf.tidy(() => {
    for (const [name, t] of target) {
      if (!(t instanceof tf.Variable)) continue;
      const s = source.get(name);
      if (!s) throw new Error(`EMA: parameter ${name} is missing from the source`);
      t.assign(emaOf(t, s, decay));
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
