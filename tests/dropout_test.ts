// Dropout masks made by a counter-based hash (lib/nn/dropout.ts): the same bits on every backend and on the
// host, a function of (step seed, layer, global sample index, element) only, the keep rate asked for, and no
// correlation between elements, samples, layers or steps.
import { assert, assertEquals } from "@std/assert";
import * as tf from "@tensorflow/tfjs";
import "@tensorflow/tfjs-backend-wasm";
import { dropoutMask, hashUniform } from "../lib/nn/dropout.ts";

await tf.setBackend("cpu");

async function values(t: tf.Tensor): Promise<Float32Array> {
  const v = (await t.data()) as Float32Array;
  t.dispose();
  return v;
}

/** Pearson correlation of a and b. */
function corr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  const n = a.length;
  let [ma, mb] = [0, 0];
  for (let i = 0; i < n; i++) [ma, mb] = [ma + a[i] / n, mb + b[i] / n];
  let [sab, saa, sbb] = [0, 0, 0];
  for (let i = 0; i < n; i++) {
    sab += (a[i] - ma) * (b[i] - mb);
    saa += (a[i] - ma) ** 2;
    sbb += (b[i] - mb) ** 2;
  }
  return sab / Math.sqrt(saa * sbb);
}

Deno.test("dropout hash: the host loop and the tensor ops give the same bits, on cpu and wasm", async () => {
  const shape = [3, 5, 7, 11];
  const saved = tf.getBackend();
  try {
    const reference = await values(hashUniform(shape, 0xdeadbeef, 7, 1000, "host"));
    for (const backend of ["cpu", "wasm"]) {
      assert(await tf.setBackend(backend), `${backend} starts`);
      const device = await values(hashUniform(shape, 0xdeadbeef, 7, 1000, "device"));
      assertEquals(device, reference, `${backend}: tensor ops = host loop`);
      assert(reference.every((u) => u >= 0 && u < 1 && Number.isInteger(u * 2 ** 24)), "24-bit uniforms");
    }
  } finally {
    await tf.setBackend(saved);
  }
});

Deno.test({
  name: "dropout hash: webgpu computes the same bits (when a WebGPU adapter exists)",
  ignore: !(await navigator.gpu?.requestAdapter().catch(() => null)),
  fn: async () => {
    await import("@tensorflow/tfjs-backend-webgpu");
    const saved = tf.getBackend();
    try {
      const reference = await values(hashUniform([2, 4, 4, 6], 12345, 3, 17, "host"));
      assert(await tf.setBackend("webgpu"));
      assertEquals(await values(hashUniform([2, 4, 4, 6], 12345, 3, 17, "device")), reference);
    } finally {
      await tf.setBackend(saved);
    }
  },
});

Deno.test("dropout mask: a function of the global sample index, however the batch is split", async () => {
  for (const where of ["host", "device"] as const) {
    const whole = await values(hashUniform([8, 4, 4, 3], 99, 2, 0, where));
    const d = 4 * 4 * 3;
    for (const [offset, count] of [[0, 1], [3, 2], [4, 4], [7, 1]]) {
      const part = await values(hashUniform([count, 4, 4, 3], 99, 2, offset, where));
      assertEquals(
        part,
        whole.slice(offset * d, (offset + count) * d),
        `${where}: samples ${offset}+${count}`,
      );
    }
  }
  // The mask itself: 0 or 1/(1 − rate), split the same way.
  const m = await values(dropoutMask([6, 10], 0.3, 5, 1, 0));
  assertEquals(await values(dropoutMask([2, 10], 0.3, 5, 1, 4)), m.slice(40));
  assert(m.every((v) => v === 0 || Math.abs(v - 1 / 0.7) < 1e-6));
});

Deno.test("dropout mask: keep rate 1 − rate, and no correlation across elements, samples, layers or steps", async () => {
  const [b, d] = [64, 16 * 16 * 32]; // 524,288 values
  const u = await values(hashUniform([b, 16, 16, 32], 2024, 5, 0, "host"));
  const n = u.length;
  const tol = 5 / Math.sqrt(n); // 5σ of a correlation estimate over n values
  for (const rate of [0.1, 0.3, 0.5]) {
    const dropped = u.reduce((k, v) => k + (v < rate ? 1 : 0), 0) / n;
    const sd = Math.sqrt(rate * (1 - rate) / n);
    assert(Math.abs(dropped - rate) < 5 * sd, `rate ${rate}: dropped ${dropped}`);
  }
  // Neighbouring elements (1: next channel; 32: next pixel; 512: next row; 4096: the hash's limb boundary).
  for (const lag of [1, 2, 32, 512, 4096]) {
    const r = corr(u.subarray(0, n - lag), u.subarray(lag));
    assert(Math.abs(r) < tol, `lag ${lag}: r = ${r}`);
  }
  // The same element of neighbouring samples; of the next layer; of the next step.
  const sameElement = corr(u.subarray(0, n - d), u.subarray(d));
  assert(Math.abs(sameElement) < tol, `next sample: r = ${sameElement}`);
  const nextLayer = await values(hashUniform([b, 16, 16, 32], 2024, 6, 0, "host"));
  assert(Math.abs(corr(u, nextLayer)) < tol, `next layer: r = ${corr(u, nextLayer)}`);
  const nextStep = await values(hashUniform([b, 16, 16, 32], 2025, 5, 0, "host"));
  assert(Math.abs(corr(u, nextStep)) < tol, `next step: r = ${corr(u, nextStep)}`);
  // Histogram: 64 bins, chi-square well within its spread (mean 63, sd ≈ 11).
  const bins = new Array(64).fill(0);
  for (const v of u) bins[Math.floor(v * 64)]++;
  const chi2 = bins.reduce((s, k) => s + (k - n / 64) ** 2 / (n / 64), 0);
  assert(chi2 < 63 + 5 * Math.sqrt(2 * 63), `chi-square ${chi2}`);
});
