// Zero-shot editing with a consistency model (CM paper, Song et al. 2023, Algorithm 4), and interpolation
// between two noises. Algorithm 4, for f_θ, times t_1 > … > t_N, a reference y, an invertible linear A and a
// binary mask Ω (1 = the coordinates of Ay to generate, 0 = those kept from y):
//   y ← A⁻¹[(Ay)⊙(1−Ω) + 0⊙Ω]
//   x ← y + t_1·z;  x ← f_θ(x, t_1);  x ← A⁻¹[(Ay)⊙(1−Ω) + (Ax)⊙Ω]
//   for n = 2 … N:  x ← x + √(t_n² − ε²)·z;  x ← f_θ(x, t_n);  x ← A⁻¹[(Ay)⊙(1−Ω) + (Ax)⊙Ω]
// The tasks are choices of A and Ω: inpainting (A = I, Ω the hole), colorization (A an orthogonal colour basis
// whose first axis is luminance, Ω the two chroma axes), super-resolution (A an orthogonal basis per p×p patch
// whose first axis is the patch mean, Ω the other p² − 1 axes). Every A here is a Householder reflection
// H = I − 2vvᵀ/vᵀv, v = e_1 − u, which swaps e_1 and the unit vector u: orthogonal and its own inverse.
// Samples are tensors [B, …sampleShape]; images are NHWC.
import * as tf from "@tensorflow/tfjs";
import type { ConsistencyFn } from "./losses.ts";
import { imageGrid, quantize, type RawImage } from "./images.ts";
import type { Rng } from "./rng.ts";
import { SIGMA_MAX, SIGMA_MIN } from "./schedules.ts";
import type { Sigma } from "./types.ts";

/** An invertible linear map A on samples [B, …sampleShape] (same shape out), with A⁻¹. */
export interface LinearTransform {
  name: string;
  forward(x: tf.Tensor): tf.Tensor;
  inverse(x: tf.Tensor): tf.Tensor;
}

/** ITU-R BT.601 luma weights, the luminance axis of colorization (the CM paper's choice). */
export const LUMA = [0.2989, 0.587, 0.114] as const;

/** The Householder reflection [k, k] (row-major, float64) that swaps e_1 and the direction of `u`. */
export function householder(u: ArrayLike<number>): Float64Array {
  const k = u.length;
  const norm = Math.hypot(...Array.from(u));
  if (!(norm > 0)) throw new Error("householder: the direction u must be non-zero");
  const v = Float64Array.from(u, (x) => -x / norm);
  v[0] += 1; // v = e_1 − u/|u|
  const vv = v.reduce((s, x) => s + x * x, 0);
  const h = new Float64Array(k * k);
  for (let i = 0; i < k; i++) {
    for (let j = 0; j < k; j++) h[i * k + j] = (i === j ? 1 : 0) - (vv > 0 ? (2 * v[i] * v[j]) / vv : 0);
  }
  return h;
}

/** A = I: inpainting keeps and fills pixels. */
export function identityTransform(): LinearTransform {
  return { name: "identity", forward: (x) => tf.clone(x), inverse: (x) => tf.clone(x) };
}

/**
 * The colour basis of colorization: per pixel, channel coordinates (r, g, b) → (luminance axis, two chroma
 * axes), the Householder reflection that maps e_1 to LUMA/|LUMA|. Coordinate 0 is ⟨LUMA, rgb⟩/|LUMA|; a colour
 * along LUMA has both chroma coordinates 0 (as in the CM code, where grey (1, 1, 1) is not quite on that axis).
 * Orthogonal and symmetric, so A⁻¹ = A. Images NHWC, C = 3.
 */
export function colorTransform(): LinearTransform {
  const h = tf.tensor2d(Float32Array.from(householder(LUMA)), [3, 3]);
  const apply = (x: tf.Tensor) =>
    tf.tidy(() => {
      if (x.shape[x.rank - 1] !== 3) {
        throw new Error(`colorization needs RGB images (NHWC, C = 3), got [${x.shape}]`);
      }
      return tf.reshape(tf.matMul(tf.reshape(x, [-1, 3]), h), x.shape); // rows xᵀ·Hᵀ = (Hx)ᵀ (H symmetric)
    });
  return { name: "color", forward: apply, inverse: apply };
}

/**
 * The patch basis of super-resolution: each channel of each `patch`×`patch` block of an NHWC image, as p²
 * values in row-major order, goes through the Householder reflection that maps e_1 to the constant vector
 * 1/p. Coordinate 0 of a block is p·(its mean); the other p² − 1 hold the detail. The result keeps the image
 * shape: block coordinates are written back to the block's pixels in row-major order (coordinate 0 at the
 * top-left pixel). Orthogonal and symmetric, so A⁻¹ = A.
 */
