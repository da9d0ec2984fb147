// deno task backend [--backend NAME]: which TF.js backend the kit would use here, why, and how fast it runs
// a conv2d forward and forward+gradient (each gradient costs one conv's FLOPs) at a training-like shape.
import * as tf from "@tensorflow/tfjs";
import { initBackend } from "../lib/backend.ts";
import { BACKEND_FLAG, parseTaskFlags } from "../lib/cli.ts";

parseTaskFlags({
  usage: "deno task backend [--backend NAME]",
  flags: [BACKEND_FLAG],
}); // initBackend reads --backend itself

const choice = await initBackend();
for (const p of choice.probes) console.log(`  ${p.available ? "✓" : "✗"} ${p.name.padEnd(10)} ${p.detail}`);

const [b, h, c] = [8, 32, 64];
const x = tf.randomNormal([b, h, h, c]) as tf.Tensor4D;
const w = tf.randomNormal([3, 3, c, c]) as tf.Tensor4D;
const flop = 2 * b * h * h * c * c * 9; // multiply-adds ×2 of one 3×3 conv
async function time(name: string, convs: number, f: () => tf.Tensor, reps = 5): Promise<void> {
  await f().data(); // warm-up (kernel compilation, allocation)
  const t0 = performance.now();
  for (let i = 0; i < reps; i++) {
    const out = f();
    await out.data();
    out.dispose();
  }
  const sec = (performance.now() - t0) / 1000 / reps;
  console.log(
    `${name.padEnd(34)} ${(sec * 1000).toFixed(1).padStart(8)} ms   ${
      (convs * flop / sec / 1e9).toFixed(2)
    } GFLOP/s`,
  );
}
console.log(`\n${choice.name}: conv2d [${b},${h},${h},${c}] × [3,3,${c},${c}], same padding`);
await time("forward", 1, () => tf.conv2d(x, w, 1, "same"));
const dy = tf.randomNormal([b, h, h, c]) as tf.Tensor4D;
await time(
  "forward + filter gradient",
  2,
  () => tf.grad((ww: tf.Tensor) => tf.sum(tf.mul(tf.conv2d(x, ww as tf.Tensor4D, 1, "same"), dy)))(w),
);
await time(
  "forward + input gradient",
  2,
  () => tf.grad((xx: tf.Tensor) => tf.sum(tf.mul(tf.conv2d(xx as tf.Tensor4D, w, 1, "same"), dy)))(x),
);
