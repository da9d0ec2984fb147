// Metrics d(x, y) and the consistency-training objective (Eq. 5):
//   L_CT^N(θ, θ⁻) = E[ λ(σ_i) · d( f_θ(x + σ_{i+1} z, σ_{i+1}), f_θ⁻(x + σ_i z, σ_i) ) ]
// Every metric returns ONE value per sample, computed over the whole sample (all pixels and channels).
import * as tf from "@tensorflow/tfjs";
import type { PerSample, SampleBatch, SigmaBatch } from "./types.ts";

/** iCT's Pseudo-Huber constant c = 0.00054·√d, d = dimension of one sample (3072 on CIFAR-10 → c ≈ 0.0299). */
export function pseudoHuberC(dim: number): number {
  if (!(dim > 0)) throw new Error(`sample dimension must be > 0, got ${dim}`);
  return 0.00054 * Math.sqrt(dim);
}

/** ‖x − y‖₂² per sample (CT's squared ℓ2 metric). */
export function squaredL2(x: SampleBatch, y: SampleBatch): PerSample {
  return tf.tidy(() => tf.sum(tf.square(tf.sub(x, y)).reshape([x.shape[0], -1]), 1) as PerSample);
}

/**
 * Pseudo-Huber metric d(x, y) = √(‖x − y‖₂² + c²) − c per sample (Sec. 3.3), on the whole sample's ℓ2 norm,
 * NOT element-wise. Written as s / (√(s + c²) + c) with s = ‖x − y‖₂²: the same value, without the
 * cancellation that loses all float32 digits when s ≪ c².
 */
export function pseudoHuber(x: SampleBatch, y: SampleBatch, c: number): PerSample {
  if (!(c > 0)) throw new Error(`Pseudo-Huber c must be > 0, got ${c}`);
  return tf.tidy(() => {
    const s = squaredL2(x, y);
    return tf.div(s, tf.add(tf.sqrt(tf.add(s, c * c)), c)) as PerSample;
  });
}

/** A metric d(x, y) → one value per sample. */
export type Metric = (x: SampleBatch, y: SampleBatch) => PerSample;

/** iCT's default metric for samples of `dim` values: Pseudo-Huber with c = 0.00054·√dim. */
export function ictMetric(dim: number): Metric {
  const c = pseudoHuberC(dim);
  return (x, y) => pseudoHuber(x, y, c);
}

/** Identity forward, zero gradient: θ⁻ = stopgrad(θ) (Eq. 4 with μ = 0 in iCT). TF.js has no such op. */
export const stopGradient = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => ({
  value: tf.clone(args[0] as tf.Tensor),
  gradFunc: (dy: tf.Tensor) => tf.zerosLike(dy),
})) as (x: tf.Tensor) => tf.Tensor;

/** A consistency function f(x, σ) over a batch. Student and teacher must use the same dropout mask. */
export type ConsistencyFn = (x: SampleBatch, sigmas: SigmaBatch) => SampleBatch;

export interface CtLossInputs {
  /** f_θ, the student. */
  student: ConsistencyFn;
  /**
   * f_θ⁻, the teacher: the student itself in iCT (it is stop-gradiented here), an EMA copy in CT. Or its
   * output f_θ⁻(x + σ_i z, σ_i), computed beforehand with `teacherOutput` OUTSIDE the gradient tape: what
   * training does, since then the teacher keeps no activations and costs no backward pass.
   */
  teacher: ConsistencyFn | SampleBatch;
  /** Clean data x ~ p_data. */
  x: SampleBatch;
  /** Noise z ~ N(0, I), the SAME z for both noise levels. */
  z: SampleBatch;
  /** σ_i per sample (the teacher's, lower noise level). */
  sigmaLo: SigmaBatch;
  /** σ_{i+1} per sample (the student's, higher noise level). */
  sigmaHi: SigmaBatch;
  /** λ(σ_i) per sample. */
  lambda: Float64Array;
  metric: Metric;
}

/** x + σ·z per sample: the noisy input at noise level σ (the same z for both levels of a pair). */
export function perturb(x: SampleBatch, z: SampleBatch, sigmas: SigmaBatch): SampleBatch {
  if (sigmas.length !== x.shape[0]) {
    throw new Error(`${sigmas.length} noise levels for a batch of ${x.shape[0]}`);
  }
  return tf.tidy(() => {
    const perSampleShape = [x.shape[0], ...new Array(x.rank - 1).fill(1)];
    return tf.add(x, tf.mul(tf.tensor(Float32Array.from(sigmas), perSampleShape), z));
  });
}

/** The teacher's side of Eq. 5, f_θ⁻(x + σ_i z, σ_i). Call it outside tf.grads/variableGrads. */
export function teacherOutput(teacher: ConsistencyFn, x: SampleBatch, z: SampleBatch, sigmaLo: SigmaBatch) {
  return tf.tidy(() => teacher(perturb(x, z, sigmaLo), sigmaLo));
}

/** The weighted consistency-training loss of Eq. 5, averaged over the batch. Gradients reach the student only. */
export function ctLoss(inp: CtLossInputs): tf.Scalar {
  const n = inp.x.shape[0];
  for (
    const [name, a] of [["sigmaLo", inp.sigmaLo], ["sigmaHi", inp.sigmaHi], ["lambda", inp.lambda]] as const
  ) {
    if (a.length !== n) throw new Error(`ctLoss: ${name} has ${a.length} entries for a batch of ${n}`);
  }
  return tf.tidy(() => {
    const fStudent = inp.student(perturb(inp.x, inp.z, inp.sigmaHi), inp.sigmaHi); // f_θ(x + σ_{i+1} z, σ_{i+1})
    const teacher = typeof inp.teacher === "function"
      ? teacherOutput(inp.teacher, inp.x, inp.z, inp.sigmaLo) // f_θ⁻(x + σ_i z, σ_i)
      : inp.teacher;
    if (teacher.shape.join(",") !== fStudent.shape.join(",")) {
      throw new Error(
        `ctLoss: teacher output [${teacher.shape}] does not match the student's [${fStudent.shape}]`,
      );
    }
    const fTeacher = stopGradient(teacher);
    const lambda = tf.tensor1d(Float32Array.from(inp.lambda));
    return tf.mean(tf.mul(lambda, inp.metric(fStudent, fTeacher))) as tf.Scalar; // Eq. 5
  });
}
