// FIR resampling by 2 on wasm with the SIMD kernel (lib/simd/fir.wat, C a multiple of 4): against cpu's
// pad/slice/reshape ops with gradients, central finite differences, and the JavaScript loop it replaces
// (fastPaths.simd off; float32 sums there round once per store from float64, so equal to ~1 ulp).
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import "@tensorflow/tfjs-backend-wasm";
import { assertClose } from "../lib/testing.ts";
import { firDownsample, firUpsample } from "../lib/nn/layers.ts";
import { fastPaths, firResample, registerWasmTrainingKernels } from "../lib/wasm_kernels.ts";
import { firResampleSimd } from "../lib/simd/fir.ts";
import { on, randn } from "./backend_helpers.ts";

registerWasmTrainingKernels();

// NCSN++'s [1,3,3,1] and ADM's [1,1]; odd sizes (edge taps off the image), pad 0 (the fused down), batches.
const CASES = [
  { x: [2, 6, 5, 4], filter: [1, 3, 3, 1], dir: "down" as const },
  { x: [1, 7, 9, 8], filter: [1, 3, 3, 1], dir: "down" as const },
  { x: [2, 8, 6, 12], filter: [1, 3, 3, 1], dir: "down" as const, pad: 0 },
  { x: [3, 4, 6, 4], filter: [1, 1], dir: "down" as const },
  { x: [2, 3, 5, 8], filter: [1, 3, 3, 1], dir: "up" as const },
  { x: [1, 2, 3, 4], filter: [1, 1], dir: "up" as const },
];

for (const c of CASES) {
  const label = `${c.dir} ${c.filter}, x [${c.x}]${c.pad === 0 ? ", pad 0" : ""}`;
  const f = (x: tf.Tensor) =>
    c.dir === "down"
      ? firDownsample(x as tf.Tensor4D, c.filter, c.pad)
      : firUpsample(x as tf.Tensor4D, c.filter);
  const run = () => {
    const x = randn(c.x, 60);
    const y = f(x);
    const r = randn(y.shape, 61);
    return [y, tf.grad((a: tf.Tensor) => tf.sum(tf.mul(f(a), r)))(x)];
  };

  Deno.test(`SIMD FIR ${label} = cpu's ops and the JavaScript loop, with gradient`, async () => {
    const cpu = await on("cpu", run);
    const simd = await on("wasm", run);
    fastPaths.simd = false;
    const loop = await on("wasm", run).finally(() => fastPaths.simd = true);
    for (let i = 0; i < 2; i++) {
      await assertClose(simd[i], cpu[i], { atol: 1e-5, rtol: 1e-5 });
      await assertClose(simd[i], loop[i], { atol: 1e-6, rtol: 1e-6 });
    }
  });

  Deno.test(`SIMD FIR ${label}: gradient = finite differences`, async () => {
    assert.ok(await tf.setBackend("wasm"));
    const [ad, fd] = tf.tidy(() => {
      const x = randn(c.x, 60);
      const r = randn(f(x).shape, 61);
      const dir = randn(c.x, 62);
      const loss = (a: tf.Tensor) => tf.sum(tf.mul(f(a), r));
      const along = (eps: number) =>
        tf.sub(loss(tf.add(x, tf.mul(dir, eps))), loss(tf.sub(x, tf.mul(dir, eps)))).div(2 * eps);
      const fd = tf.div(tf.sub(tf.mul(along(1e-2), 4), along(2e-2)), 3);
      return [tf.sum(tf.mul(tf.grad(loss)(x), dir)).dataSync()[0], fd.dataSync()[0]];
    });
    assert.ok(
      Math.abs(ad - fd) <= 2e-3 * Math.max(1, Math.abs(fd)),
      `autodiff ${ad} vs finite difference ${fd}`,
    );
  });
}

Deno.test("the SIMD FIR kernel runs where C is a multiple of 4 (= the JavaScript loop to 1e-6), not elsewhere", async () => {
  assert.ok(await tf.setBackend("wasm"));
  const taps = [0.125, 0.375, 0.375, 0.125];
  for (const [c, applies] of [[8, true], [6, false]] as const) {
    const hi = randn([2, 7, 5, c], 3);
    const lo = tf.zeros([2, 3, 2, c]); // ⌊(7 + 2 − 4)/2⌋ + 1, ⌊(5 + 2 − 4)/2⌋ + 1
    assert.equal(
      firResampleSimd(tf.backend(), hi as never, lo as never, taps, 1, false),
      applies,
      `C = ${c}`,
    );
    if (applies) {
      const want = new Float32Array(lo.size);
      firResample(hi.dataSync() as Float32Array, want, hi.shape, { taps, pad: 1, size: [7, 5] }, false);
      await assertClose(lo, want, { atol: 1e-6, rtol: 1e-6 });
    }
    tf.dispose([hi, lo]);
  }
});
