// Names for what values ARE in this kit, so signatures read like the paper.
import type * as tf from "@tensorflow/tfjs";

/** A noise level σ (the standard deviation of the Gaussian added to data), a plain float64 on the host. */
export type Sigma = number;

/** The discretization σ_1 < σ_2 < … < σ_N (index 0 holds σ_1), float64 on the host. */
export type SigmaGrid = Float64Array;

/** One noise level per sample of a batch, float64 on the host (σ values come from the discrete grid). */
export type SigmaBatch = Float64Array;

/** A batch of images, NHWC, float32, data scaled to [−1, 1] (σ_data = 0.5 refers to this scale). */
export type ImageBatch = tf.Tensor4D;

/** Any batch of samples [B, …] (images, or 2-D points for toy data). */
export type SampleBatch = tf.Tensor;

/** One value per sample of a batch, shape [B]. */
export type PerSample = tf.Tensor1D;
