// The stride-1 conv input gradient as W·dyᵀ and a col2im (lib/simd/col2im.ts) on wasm: the SIMD col2im
// against its JavaScript loop bit for bit, and the gradient against cpu's own Conv2DBackpropInput and central
// finite differences, on shapes where the path applies (8·N ≤ KH·KW·Ci, N = B·OH·OW).
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import "@tensorflow/tfjs-backend-wasm";
import { assertClose } from "../lib/testing.ts";
import { col2im, type Col2imAttrs, inputGradientByGemmApplies } from "../lib/simd/col2im.ts";
import { fastPaths, registerWasmTrainingKernels } from "../lib/wasm_kernels.ts";
import { gradCheck, on, randn } from "./backend_helpers.ts";

registerWasmTrainingKernels();

// Geometries: every ow mod 4 (the four-position blocks and the rest), padding on either side or none, taps
// whose shifted columns fall off the left or the right, 1×1 and 3×1 filters, batches of 1 and 2.
const GEOMETRIES: Col2imAttrs[] = [
  { b: 1, h: 5, w: 7, ci: 8, oh: 5, ow: 7, kh: 3, kw: 3, top: 1, left: 1 }, // "same"
  { b: 2, h: 6, w: 9, ci: 4, oh: 4, ow: 7, kh: 3, kw: 3, top: 0, left: 0 }, // "valid"
  { b: 1, h: 4, w: 6, ci: 12, oh: 6, ow: 5, kh: 3, kw: 3, top: 2, left: 0 }, // explicit, uneven
  { b: 2, h: 3, w: 10, ci: 4, oh: 3, ow: 10, kh: 1, kw: 1, top: 0, left: 0 },
  { b: 1, h: 6, w: 8, ci: 8, oh: 4, ow: 9, kh: 3, kw: 1, top: 0, left: 1 },
  { b: 1, h: 8, w: 8, ci: 4, oh: 8, ow: 8, kh: 3, kw: 3, top: 1, left: 2 },
];

Deno.test("SIMD col2im = the JavaScript loop bit for bit (edges, padding, ow mod 4, batches)", async () => {
  assert.ok(await tf.setBackend("wasm"));
  for (const a of GEOMETRIES) {
    const n = a.b * a.oh * a.ow;
    const cols = randn([a.kh * a.kw * a.ci, n], 7);
    const want = new Float32Array(a.b * a.h * a.w * a.ci);
    col2im(cols.dataSync() as Float32Array, a, want);
    const got = tf.engine().runKernel("IctCol2im", { cols }, a as unknown as tf.NamedAttrMap) as tf.Tensor;
    assert.deepEqual(got.shape, [a.b, a.h, a.w, a.ci]);
    const values = got.dataSync() as Float32Array;
    const at = values.findIndex((x, i) => !Object.is(x, want[i]));
    assert.equal(at, -1, `${JSON.stringify(a)}: first difference at ${at}`);
    tf.dispose([cols, got]);
  }
});

// Shapes where 8·N ≤ KH·KW·Ci (N = B·OH·OW), so the conv's input gradient takes the GEMM path (Ci = 6: the
// JavaScript col2im; the others SIMD).
const CASES: {
  x: [number, number, number, number];
  k: [number, number];
  co: number;
  pad: tf.backend_util.ExplicitPadding | "same" | "valid";
}[] = [
  { x: [1, 3, 5, 16], k: [3, 3], co: 4, pad: "same" },
  { x: [2, 3, 3, 8], k: [3, 3], co: 3, pad: "valid" },
  { x: [1, 4, 6, 20], k: [3, 3], co: 5, pad: [[0, 0], [2, 0], [0, 1], [0, 0]] },
  { x: [1, 2, 2, 6], k: [3, 3], co: 4, pad: "same" },
  { x: [2, 2, 3, 32], k: [3, 1], co: 8, pad: "same" },
];

for (const c of CASES) {
  Deno.test(`conv2d input gradient by W·dyᵀ + col2im = cpu's own kernel and finite differences: x [${c.x}], ${c.k.join("×")}, ${JSON.stringify(c.pad)}`, async () => {
    const w = [...c.k, c.x[3], c.co];
    const f = (x: tf.Tensor, fl: tf.Tensor) => tf.conv2d(x as tf.Tensor4D, fl as tf.Tensor4D, 1, c.pad);
    const run = () => {
      const [x, fl] = [randn(c.x, 4), randn(w, 5)];
      const y = f(x, fl);
      const r = randn(y.shape, 6);
      if (tf.getBackend() === "wasm") {
        const n = y.shape[0] * y.shape[1] * y.shape[2];
        assert.ok(inputGradientByGemmApplies(n, w, [1, 1]), "the GEMM path does not apply to this case");
      }
      return [tf.grad((a: tf.Tensor) => tf.sum(tf.mul(f(a, fl), r)))(x)];
    };
    const cpu = await on("cpu", run);
    const wasm = await on("wasm", run);
    await assertClose(wasm[0], cpu[0], { atol: 1e-4, rtol: 1e-4 });
    await gradCheck("conv2d by W·dyᵀ + col2im", f, [c.x, w], 4);
  });
}

Deno.test("the GEMM path's switch: off, the flipped-filter convolution gives the same gradient", async () => {
  const c = CASES[0];
  const run = () => {
    const [x, fl] = [randn(c.x, 4), randn([3, 3, c.x[3], c.co], 5)];
    const f = (a: tf.Tensor) => tf.conv2d(a as tf.Tensor4D, fl as tf.Tensor4D, 1, "same");
    return [tf.grad((a: tf.Tensor) => tf.sum(tf.mul(f(a), randn(f(x).shape, 6))))(x)];
  };
  const gemm = await on("wasm", run);
  fastPaths.inputGemm = false;
  try {
    const flipped = await on("wasm", run);
    await assertClose(gemm[0], flipped[0], { atol: 1e-5, rtol: 1e-5 });
  } finally {
    fastPaths.inputGemm = true;
  }
});
