// Noise-level embeddings: how the network sees c_noise(σ).
// - Gaussian Fourier features (NCSN++ on CIFAR-10): fixed random frequencies W ~ N(0, scale²);
//   scale 16 in CM, 0.02 in iCT (Sec. 3.1: a large scale makes continuous-time CT diverge).
// - Sinusoidal positional embedding (ADM on ImageNet 64), as in the Transformer / ADM timestep embedding.
import * as tf from "@tensorflow/tfjs";
import type { Rng } from "./rng.ts";

/** iCT's Fourier scale. */
export const ICT_FOURIER_SCALE = 0.02;
/** The original consistency models' Fourier scale. */
export const CM_FOURIER_SCALE = 16;

/** `count` fixed frequencies W_k ~ N(0, scale²), drawn once at construction (they are not trained). */
export function fourierFrequencies(count: number, scale: number, rng: Rng): Float32Array {
  if (!Number.isInteger(count) || count < 1) throw new Error(`frequency count must be >= 1, got ${count}`);
  return Float32Array.from({ length: count }, () => rng.normal() * scale);
}

/** Gaussian Fourier features [sin(2π·c·W), cos(2π·c·W)] → [B, 2·count] for c_noise of shape [B]. */
export function fourierFeatures(cNoise: tf.Tensor1D, frequencies: Float32Array | tf.Tensor1D): tf.Tensor2D {
  return tf.tidy(() => {
    const w = frequencies instanceof tf.Tensor ? frequencies : tf.tensor1d(frequencies);
    const angles = tf.mul(tf.mul(cNoise.expandDims(1), w.expandDims(0)), 2 * Math.PI);
    return tf.concat([tf.sin(angles), tf.cos(angles)], 1) as tf.Tensor2D;
  });
}

/**
 * Sinusoidal positional embedding → [B, dim] for c_noise of shape [B]:
 * [cos(c·ω_0) … cos(c·ω_{h−1}), sin(c·ω_0) … sin(c·ω_{h−1})], ω_k = maxPeriod^(−k/h), h = ⌊dim/2⌋,
 * with a zero column appended when dim is odd (ADM's timestep_embedding).
 */
export function positionalEmbedding(cNoise: tf.Tensor1D, dim: number, maxPeriod = 10000): tf.Tensor2D {
  if (!Number.isInteger(dim) || dim < 2) throw new Error(`embedding dim must be >= 2, got ${dim}`);
  const half = Math.floor(dim / 2);
  const omega = Float32Array.from({ length: half }, (_, k) => Math.exp((-Math.log(maxPeriod) * k) / half));
  return tf.tidy(() => {
    const angles = tf.mul(cNoise.expandDims(1), tf.tensor2d(omega, [1, half]));
    const parts = [tf.cos(angles), tf.sin(angles)];
    if (dim % 2 === 1) parts.push(tf.zeros([cNoise.shape[0], 1]));
    return tf.concat(parts, 1) as tf.Tensor2D;
  });
}
