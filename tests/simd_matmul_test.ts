// wasm's BatchMatMul by the SIMD128 kernel (lib/simd/matmul.ts, fastPaths.simdMatMul): every element is the
// float32 sum over k in order, bit for bit, for all four transposes, K and N not multiples of 4 (N = 21: two
// eight-column panels, one of four, one lone column) and M = 1, 3, 8, 9 (tiles of four rows and the rest);
// = cpu's matMul, with gradients, and central finite differences; a row's bits the same in a product of 1, 7
// or 64 rows.
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import "@tensorflow/tfjs-backend-wasm";
import { assertClose } from "../lib/testing.ts";
import { SIMD_MATMUL_ROW_MACS } from "../lib/simd/matmul.ts";
import { fastPaths, registerWasmTrainingKernels, SMALL_MATMUL_ROW_MACS } from "../lib/wasm_kernels.ts";
import { gradCheck, on, randn } from "./backend_helpers.ts";

registerWasmTrainingKernels();

const TRANSPOSES = [[false, false], [false, true], [true, false], [true, true]] as const;
const label = (ta: boolean, tb: boolean) => `a${ta ? "ᵀ" : ""}·b${tb ? "ᵀ" : ""}`;

/** a's or b's stored shape for op(a) [..., M, K] or op(b) [..., K, N]. */
const stored = (
  batch: number[],
  rows: number,
  cols: number,
  t: boolean,
) => [...batch, ...(t ? [cols, rows] : [rows, cols])];

/** op(a)·op(b) on the host, each element summed over k in order in float32 (a or b with one entry broadcast). */
function float32Product(
  a: Float32Array,
  b: Float32Array,
  [batch, aBatch, bBatch, m, k, n]: number[],
  ta: boolean,
  tb: boolean,
): Float32Array {
  const out = new Float32Array(batch * m * n);
  for (let e = 0; e < batch; e++) {
    const [a0, b0] = [(aBatch === 1 ? 0 : e) * m * k, (bBatch === 1 ? 0 : e) * k * n];
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let p = 0; p < k; p++) {
          const x = ta ? a[a0 + p * m + i] : a[a0 + i * k + p];
          const y = tb ? b[b0 + j * k + p] : b[b0 + p * n + j];
          s = Math.fround(s + Math.fround(x * y));
        }
        out[(e * m + i) * n + j] = s;
      }
    }
  }
  return out;
}

/** Index of the first element whose bits differ, or -1. */
const firstDifference = (x: Float32Array, y: Float32Array) =>
  x.length !== y.length ? 0 : x.findIndex((v, i) => !Object.is(v, y[i]));

type Case = { a: number[]; b: number[]; dims: number[] }; // dims: batch, aBatch, bBatch, M, K, N

function cases(ta: boolean, tb: boolean): Case[] {
  const out: Case[] = [];
  const add = (aBatch: number[], bBatch: number[], m: number, k: number, n: number) => {
    const count = (s: number[]) => s.reduce((p, q) => p * q, 1);
    const batch = Math.max(count(aBatch), count(bBatch));
    out.push({
      a: stored(aBatch, m, k, ta),
      b: stored(bBatch, k, n, tb),
      dims: [batch, count(aBatch), count(bBatch), m, k, n],
    });
  };
  for (const m of [1, 3, 8, 9]) for (const [k, n] of [[5, 7], [13, 21]]) add([], [], m, k, n);
  add([2], [2], 3, 13, 21); // a batch of products
  add([2], [], 3, 13, 21); // b without a batch (one product of 6 rows unless a is transposed)
  add([1], [3], 9, 13, 21); // a broadcast over b's batch
  add([3], [1], 5, 6, 10); // b broadcast (a transposed b is transposed once)
  add([], [], 2, 512, 256); // ncsnpp-cifar10's time-embedding projection (the backward: 256 → 512)
  return out;
}

for (const [ta, tb] of TRANSPOSES) {
  Deno.test(`SIMD BatchMatMul ${label(ta, tb)} = the float32 sum in k order bit for bit, and = cpu's matMul`, async () => {
    for (const c of cases(ta, tb)) {
      const [k, n] = c.dims.slice(4);
      assert.ok(k * n <= SIMD_MATMUL_ROW_MACS);
      const run = () => [randn(c.a, 1), randn(c.b, 2), tf.matMul(randn(c.a, 1), randn(c.b, 2), ta, tb)];
      const [a, b, wasm] = await on("wasm", run);
      const cpu = (await on("cpu", run))[2];
      const want = float32Product(a, b, c.dims, ta, tb);
      const at = firstDifference(wasm, want);
      assert.equal(at, -1, `a [${c.a}], b [${c.b}]: first difference at ${at}: ${wasm[at]} vs ${want[at]}`);
      // cpu's float32 sums run in another order: |error| ≲ K·ε·Σ|terms|.
      await assertClose(wasm, cpu, { atol: 1e-6 * k, rtol: 1e-5, message: `a [${c.a}], b [${c.b}]` });
    }
  });
}

Deno.test("SIMD BatchMatMul = XNNPACK's convolution (fastPaths.smallMatMul off) bit for bit", async () => {
  // XNNPACK's wasm GEMM sums k in order too, from a zero bias, with separate float32 products and sums: the
  // bound SIMD_MATMUL_ROW_MACS moves time, not bits (tfjs-backend-wasm 4.22).
  for (const [ta, tb] of TRANSPOSES) {
    for (const [batch, m, k, n] of [[1, 1, 512, 256], [1, 64, 512, 256], [3, 9, 13, 21], [2, 256, 64, 64]]) {
      const run =
        () => [tf.matMul(randn(stored([batch], m, k, ta), 13), randn(stored([batch], k, n, tb), 14), ta, tb)];
      const simd = (await on("wasm", run))[0];
      fastPaths.smallMatMul = false;
      try {
        const conv = (await on("wasm", run))[0];
        assert.equal(firstDifference(simd, conv), -1, `${label(ta, tb)} [${batch}, ${m}, ${k}, ${n}]`);
      } finally {
        fastPaths.smallMatMul = true;
      }
    }
  }
});

