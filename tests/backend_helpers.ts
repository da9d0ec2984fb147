// What the kernel tests share: seeded random tensors, a function run on one backend with its outputs read back
// to the host (so results of several backends can be compared), and the gradient check on wasm.
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { Rng } from "../lib/rng.ts";
import type { AdamUpdateAttrs } from "../lib/wasm_kernels.ts";

/** A standard-normal tensor of `shape` from `seed` (the same values on every backend). */
export function randn(shape: number[], seed: number): tf.Tensor {
  const r = Rng.seeded(seed);
  return tf.tensor(Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => r.normal()), shape);
}

/** f on `backend` with tensors made there from the same seeds; every output read back to the host. */
export async function on(backend: string, f: () => tf.Tensor[]): Promise<Float32Array[]> {
  assert.ok(await tf.setBackend(backend), `could not switch to ${backend}`);
  const outs = tf.tidy(f);
  const data = await Promise.all(outs.map(async (t) => (await t.data()) as Float32Array));
  tf.dispose(outs);
  return data;
}

/** L = Σ g(inputs)·R: its gradient on wasm against a Richardson-extrapolated central difference along a random direction. */
export async function gradCheck(
  name: string,
  g: (...ts: tf.Tensor[]) => tf.Tensor,
  shapes: number[][],
  seed: number,
) {
  assert.ok(await tf.setBackend("wasm"));
  const [analytic, numeric] = tf.tidy(() => {
    const xs = shapes.map((s, i) => randn(s, seed + i));
    const r = randn(g(...xs).shape, seed + 100);
    const loss = (...ts: tf.Tensor[]) => tf.sum(tf.mul(g(...ts), r));
    const grads = tf.grads(loss)(xs);
    const dirs = shapes.map((s, i) => randn(s, seed + 200 + i));
    const along = (eps: number) =>
      tf.sub(
        loss(...xs.map((x, i) => tf.add(x, tf.mul(dirs[i], eps)))),
        loss(...xs.map((x, i) => tf.sub(x, tf.mul(dirs[i], eps)))),
      ).div(2 * eps);
    const fd = tf.div(tf.sub(tf.mul(along(1e-2), 4), along(2e-2)), 3);
    const ad = tf.addN(grads.map((gr, i) => tf.sum(tf.mul(gr, dirs[i]))));
    return [ad, fd];
  });
  const [a, n] = [(await analytic.data())[0], (await numeric.data())[0]];
  tf.dispose([analytic, numeric]);
  assert.ok(
    Math.abs(a - n) <= 2e-3 * Math.max(1, Math.abs(n)),
    `${name}: autodiff ${a} vs finite difference ${n}`,
  );
}

/** One rectified RAdam update with weight decay, as the optimizer kernels' attributes (the subprocess checks). */
export const RADAM_STEP: AdamUpdateAttrs = {
  beta1: 0.9,
  beta2: 0.999,
  eps: 1e-8,
  weightDecay: 0.01,
  stepSize: 1e-3,
  adaptive: true,
  adam: false,
  sqrtBc2: 0.3,
};
