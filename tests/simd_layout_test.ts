// The SIMD128 layout kernels (lib/simd/layout.wat) against the JavaScript loops they replace, bit for bit, and
// the conv gradients that run through them on wasm against cpu's own kernels and finite differences. The
// shapes exercise every edge of the 4×4 blocks: Ci, Co and n = B·OH·OW not multiples of 4, more than one tile
// of 64 rows, zero columns from "same" and explicit padding, strides 1 and 2 (also unequal), 1×1 and 3×3
// filters, batches of 1 and 3.
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import "@tensorflow/tfjs-backend-wasm";
import { assertClose } from "../lib/testing.ts";
import { gradCheck, on, randn } from "./backend_helpers.ts";
import { flipFilterSimd, im2colTransposedSimd, type Im2colWindows } from "../lib/simd/layout.ts";
import {
  fastPaths,
  flipFilterInto,
  im2colTransposed,
  registerWasmTrainingKernels,
} from "../lib/wasm_kernels.ts";

registerWasmTrainingKernels();

type Pad = "same" | "valid" | tf.backend_util.ExplicitPadding;

interface ConvCase {
  x: [number, number, number, number];
  k: number;
  co: number;
  s: number | [number, number];
  pad: Pad;
}

const convCases: ConvCase[] = [
  { x: [1, 6, 5, 3], k: 3, co: 4, s: 1, pad: "same" }, // Ci = 3: no whole block along the channels
  { x: [3, 7, 9, 5], k: 3, co: 6, s: 2, pad: "valid" }, // batch 3, Ci = 5, n = 36
  { x: [3, 9, 11, 8], k: 3, co: 5, s: 2, pad: "same" }, // n = 90: a tile of 64, one of 24, 2 columns alone
  { x: [1, 10, 13, 6], k: 3, co: 7, s: 1, pad: [[0, 0], [2, 1], [0, 3], [0, 0]] }, // n = 154
  { x: [2, 10, 7, 4], k: 3, co: 8, s: [2, 1], pad: "same" }, // rows strided, columns not
  { x: [2, 8, 8, 12], k: 1, co: 9, s: 1, pad: "valid" }, // 1×1, every block whole
  { x: [1, 9, 9, 7], k: 1, co: 4, s: 2, pad: "same" },
  { x: [1, 16, 16, 16], k: 3, co: 16, s: 1, pad: "same" }, // the network's case: everything a multiple of 4
];

const label = (c: ConvCase) =>
  `x [${c.x}], ${c.k}×${c.k}, stride ${c.s}, ${typeof c.pad === "string" ? c.pad : `pad ${c.pad.flat()}`}`;

/** What the SIMD kernels need of TF.js's wasm backend, and what a test needs to fill and read their outputs. */
interface WasmBackend {
  makeOutput(shape: number[], dtype: "float32"): tf.TensorInfo;
  typedArrayFromHeap(t: tf.TensorInfo): Float32Array;
}

/** A fresh output on the wasm heap, filled with NaN so that anything a kernel leaves unwritten shows. */
function nanOutput(shape: number[]): [WasmBackend, tf.TensorInfo, tf.Tensor] {
  const be = tf.backend() as unknown as WasmBackend;
  const info = be.makeOutput(shape, "float32");
  be.typedArrayFromHeap(info).fill(NaN);
  return [be, info, tf.engine().makeTensorFromTensorInfo(info)];
}

function assertBitEqual(actual: Float32Array, expected: Float32Array, what: string) {
  assert.equal(actual.length, expected.length, `${what}: length`);
  const [a, e] = [
    new Uint32Array(actual.buffer, actual.byteOffset, actual.length),
    new Uint32Array(expected.buffer),
  ];
  const i = a.findIndex((v, j) => v !== e[j]);
  assert.ok(i < 0, `${what}: element ${i} is ${actual[i]}, the JavaScript loop's ${expected[i]}`);
}

function windows(c: ConvCase): Im2colWindows {
  const info = tf.backend_util.computeConv2DInfo(
    c.x,
    [c.k, c.k, c.x[3], c.co],
    c.s,
    1,
    c.pad,
    undefined,
    false,
    "channelsLast",
  );
  const { strideHeight: sh, strideWidth: sw, outHeight: oh, outWidth: ow } = info;
  return { kh: c.k, kw: c.k, sh, sw, top: info.padInfo.top, left: info.padInfo.left, oh, ow };
}

