// wasm's Sum over every axis but the last (lib/simd/reduce.wat's column sum) against cpu's Sum, with the other
// reductions still on wasm's own kernel, and the bias gradient of a fused conv through it.
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import "@tensorflow/tfjs-backend-wasm";
import { assertClose } from "../lib/testing.ts";
import { fastPaths, registerWasmTrainingKernels } from "../lib/wasm_kernels.ts";
import { on, randn } from "./backend_helpers.ts";

registerWasmTrainingKernels();

const CASES: { shape: number[]; axis: number | number[] }[] = [
  { shape: [1, 32, 32, 256], axis: [0, 1, 2] }, // a conv bias gradient
  { shape: [3, 5, 7], axis: [1, 0] }, // C = 7: four lanes and three single channels
  { shape: [4, 6], axis: 0 },
  { shape: [2, 3, 1, 3], axis: [-2, 0, 1] },
  { shape: [5, 4, 8], axis: -1 }, // the last axis: the own kernel
  { shape: [5, 4, 8], axis: [0, 1, 2] }, // every axis: the own kernel
  { shape: [5, 4, 8], axis: 1 }, // a middle axis only: the own kernel
];

for (const c of CASES) {
  Deno.test(`wasm Sum over [${c.axis}] of [${c.shape}] = cpu's (keepDims or not)`, async () => {
    for (const keepDims of [false, true]) {
      const run = () => [tf.sum(tf.mul(randn(c.shape, 3), 10), c.axis, keepDims)];
      const [cpu, wasm] = [await on("cpu", run), await on("wasm", run)];
      const shape = tf.tidy(() => tf.sum(tf.zeros(c.shape), c.axis, keepDims).shape);
      assert.ok(await tf.setBackend("wasm"));
      assert.deepEqual(tf.tidy(() => tf.sum(tf.zeros(c.shape), c.axis, keepDims).shape), shape);
      // Float32 sums of up to 1024 terms of size ~10 in other orders: agree to ~1e-3 absolute.
      await assertClose(wasm[0], cpu[0], { atol: 2e-3, rtol: 1e-5 });
    }
  });
}

Deno.test("the column sum adds each channel in row order in float32: bit for bit the wasm own kernel's sums", async () => {
  const run = () => [tf.sum(randn([7, 9, 12], 5), [0, 1])];
  const simd = await on("wasm", run);
  fastPaths.simd = false;
  const own = await on("wasm", run).finally(() => fastPaths.simd = true);
  assert.deepEqual(simd[0], own[0]);
});

Deno.test("a fused conv's bias gradient on wasm (through the column sum) = cpu's", async () => {
  const run = () => {
    const [x, w, b] = [randn([2, 6, 5, 4], 1), randn([3, 3, 4, 8], 2), randn([8], 3)];
    const r = randn([2, 6, 5, 8], 4);
    const f = (bias: tf.Tensor) =>
      tf.sum(
        tf.mul(
          tf.fused.conv2d({ x: x as tf.Tensor4D, filter: w as tf.Tensor4D, strides: 1, pad: "same", bias }),
          r,
        ),
      );
    return [tf.grad(f)(b)];
  };
  await assertClose((await on("wasm", run))[0], (await on("cpu", run))[0], { atol: 1e-4, rtol: 1e-5 });
});