Deno.test("fastPaths.simdMatMul off: products with K·N ≤ 8192 by the JavaScript kernel (float64 sums)", async () => {
  const [m, k, n] = [8, 64, 96];
  assert.ok(k * n <= SMALL_MATMUL_ROW_MACS);
  const run = () => [randn([m, k], 3), randn([k, n], 4), tf.matMul(randn([m, k], 3), randn([k, n], 4))];
  const cpu = (await on("cpu", run))[2];
  fastPaths.simdMatMul = false;
  try {
    const [a, b, wasm] = await on("wasm", run);
    // 768 float64 sums of 64 terms, rounded once, all equal to the k-ordered float32 sums: never in practice.
    assert.notEqual(firstDifference(wasm, float32Product(a, b, [1, 1, 1, m, k, n], false, false)), -1);
    await assertClose(wasm, cpu, { atol: 1e-5, rtol: 1e-5 });
  } finally {
    fastPaths.simdMatMul = true;
  }
});

for (const [ta, tb] of TRANSPOSES) {
  Deno.test(`SIMD BatchMatMul ${label(ta, tb)}: both gradients = cpu's`, async () => {
    for (const [m, k, n] of [[3, 13, 21], [8, 5, 7], [1, 512, 256]]) {
      const [as, bs] = [stored([], m, k, ta), stored([], k, n, tb)];
      const run = () => {
        const [a, b, r] = [randn(as, 5), randn(bs, 6), randn([m, n], 7)];
        const [ga, gb] = tf.grads((x: tf.Tensor, w: tf.Tensor) => tf.sum(tf.mul(tf.matMul(x, w, ta, tb), r)))(
          [a, b],
        );
        return [ga, gb];
      };
      const [wasm, cpu] = [await on("wasm", run), await on("cpu", run)];
      for (let i = 0; i < 2; i++) {
        await assertClose(wasm[i], cpu[i], {
          atol: 1e-4,
          rtol: 1e-5,
          message: `[${m}, ${k}, ${n}] d${"ab"[i]}`,
        });
      }
    }
  });
}

Deno.test("SIMD BatchMatMul gradients = central finite differences (all four transposes in one chain)", async () => {
  // ((((a·bᵀ)ᵀ·c)·dᵀ)ᵀ·eᵀ)·g: [3, 21], [21, 6], [21, 9], [9, 7], [9, 4], every product small.
  const shapes = [[3, 13], [21, 13], [3, 6], [9, 6], [7, 21], [7, 4]];
  const f = ([a, b, c, d, e, g]: tf.Tensor[]) =>
    tf.matMul(
      tf.matMul(tf.matMul(tf.matMul(tf.matMul(a, b, false, true), c, true), d, false, true), e, true, true),
      g,
    );
  await gradCheck("four transposes in one chain", (...ts) => f(ts), shapes, 20);
});

for (const [ta, tb] of TRANSPOSES) {
  Deno.test(`SIMD BatchMatMul ${label(ta, tb)}: a row's bits are the same in products of 1, 7 and 200 rows`, async () => {
    // Rows 0–7 alone and rows 0–6 and 3–9 of 200: every place in a tile of four, and out of one; 200 rows are
    // past SIMD_MATMUL_MAX_ROWS, so that product is XNNPACK's convolution.
    for (const [k, n] of [[37, 29], [512, 256]]) {
      const rows = (t: tf.Tensor, from: number, count: number) =>
        ta ? tf.slice(t, [0, from], [k, count]) : tf.slice(t, [from, 0], [count, k]);
      const parts: [number, number][] = [
        [0, 7],
        [3, 7],
        ...Array.from({ length: 8 }, (_, i) => [i, 1] as [number, number]),
      ];
      const [all, ...some] = await on("wasm", () => {
        const [a, b] = [randn(stored([], 200, k, ta), 8), randn(stored([], k, n, tb), 9)];
        const product = (x: tf.Tensor) => tf.matMul(x, b, ta, tb);
        return [product(a), ...parts.map(([from, count]) => product(rows(a, from, count)))];
      });
      parts.forEach(([from, count], i) => {
        const at = firstDifference(some[i], all.subarray(from * n, (from + count) * n));
        assert.equal(at, -1, `[${k}, ${n}]: rows ${from}–${from + count - 1} of 200 apart, element ${at}`);
      });
    }
  });
}

Deno.test("SIMD BatchMatMul: an entry's bits are the same in a batch of 2 and of 6 (attention's q·kᵀ and ·v)", async () => {
  const [qk6, qk2, av6, av2] = await on("wasm", () => {
    const [q, k, w] = [randn([6, 16, 24], 10), randn([6, 20, 24], 11), randn([6, 16, 20], 12)];
    const first2 = (t: tf.Tensor) => tf.slice(t, [0, 0, 0], [2, -1, -1]);
    return [
      tf.matMul(q, k, false, true),
      tf.matMul(first2(q), first2(k), false, true),
      tf.matMul(w, k),
      tf.matMul(first2(w), first2(k)),
    ];
  });
  assert.equal(firstDifference(qk2, qk6.subarray(0, qk2.length)), -1, "q·kᵀ");
  assert.equal(firstDifference(av2, av6.subarray(0, av2.length)), -1, "weights·v");
});