export function patchTransform(patch: number): LinearTransform {
  if (!Number.isInteger(patch) || patch < 2) {
    throw new Error(`super-resolution patch must be an integer >= 2, got ${patch}`);
  }
  const k = patch * patch;
  const h = tf.tensor2d(Float32Array.from(householder(new Float64Array(k).fill(1))), [k, k]);
  const apply = (x: tf.Tensor) =>
    tf.tidy(() => {
      if (x.rank !== 4) throw new Error(`super-resolution needs NHWC images, got shape [${x.shape}]`);
      const [b, hh, ww, c] = x.shape;
      if (hh % patch || ww % patch) {
        throw new Error(
          `super-resolution: the image ${hh}×${ww} is not a whole number of ${patch}×${patch} patches`,
        );
      }
      const [ph, pw] = [hh / patch, ww / patch];
      // [B, ph, p, pw, p, C] → [B, ph, pw, C, p, p] → rows of p² values
      const blocks = tf.transpose(tf.reshape(x, [b, ph, patch, pw, patch, c]), [0, 1, 3, 5, 2, 4]);
      const mapped = tf.reshape(tf.matMul(tf.reshape(blocks, [-1, k]), h), [b, ph, pw, c, patch, patch]);
      return tf.reshape(tf.transpose(mapped, [0, 1, 4, 2, 5, 3]), x.shape);
    });
  return { name: `patch${patch}`, forward: apply, inverse: apply };
}

/** Ω of colorization: per pixel, 0 on the luminance axis, 1 on both chroma axes ([h, w, 3]). */
export function colorMask(h: number, w: number): Float32Array {
  const m = new Float32Array(h * w * 3);
  for (let i = 0; i < h * w; i++) m[i * 3 + 1] = m[i * 3 + 2] = 1;
  return m;
}

/** Ω of super-resolution in `patchTransform(patch)`'s layout: 0 at each block's top-left (its mean), else 1. */
export function patchMask(h: number, w: number, c: number, patch: number): Float32Array {
  const m = new Float32Array(h * w * c).fill(1);
  for (let y = 0; y < h; y += patch) {
    for (let x = 0; x < w; x += patch) m.fill(0, (y * w + x) * c, (y * w + x + 1) * c);
  }
  return m;
}

/** The shapes of inpainting masks `inpaintMask` draws. */
export const MASK_KINDS = ["center", "bottom", "right", "checker"] as const;
export type MaskKind = typeof MASK_KINDS[number];

/**
 * An inpainting Ω for [h, w, c] images (1 = fill): "center" a centred square of half the side, "bottom" /
 * "right" that half of the image, "checker" every other 8×8 block.
 */
export function inpaintMask(kind: MaskKind, h: number, w: number, c: number): Float32Array {
  const hole = {
    center: (y: number, x: number) => y >= h / 4 && y < (3 * h) / 4 && x >= w / 4 && x < (3 * w) / 4,
    bottom: (y: number) => y >= h / 2,
    right: (_y: number, x: number) => x >= w / 2,
    checker: (y: number, x: number) => ((y >> 3) + (x >> 3)) % 2 === 1,
  }[kind];
  if (!hole) throw new Error(`unknown inpainting mask "${kind}": use one of ${MASK_KINDS.join(", ")}`);
  const m = new Float32Array(h * w * c);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) if (hole(y, x)) m.fill(1, (y * w + x) * c, (y * w + x + 1) * c);
  }
  return m;
}

/**
 * The kit's default times of Algorithm 4 (`deno task edit --ts`): five levels from σ_max down to 0.5, roughly
 * evenly spaced in ln σ. The CM code passes its own per model.
 */
export const DEFAULT_EDIT_TS = [80, 16, 4, 1.5, 0.5];

export interface EditOptions {
  /** ε of √(t_n² − ε²): the model's σ_min. */
  sigmaMin?: Sigma;
  /** Clip f_θ's output to [lo, hi] before each projection (images: [−1, 1], as the CM code does). */
  clip?: [number, number];
  /** Called after each step n = 0 … N−1 with x after the projection, the σ and f_θ's raw output. */
  callback?: (info: { x: tf.Tensor; i: number; sigma: Sigma; denoised: tf.Tensor }) => void;
}

