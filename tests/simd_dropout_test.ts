// Dropout by SIMD128 on wasm (lib/simd/dropout.ts, taken by lib/nn/dropout.ts with fastPaths.simd on): the mask
// and x·mask bit for bit against the JavaScript loop (fastPaths.simd off: hashUniformHost, GreaterEqual, Cast,
// Mul) and against cpu's tensor ops (hashUniformDevice); the rate and the scale rounded to float32 as TF.js
// rounds them; the student/teacher and micro-batch properties; the gradient with respect to x.
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import "@tensorflow/tfjs-backend-wasm";
import { Dropout, dropoutMask, hashUniform } from "../lib/nn/dropout.ts";
import { type ForwardContext, Scope } from "../lib/nn/params.ts";
import { DROPOUT, DROPOUT_MASK, registerDropout } from "../lib/simd/dropout.ts";
import { fastPaths, registerWasmTrainingKernels } from "../lib/wasm_kernels.ts";
import { randn } from "./backend_helpers.ts";

registerWasmTrainingKernels();
registerDropout();

/** f's output read back, on wasm, with the SIMD kernels on or off. */
function onWasm(simd: boolean, f: () => tf.Tensor): Float32Array {
  assert.equal(tf.getBackend(), "wasm");
  const saved = fastPaths.simd;
  fastPaths.simd = simd;
  try {
    return tf.tidy(f).dataSync() as Float32Array;
  } finally {
    fastPaths.simd = saved;
  }
}

/** The kernels f runs (wasm, SIMD on). */
async function kernelsOf(f: () => tf.Tensor): Promise<string[]> {
  const info = await tf.profile(() => f());
  tf.dispose(info.result as tf.Tensor);
  return info.kernelNames;
}

/** Index of the first element where a and b differ in bits (NaN equal to NaN, +0 not to −0), or −1. */
function firstDifference(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  return a.findIndex((v, i) => !Object.is(v, b[i]));
}

/** f's output read back, on cpu (then back to wasm). */
async function onCpu(f: () => tf.Tensor): Promise<Float32Array> {
  assert.ok(await tf.setBackend("cpu"));
  try {
    return tf.tidy(f).dataSync() as Float32Array;
  } finally {
    assert.ok(await tf.setBackend("wasm"));
  }
}

/** The mask by cpu's tensor ops (the hash as float32 tensor arithmetic, then GreaterEqual, Cast, Mul). */
function cpuMask(shape: number[], rate: number, seed: number, layer: number, offset: number) {
  return onCpu(() => {
    const u = hashUniform(shape, seed, layer, offset, "device");
    return tf.mul(tf.cast(tf.greaterEqual(u, rate), "float32"), 1 / (1 - rate));
  });
}

// Samples of d elements for every d mod 8 (the kernel's eight-element blocks and the 1 … 7 left), past the
// hash's limb boundary at 4096 and 8192; one and five samples; offsets, layers and seeds; 0.04 is a rate whose
// scale 1/(1 − rate) rounded to float32 differs from the same computed in float32 arithmetic.
const CASES: { shape: number[]; rate: number; seed: number; layer: number; offset: number }[] = [
  { shape: [1, 7], rate: 0.1, seed: 1, layer: 0, offset: 0 },
  { shape: [5, 1], rate: 0.3, seed: 2, layer: 1, offset: 3 },
  { shape: [5, 3, 3, 2], rate: 0.5, seed: 0xdeadbeef, layer: 7, offset: 1000 },
  { shape: [1, 4, 4, 5], rate: 0.3, seed: 42, layer: 123, offset: 0 },
  { shape: [5, 9], rate: 0.1, seed: 2024, layer: 2, offset: 8 },
  { shape: [2, 11, 13], rate: 0.5, seed: 7, layer: 3, offset: 5 },
  { shape: [1, 2, 2, 3], rate: 0.04, seed: 99, layer: 4, offset: 1 },
  { shape: [2, 4100], rate: 0.3, seed: 5, layer: 9, offset: 2 },
  { shape: [1, 8197], rate: 0.1, seed: 6, layer: 10, offset: 77 },
  { shape: [5, 2, 2, 2], rate: 0, seed: 8, layer: 11, offset: 0 },
];

Deno.test("SIMD dropout mask = the JavaScript loop and cpu's tensor ops, bit for bit", async () => {
  assert.ok(await tf.setBackend("wasm"));
  for (const { shape, rate, seed, layer, offset } of CASES) {
    const label = `[${shape}] rate ${rate} seed ${seed} layer ${layer} offset ${offset}`;
    const mask = () => dropoutMask(shape, rate, seed, layer, offset);
    assert.ok((await kernelsOf(mask)).includes(DROPOUT_MASK), `${label}: the SIMD kernel ran`);
    const simd = onWasm(true, mask);
    assert.equal(firstDifference(simd, onWasm(false, mask)), -1, `${label}: = the JavaScript loop`);
    assert.equal(
      firstDifference(simd, await cpuMask(shape, rate, seed, layer, offset)),
      -1,
      `${label}: = cpu`,
    );
  }
});

