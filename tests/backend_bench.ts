// deno task bench: conv2d forward and both gradients on the chosen backend at a CIFAR-like shape.
import * as tf from "@tensorflow/tfjs";
import { initBackend } from "../lib/backend.ts";

await initBackend();
const x = tf.randomNormal([8, 32, 32, 64]) as tf.Tensor4D;
const w = tf.randomNormal([3, 3, 64, 64]) as tf.Tensor4D;
const dy = tf.randomNormal([8, 32, 32, 64]) as tf.Tensor4D;
const run = async (f: () => tf.Tensor) => {
  const out = f();
  await out.data();
  out.dispose();
};
const group = `conv2d 3x3 [8,32,32,64]→64 on ${tf.getBackend()} (1.21 GFLOP each)`;
Deno.bench("forward", { group, baseline: true }, () => run(() => tf.conv2d(x, w, 1, "same")));
Deno.bench(
  "forward + filter gradient",
  { group },
  () =>
    run(() => tf.grad((ww: tf.Tensor) => tf.sum(tf.mul(tf.conv2d(x, ww as tf.Tensor4D, 1, "same"), dy)))(w)),
);
Deno.bench(
  "forward + input gradient",
  { group },
  () =>
    run(() => tf.grad((xx: tf.Tensor) => tf.sum(tf.mul(tf.conv2d(xx as tf.Tensor4D, w, 1, "same"), dy)))(x)),
);