/** Refuses times that do not descend from above ε, and masks whose shape is not the samples' or not 0/1. */
function checkEditInputs(y: tf.Tensor, mask: ArrayLike<number>, ts: Sigma[], sigmaMin: Sigma): void {
  if (ts.length === 0) throw new Error("editing needs at least one time t_1");
  for (let i = 0; i < ts.length; i++) {
    if (!(ts[i] > sigmaMin) || (i > 0 && !(ts[i] < ts[i - 1]))) {
      throw new Error(
        `editing times must decrease strictly and stay above ε = σ_min = ${sigmaMin}: got [${ts}] ` +
          `(e.g. --ts 80,20,5)`,
      );
    }
  }
  const per = y.size / y.shape[0];
  if (mask.length !== per && mask.length !== y.size) {
    throw new Error(
      `the mask has ${mask.length} values but a sample of shape [${y.shape.slice(1)}] has ${per}: ` +
        `give one mask per sample shape (or one per sample, ${y.size} values)`,
    );
  }
  for (let i = 0; i < mask.length; i++) {
    if (mask[i] !== 0 && mask[i] !== 1) {
      throw new Error(`the mask must hold only 0 (keep) and 1 (generate), found ${mask[i]} at index ${i}`);
    }
  }
}

/**
 * CM Algorithm 4 (zero-shot image editing): the edit of references `y` [B, …] that keeps the coordinates of
 * Ay where Ω = 0 and generates those where Ω = 1, with f over the times `ts` (descending, each > ε).
 * `mask` is Ω in A's coordinates, for one sample (broadcast over the batch) or for each.
 */
export function editAlgorithm4(
  f: ConsistencyFn,
  y: tf.Tensor,
  transform: LinearTransform,
  mask: ArrayLike<number>,
  ts: Sigma[],
  rng: Rng,
  opts: EditOptions = {},
): tf.Tensor {
  const sigmaMin = opts.sigmaMin ?? SIGMA_MIN;
  checkEditInputs(y, mask, ts, sigmaMin);
  const b = y.shape[0];
  const omega = tf.tidy(() => {
    const m = tf.tensor(Float32Array.from(mask), mask.length === y.size ? y.shape : [1, ...y.shape.slice(1)]);
    return tf.cast(tf.broadcastTo(m, y.shape), "bool");
  });
  const ay = tf.tidy(() => tf.where(omega, tf.zerosLike(y), transform.forward(y))); // (Ay)⊙(1−Ω) + 0⊙Ω
  // x ← A⁻¹[(Ay)⊙(1−Ω) + (Ax)⊙Ω], by selection so that nothing of the generated part of Ay can leak in
  const project = (x: tf.Tensor) =>
    tf.tidy(() => transform.inverse(tf.where(omega, transform.forward(x), ay)));
  const perSample = (t: Sigma) => new Float64Array(b).fill(t);
  let x: tf.Tensor | undefined;
  try {
    for (const [i, t] of ts.entries()) {
      const prev = x;
      const denoised = tf.tidy(() => {
        const z = tf.randomNormal(y.shape, 0, 1, "float32", rng.seed());
        const noisy = prev === undefined
          ? tf.add(transform.inverse(ay), tf.mul(z, t)) // x ← y + t_1·z, y with the generated part zeroed
          : tf.add(prev, tf.mul(z, Math.sqrt(t * t - sigmaMin * sigmaMin)));
        const out = f(noisy, perSample(t));
        return opts.clip ? tf.clipByValue(out, opts.clip[0], opts.clip[1]) : out;
      });
      x = project(denoised);
      prev?.dispose();
      opts.callback?.({ x, i, sigma: t, denoised });
      denoised.dispose();
    }
  } finally {
    omega.dispose();
    ay.dispose();
  }
  return x!;
}

/** CM Algorithm 4 with A = I: fills the pixels of `y` where `mask` (Ω, [H, W, C] or [B, H, W, C]) is 1. */
export function inpaint(
  f: ConsistencyFn,
  y: tf.Tensor,
  mask: ArrayLike<number>,
  ts: Sigma[],
  rng: Rng,
  opts: EditOptions = {},
): tf.Tensor {
  return editAlgorithm4(f, y, identityTransform(), mask, ts, rng, opts);
}

/** CM Algorithm 4 with the colour basis: new colours for RGB images `y` [B, H, W, 3] of the same luminance. */
export function colorize(
  f: ConsistencyFn,
  y: tf.Tensor,
  ts: Sigma[],
  rng: Rng,
  opts: EditOptions = {},
): tf.Tensor {
  if (y.rank !== 4 || y.shape[3] !== 3) {
    throw new Error(`colorization needs RGB images (NHWC, C = 3), got shape [${y.shape}]`);
  }
  return editAlgorithm4(f, y, colorTransform(), colorMask(y.shape[1]!, y.shape[2]!), ts, rng, opts);
}

/**
 * CM Algorithm 4 with the patch basis: images [B, H, W, C] with the `patch`×`patch` block means of `y` and new
 * detail (only the block means of `y` are read: a low-resolution image enters as `upsampleNearest` of it).
 */
