// The consistency-model parameterization (Eq. 2):
//   f_θ(x, σ) = c_skip(σ)·x + c_out(σ)·F_θ(c_in(σ)·x, c_noise(σ))
// with c_skip(σ_min) = 1 and c_out(σ_min) = 0, so f_θ(x, σ_min) = x exactly (the boundary condition).
//
// σ values are known on the host (they come from the discrete grid), so each formula is written once on
// float64 numbers; the batch versions evaluate it per sample and upload the result as a float32 tensor.
import * as tf from "@tensorflow/tfjs";
import { SIGMA_MIN } from "./schedules.ts";
import type { Sigma, SigmaBatch } from "./types.ts";

export const SIGMA_DATA = 0.5;

/** c_skip(σ) = σ_data² / ((σ − σ_min)² + σ_data²)  (Eq. 2; CM Appendix C). */
export function cSkip(sigma: Sigma, sigmaData = SIGMA_DATA, sigmaMin = SIGMA_MIN): number {
  return sigmaData ** 2 / ((sigma - sigmaMin) ** 2 + sigmaData ** 2);
}

/** c_out(σ) = σ_data·(σ − σ_min) / √(σ² + σ_data²)  (Eq. 2; CM Appendix C). */
export function cOut(sigma: Sigma, sigmaData = SIGMA_DATA, sigmaMin = SIGMA_MIN): number {
  return (sigmaData * (sigma - sigmaMin)) / Math.sqrt(sigma ** 2 + sigmaData ** 2);
}

/** c_in(σ) = 1 / √(σ² + σ_data²)  (EDM's input scaling, used by CM/iCT). */
export function cIn(sigma: Sigma, sigmaData = SIGMA_DATA): number {
  return 1 / Math.sqrt(sigma ** 2 + sigmaData ** 2);
}

/** c_noise for the Fourier noise embedding (NCSN++, CIFAR-10): 0.25·ln σ. */
export function cNoiseFourier(sigma: Sigma): number {
  return 0.25 * Math.log(sigma);
}

/** c_noise for the positional noise embedding (ADM, ImageNet 64): 1000·0.25·ln(σ + 1e-44) = 250·ln(σ + 1e-44). */
export function cNoisePositional(sigma: Sigma): number {
  return 250 * Math.log(sigma + 1e-44);
}

export type NoiseEmbeddingKind = "fourier" | "positional";

export const C_NOISE: Record<NoiseEmbeddingKind, (sigma: Sigma) => number> = {
  fourier: cNoiseFourier,
  positional: cNoisePositional,
};

/** The four coefficients for a batch: cSkip, cOut, cIn shaped [B, 1, …, 1] to broadcast over samples. */
export interface Scalings {
  cSkip: tf.Tensor;
  cOut: tf.Tensor;
  cIn: tf.Tensor;
  /** [B], the network's noise-conditioning input. */
  cNoise: tf.Tensor1D;
}

export interface ScalingOptions {
  sigmaData?: number;
  sigmaMin?: Sigma;
  embedding?: NoiseEmbeddingKind;
  /** Rank of the samples the coefficients multiply (4 for NHWC images, 2 for points). Default 4. */
  sampleRank?: number;
}

function perSample(sigmas: SigmaBatch, fn: (sigma: Sigma) => number): Float32Array {
  return Float32Array.from(sigmas, fn);
}

/** c_skip, c_out, c_in and c_noise of every sample's σ, as tensors ready to broadcast (Eq. 2). */
export function scalings(sigmas: SigmaBatch, opts: ScalingOptions = {}): Scalings {
  const { sigmaData = SIGMA_DATA, sigmaMin = SIGMA_MIN, embedding = "fourier", sampleRank = 4 } = opts;
  const shape = [sigmas.length, ...new Array(sampleRank - 1).fill(1)];
  return {
    cSkip: tf.tensor(perSample(sigmas, (s) => cSkip(s, sigmaData, sigmaMin)), shape),
    cOut: tf.tensor(perSample(sigmas, (s) => cOut(s, sigmaData, sigmaMin)), shape),
    cIn: tf.tensor(perSample(sigmas, (s) => cIn(s, sigmaData)), shape),
    cNoise: tf.tensor1d(perSample(sigmas, C_NOISE[embedding])),
  };
}

/** A raw network F_θ(c_in·x, c_noise) → same shape as x. */
export type RawNetwork = (scaledInput: tf.Tensor, cNoise: tf.Tensor1D) => tf.Tensor;

/** f_θ(x, σ) = c_skip(σ)·x + c_out(σ)·F_θ(c_in(σ)·x, c_noise(σ))  (Eq. 2). */
export function consistencyFunction(
  network: RawNetwork,
  x: tf.Tensor,
  sigmas: SigmaBatch,
  opts: Omit<ScalingOptions, "sampleRank"> = {},
): tf.Tensor {
  if (x.shape[0] !== sigmas.length) {
    throw new Error(`batch of ${x.shape[0]} samples but ${sigmas.length} noise levels`);
  }
  return tf.tidy(() => {
    const c = scalings(sigmas, { ...opts, sampleRank: x.rank });
    return tf.add(tf.mul(c.cSkip, x), tf.mul(c.cOut, network(tf.mul(c.cIn, x), c.cNoise)));
  });
}
