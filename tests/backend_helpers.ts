// What the kernel tests share: seeded random tensors, and a function run on one backend with its outputs read
// back to the host (so results of several backends can be compared).
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { Rng } from "../lib/rng.ts";

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