export function superres(
  f: ConsistencyFn,
  y: tf.Tensor,
  patch: number,
  ts: Sigma[],
  rng: Rng,
  opts: EditOptions = {},
): tf.Tensor {
  const [, h, w, c] = y.shape;
  return editAlgorithm4(f, y, patchTransform(patch), patchMask(h!, w!, c!, patch), ts, rng, opts);
}

/** Each `patch`×`patch` block replaced by its mean (per channel): the low-resolution input of `superres`. */
export function blockMeans(y: tf.Tensor, patch: number): tf.Tensor {
  return tf.tidy(() => {
    const [b, h, w, c] = y.shape;
    const means = tf.mean(tf.reshape(y, [b, h! / patch, patch, w! / patch, patch, c!]), [2, 4], true);
    return tf.reshape(tf.tile(means, [1, 1, patch, 1, patch, 1]), y.shape);
  });
}

/**
 * Spherical interpolation between noises z0 and z1 (per sample, over all its values) at fraction alpha:
 * sin((1−α)θ)/sin θ · z0 + sin(αθ)/sin θ · z1, θ the angle between them (linear when θ ≈ 0).
 */
export function slerp(z0: tf.Tensor, z1: tf.Tensor, alpha: number): tf.Tensor {
  if (z0.shape.join() !== z1.shape.join()) {
    throw new Error(`slerp: shapes [${z0.shape}] and [${z1.shape}] differ`);
  }
  if (!(alpha >= 0 && alpha <= 1)) throw new Error(`slerp: alpha must be in [0, 1], got ${alpha}`);
  return tf.tidy(() => {
    const b = z0.shape[0];
    const [a, c] = [tf.reshape(z0, [b, -1]), tf.reshape(z1, [b, -1])];
    const cos = tf.clipByValue(
      tf.div(tf.sum(tf.mul(a, c), 1, true), tf.mul(tf.norm(a, 2, 1, true), tf.norm(c, 2, 1, true))),
      -1,
      1,
    );
    const theta = tf.acos(cos);
    const sin = tf.sin(theta);
    const small = tf.less(sin, 1e-6);
    const w0 = tf.where(small, tf.fill(sin.shape, 1 - alpha), tf.div(tf.sin(tf.mul(theta, 1 - alpha)), sin));
    const w1 = tf.where(small, tf.fill(sin.shape, alpha), tf.div(tf.sin(tf.mul(theta, alpha)), sin));
    return tf.reshape(tf.add(tf.mul(a, w0), tf.mul(c, w1)), z0.shape);
  });
}

/**
 * Interpolation between two noises (CM paper, Sec. 6): for each pair b of unit noises z0[b], z1[b] and each
 * alpha, the one-step sample f(σ_max·slerp(z0, z1, alpha), σ_max). Returns [B·alphas.length, …], pair-major
 * (row b of a grid holds pair b's path).
 */
export function interpolate(
  f: ConsistencyFn,
  z0: tf.Tensor,
  z1: tf.Tensor,
  alphas: number[],
  sigmaMax: Sigma = SIGMA_MAX,
): tf.Tensor {
  if (!alphas.length) throw new Error("interpolate needs at least one alpha");
  return tf.tidy(() => {
    const b = z0.shape[0];
    const paths = alphas.map((a) => tf.expandDims(slerp(z0, z1, a), 1)); // [B, 1, …]
    const noise = tf.reshape(tf.concat(paths, 1), [b * alphas.length, ...z0.shape.slice(1)]);
    return f(tf.mul(noise, sigmaMax), new Float64Array(b * alphas.length).fill(sigmaMax));
  });
}

/**
 * A grid of image rows (NHWC float32 in [−1, 1], each [n, H, W, C] with the same n): row r's images side by
 * side, one panel per row of the grid; e.g. [references, inputs, edits]. Transposed with `columns: true`
 * (each array a column).
 */
export function editGrid(
  panels: Float32Array[],
  shape: readonly number[],
  columns = false,
  pad = 2,
): RawImage {
  const [h, w, c] = shape;
  const per = h * w * c;
  const n = panels[0].length / per;
  if (!panels.every((p) => p.length === n * per)) {
    throw new Error("editGrid: every panel needs the same number of images");
  }
  const order: Float32Array[] = [];
  if (columns) {
    for (let i = 0; i < n; i++) for (const p of panels) order.push(p.subarray(i * per, (i + 1) * per));
  } else for (const p of panels) for (let i = 0; i < n; i++) order.push(p.subarray(i * per, (i + 1) * per));
  const all = new Float32Array(order.length * per);
  order.forEach((img, i) => all.set(img, i * per));
  return imageGrid(quantize(all), order.length, h, w, c, columns ? panels.length : n, pad);
}
