// Run by tests/simd_optimizer_test.ts as a subprocess (its wasm heap grows past 2 GiB and stays so): every SIMD
// kernel on tensors placed above 2 GiB of the heap, where byte offsets pass i32's sign bit, against the same
// computation with fastPaths.simd, inputGemm and simdMatMul off. Prints one JSON line {high, bad}.
import * as tf from "@tensorflow/tfjs";
import { initBackend } from "../lib/backend.ts";
import {
  emaOf,
  fastPaths,
  flipFilter,
  fusedAdamUpdate,
  fusedGroupNorm,
  sumOfSquaresOf,
} from "../lib/wasm_kernels.ts";
import { firDownsample } from "../lib/nn/layers.ts";
import { dropoutMask } from "../lib/nn/dropout.ts";
import { heapOffset } from "../lib/simd/heap.ts";
import { RADAM_STEP } from "./backend_helpers.ts";
await initBackend({ backend: "wasm", quiet: true });
const filler = tf.zeros([600 * 1024 * 1024]); // 2.4 GB
const be = tf.backend();
const x = tf.randomNormal([2, 8, 8, 16], 0, 1, "float32", 1) as tf.Tensor4D;
const high = heapOffset(be, x as never) > 2 ** 31;
const w = tf.randomNormal([3, 3, 16, 8], 0, 1, "float32", 2) as tf.Tensor4D;
const gamma = tf.randomNormal([16], 1, 0.1, "float32", 3), beta = tf.randomNormal([16], 0, 0.1, "float32", 4);
const cases: [string, () => tf.Tensor[]][] = [
  ["groupnorm+grad", () => {
    const r = tf.randomNormal([2, 8, 8, 16], 0, 1, "float32", 5);
    return [
      fusedGroupNorm(x, gamma, beta, { groups: 4, eps: 1e-5, silu: true }),
      tf.grad((a: tf.Tensor) =>
        tf.sum(tf.mul(fusedGroupNorm(a as tf.Tensor4D, gamma, beta, { groups: 4, eps: 1e-5, silu: true }), r))
      )(x),
    ];
  }],
  ["conv grads (im2col, flip, col2im)", () => {
    const r = tf.randomNormal([2, 8, 8, 8], 0, 1, "float32", 6);
    return tf.grads((a: tf.Tensor, b: tf.Tensor) =>
      tf.sum(tf.mul(tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, 1, "same"), r))
    )([x, w]);
  }],
  ["conv grads 1x1 big ci (col2im path)", () => {
    const xx = tf.randomNormal([1, 2, 2, 64], 0, 1, "float32", 7) as tf.Tensor4D;
    const ww = tf.randomNormal([3, 3, 64, 8], 0, 1, "float32", 8) as tf.Tensor4D;
    const r = tf.randomNormal([1, 2, 2, 8], 0, 1, "float32", 9);
    return tf.grads((a: tf.Tensor, b: tf.Tensor) =>
      tf.sum(tf.mul(tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, 1, "same"), r))
    )([xx, ww]);
  }],
  ["fir", () => [firDownsample(x, [1, 3, 3, 1])]],
  ["sum", () => [tf.sum(x, [0, 1, 2])]],
  ["adam", () => fusedAdamUpdate(x, tf.mul(x, 0.5), tf.square(x), tf.mul(x, -1), RADAM_STEP)],
  ["ema/sumsq", () => [emaOf(x, tf.mul(x, 2), 0.9), sumOfSquaresOf([x, w])]],
  [
    "matmul",
    () => [
      tf.matMul(
        tf.randomNormal([3, 37], 0, 1, "float32", 10),
        tf.randomNormal([37, 21], 0, 1, "float32", 11),
      ),
    ],
  ],
  ["dropout", () => [dropoutMask([2, 100], 0.3, 7, 1, 0)]],
  ["flip", () => [flipFilter(w)]],
];
const bad: string[] = [];
for (const [name, f] of cases) {
  const on = tf.tidy(f).map((t) => t.dataSync().slice());
  fastPaths.simd = false;
  fastPaths.inputGemm = false;
  fastPaths.simdMatMul = false;
  const off = tf.tidy(f).map((t) => t.dataSync().slice());
  fastPaths.simd = true;
  fastPaths.inputGemm = true;
  fastPaths.simdMatMul = true;
  let m = 0;
  on.forEach((a, i) =>
    a.forEach((v, j) => m = Math.max(m, Math.abs(v - off[i][j]) / (1 + Math.abs(off[i][j]))))
  );
  if (!(m < 1e-4)) bad.push(`${name}: ${m}`);
}
filler.dispose();
console.log(JSON.stringify({ high, bad }));