Deno.test("SIMD dropout: the rate and the scale rounded to float32 as GreaterEqual and Mul take them", async () => {
  assert.ok(await tf.setBackend("wasm"));
  const shape = [3, 5, 7];
  const u = hashUniform(shape, 11, 12, 13, "host").dataSync();
  const j = u.findIndex((v) => v >= 0.25 && v < 0.5); // float32 steps of 2^−25 here: half the hash's
  assert.ok(j >= 0);
  // u_j itself: kept (u ≥ rate); u_j + 2^−27: rounds to u_j in float32, kept (in float64 it would be dropped);
  // u_j + 2^−25: a float32 between two hash values, u_j dropped. Then rates near 1 (1 − 2^−30 rounds to 1).
  const rates: [number, boolean | null][] = [[u[j], true], [u[j] + 2 ** -27, true], [u[j] + 2 ** -25, false]];
  for (const rate of [0.04, 0.021, 0.9, 1 - 2 ** -30]) rates.push([rate, null]);
  for (const [rate, keep] of rates) {
    const mask = () => dropoutMask(shape, rate, 11, 12, 13);
    const simd = onWasm(true, mask);
    assert.equal(firstDifference(simd, onWasm(false, mask)), -1, `rate ${rate}: = the JavaScript loop`);
    if (keep !== null) assert.equal(simd[j] !== 0, keep, `rate ${rate}: element ${j} (u = ${u[j]}) kept?`);
  }
});

Deno.test("SIMD Dropout.apply = x·mask bit for bit (NaN, ±Inf, −0, subnormals), one kernel", async () => {
  assert.ok(await tf.setBackend("wasm"));
  const layer = new Dropout(Scope.root(), 0.3);
  for (const { shape, seed, offset } of CASES) {
    const ctx: ForwardContext = { training: true, dropoutSeed: seed, sampleOffset: offset };
    const x = randn(shape, seed);
    const values = x.dataSync().slice();
    [NaN, Infinity, -Infinity, -0, 1e-40, -1e-45].forEach((v, i) => values[(i * 5) % values.length] = v);
    const xs = tf.tensor(values, shape);
    const apply = () => layer.apply(xs, ctx);
    assert.deepEqual(await kernelsOf(apply), [DROPOUT], `[${shape}]: one kernel`);
    const want = onWasm(false, () => tf.mul(xs, dropoutMask(shape, 0.3, seed, layer.id, offset)));
    assert.equal(firstDifference(onWasm(true, apply), want), -1, `[${shape}]: = tf.mul(x, mask)`);
    assert.equal(firstDifference(onWasm(false, apply), want), -1, `[${shape}]: the path with SIMD off`);
    tf.dispose([x, xs]);
  }
});

Deno.test("SIMD Dropout: student and teacher share masks; micro-batches see the whole batch's", async () => {
  assert.ok(await tf.setBackend("wasm"));
  const scope = Scope.root();
  const [a, b] = [new Dropout(scope, 0.3), new Dropout(scope, 0.3)];
  const x = randn([8, 4, 4, 6], 3);
  const ctx: ForwardContext = { training: true, dropoutSeed: 42 };
  const student = onWasm(true, () => a.apply(x, ctx));
  assert.equal(firstDifference(onWasm(true, () => a.apply(x, ctx)), student), -1, "teacher = student");
  assert.notEqual(firstDifference(onWasm(true, () => b.apply(x, ctx)), student), -1, "another layer");
  const step = { ...ctx, dropoutSeed: 43 };
  assert.notEqual(firstDifference(onWasm(true, () => a.apply(x, step)), student), -1, "another step");
  const halves = tf.split(x, [3, 5]);
  const parts = onWasm(true, () =>
    tf.concat([
      a.apply(halves[0], { ...ctx, sampleOffset: 0 }),
      a.apply(halves[1], { ...ctx, sampleOffset: 3 }),
    ]));
  assert.equal(firstDifference(parts, student), -1, "samples 0–2 and 3–7 = the whole batch");
  tf.dispose([x, ...halves]);
});

Deno.test("SIMD Dropout: the gradient with respect to x is the mask (times dy), = cpu's", async () => {
  assert.ok(await tf.setBackend("wasm"));
  const layer = new Dropout(Scope.root(), 0.5);
  const shape = [5, 3, 3, 3];
  const ctx: ForwardContext = { training: true, dropoutSeed: 9, sampleOffset: 2 };
  const [x, dy] = [randn(shape, 1), randn(shape, 2)];
  const mask = onWasm(false, () => dropoutMask(shape, 0.5, 9, layer.id, 2));
  const ofSum = onWasm(true, () => tf.grad((a: tf.Tensor) => tf.sum(layer.apply(a, ctx)))(x));
  assert.equal(firstDifference(ofSum, mask), -1, "d Σ dropout(x) / dx = the mask");
  const vjp = () => tf.grad((a: tf.Tensor) => layer.apply(a, ctx))(x, dy);
  assert.ok((await kernelsOf(vjp)).includes(DROPOUT), "the backward pass is the SIMD kernel");
  const wasm = onWasm(true, vjp);
  assert.equal(firstDifference(wasm, onWasm(false, () => tf.mul(dy, tf.tensor(mask, shape)))), -1, "dy·mask");
  assert.equal(firstDifference(wasm, onWasm(false, vjp)), -1, "= TF.js's gradient of tf.mul(x, mask)");
  const [xHost, dyHost] = [x.dataSync(), dy.dataSync()];
  const cpu = await onCpu(() =>
    tf.grad((a: tf.Tensor) => layer.apply(a, ctx))(tf.tensor(xHost, shape), tf.tensor(dyHost, shape))
  );
  assert.equal(firstDifference(wasm, cpu), -1, "= cpu's gradient");
  // The backward pass is the same kernel on dy, with the same gradient: d Σ (dropout'ᵀ dy) / d dy = the mask.
  const backward = (d: tf.Tensor) => tf.sum(tf.grad((a: tf.Tensor) => layer.apply(a, ctx))(x, d));
  assert.equal(firstDifference(onWasm(true, () => tf.grad(backward)(dy)), mask), -1, "second order");
  tf.dispose([x, dy]);
});