for (const c of convCases) {
  Deno.test(`IctIm2colTransposed by SIMD128 = im2colTransposed (JavaScript) bit for bit: ${label(c)}`, async () => {
    assert.ok(await tf.setBackend("wasm"));
    const a = windows(c);
    const x = randn(c.x, 1);
    const shape = [a.kh * a.kw * c.x[3], c.x[0] * a.oh * a.ow];
    const [be, info, out] = nanOutput(shape);
    try {
      assert.ok(im2colTransposedSimd(be, x, a, info), "the SIMD path did not run");
      const expected = new Float32Array(shape[0] * shape[1]);
      im2colTransposed(x.dataSync() as Float32Array, c.x, a, expected);
      assertBitEqual(out.dataSync() as Float32Array, expected, "Pᵀ");
    } finally {
      tf.dispose([x, out]);
    }
  });
}

const filterShapes: [number, number, number, number][] = [
  [3, 3, 5, 3], // Ci and Co below 4: element by element
  [1, 1, 7, 9],
  [3, 2, 4, 5], // KH ≠ KW: the taps reversed in the right order
  [3, 3, 67, 70], // Ci = 67: a tile of 64 rows, then 3 alone; Co = 70: 17 blocks, then 2 alone
  [2, 3, 130, 6], // two tiles of 64 rows
  [3, 3, 16, 16],
];

for (const shape of filterShapes) {
  Deno.test(`IctFlipFilter by SIMD128 = flipFilterInto (JavaScript) bit for bit: [${shape}]`, async () => {
    assert.ok(await tf.setBackend("wasm"));
    const w = randn(shape, 2);
    const [be, info, out] = nanOutput([shape[0], shape[1], shape[3], shape[2]]);
    try {
      assert.ok(flipFilterSimd(be, w, info), "the SIMD path did not run");
      const expected = new Float32Array(w.size);
      flipFilterInto(w.dataSync() as Float32Array, shape, expected);
      assertBitEqual(out.dataSync() as Float32Array, expected, "flipped filter");
    } finally {
      tf.dispose([w, out]);
    }
  });
}

/** Both gradients of Σ conv2d(x, w)·r. */
const convGrads = (c: ConvCase) => () => {
  const [x, w] = [randn(c.x, 3), randn([c.k, c.k, c.x[3], c.co], 4)];
  const f = (a: tf.Tensor, b: tf.Tensor) => tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, c.s, c.pad);
  const r = randn(f(x, w).shape, 5);
  return tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(f(a, b), r)))([x, w]);
};

for (const c of convCases) {
  Deno.test(`wasm conv2d gradients through the SIMD128 layout kernels = cpu's own kernels: ${label(c)}`, async () => {
    const cpu = await on("cpu", convGrads(c));
    const simd = await on("wasm", convGrads(c));
    await assertClose(simd[0], cpu[0], { atol: 1e-4, rtol: 1e-4, message: "dL/dx" });
    await assertClose(simd[1], cpu[1], { atol: 1e-4, rtol: 1e-4, message: "dL/dw" });
    // The kernels only move data: with the JavaScript loops the gradients are the same bits.
    fastPaths.simd = false;
    try {
      const js = await on("wasm", convGrads(c));
      for (let i = 0; i < 2; i++) assertBitEqual(simd[i], js[i], i === 0 ? "dL/dx" : "dL/dw");
    } finally {
      fastPaths.simd = true;
    }
  });
}

Deno.test("wasm conv2d gradients through the SIMD128 layout kernels = finite differences (3×3, stride 2, explicit padding)", async () => {
  // Ci, Co and n = 2·5·4 beyond one block each.
  const pad: Pad = [[0, 0], [1, 2], [2, 1], [0, 0]];
  const f = (a: tf.Tensor, b: tf.Tensor) => tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, 2, pad);
  await gradCheck("conv2d, stride 2", f, [[2, 9, 7, 9], [3, 3, 9, 6]], 6);
});
