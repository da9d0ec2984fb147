// lib/wasm_conv_cache.ts: wasm's Conv2D and FusedConv2D with their filter copied (beyond the budget) give the
// cached kernels' results bit for bit and cpu's within rounding, gradients included; copied filters leave the
// wasm heap flat, cached ones do not; the budget is freed by disposing filters.
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import "@tensorflow/tfjs-backend-wasm";
import { assertClose } from "../lib/testing.ts";
import { on, randn } from "./backend_helpers.ts";
import { registerWasmTrainingKernels } from "../lib/wasm_kernels.ts";
import { cachedFilterBytes, convCache } from "../lib/wasm_conv_cache.ts";
import { outputsAndGrads, tinyCases } from "./reference/tiny_networks.ts";

registerWasmTrainingKernels(); // what initBackend registers on wasm: the budgeted Conv2D / FusedConv2D with it

async function withBudget<T>(bytes: number, f: () => Promise<T>): Promise<T> {
  const saved = convCache.budgetBytes;
  convCache.budgetBytes = bytes;
  try {
    return await f();
  } finally {
    convCache.budgetBytes = saved;
  }
}

const heapBytes = () =>
  (tf.backend() as unknown as { wasm: { HEAPU8: Uint8Array } }).wasm.HEAPU8.buffer.byteLength;

// The layers' convolutions (fused, with a bias: 3×3 and 1×1) and a plain one (the attention's products, the
// input gradient), each with both gradients: dL/dx and dL/dw run convolutions through the wrapped kernels too.
const cases = [
  { label: "FusedConv2D 3×3 + bias", x: [2, 5, 6, 3], w: [3, 3, 3, 4], bias: true },
  { label: "FusedConv2D 1×1 + bias", x: [1, 4, 4, 5], w: [1, 1, 5, 6], bias: true },
  { label: "Conv2D 3×3", x: [2, 5, 5, 2], w: [3, 3, 2, 3], bias: false },
];
for (const c of cases) {
  Deno.test(`wasm ${c.label}, filter copied (budget 0) = cached bit for bit = cpu, with gradients`, async () => {
    const run = () => {
      const inputs = [randn(c.x, 1), randn(c.w, 2), randn([c.w[3]], 3)].slice(0, c.bias ? 3 : 2);
      const f = (...[x, w, bias]: tf.Tensor[]) =>
        c.bias
          ? tf.fused.conv2d({ x: x as tf.Tensor4D, filter: w as tf.Tensor4D, strides: 1, pad: "same", bias })
          : tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, 1, "same");
      const y = f(...inputs);
      const r = randn(y.shape, 4);
      return [y, ...tf.grads((...ts: tf.Tensor[]) => tf.sum(tf.mul(f(...ts), r)))(inputs)];
    };
    const cpu = await on("cpu", run);
    const copies = convCache.copies;
    const copied = await withBudget(0, () => on("wasm", run));
    assert.ok(convCache.copies > copies, "budget 0: the filters were copied");
    const cached = await withBudget(2 ** 30, () => on("wasm", run));
    for (let i = 0; i < cpu.length; i++) {
      assert.deepEqual(copied[i], cached[i], `output ${i}: copied and cached filters differ`);
      await assertClose(copied[i], cpu[i], { atol: 1e-4, rtol: 1e-4 });
    }
  });
}

Deno.test("wasm conv2d with every filter copied: gradient = finite differences", async () => {
  await withBudget(0, async () => {
    assert.ok(await tf.setBackend("wasm"));
    const [analytic, numeric] = tf.tidy(() => {
      const [x, w, b] = [randn([1, 4, 5, 3], 11), randn([3, 3, 3, 2], 12), randn([2], 13)];
      const r = randn([1, 4, 5, 2], 14);
      const loss = (xx: tf.Tensor, ww: tf.Tensor, bb: tf.Tensor) =>
        tf.sum(tf.mul(
          tf.fused.conv2d({
            x: xx as tf.Tensor4D,
            filter: ww as tf.Tensor4D,
            strides: 1,
            pad: "same",
            bias: bb,
          }),
          r,
        ));
      const grads = tf.grads(loss)([x, w, b]);
      const dirs = [randn(x.shape, 21), randn(w.shape, 22), randn(b.shape, 23)];
      const along = (eps: number) =>
        tf.sub(
          loss(
            ...[x, w, b].map((t, i) => tf.add(t, tf.mul(dirs[i], eps))) as [tf.Tensor, tf.Tensor, tf.Tensor],
          ),
          loss(
            ...[x, w, b].map((t, i) => tf.sub(t, tf.mul(dirs[i], eps))) as [tf.Tensor, tf.Tensor, tf.Tensor],
          ),
        ).div(2 * eps);
      const fd = tf.div(tf.sub(tf.mul(along(1e-2), 4), along(2e-2)), 3);
      return [tf.addN(grads.map((g, i) => tf.sum(tf.mul(g, dirs[i])))), fd];
    });
    const [a, n] = [(await analytic.data())[0], (await numeric.data())[0]];
    tf.dispose([analytic, numeric]);
    assert.ok(Math.abs(a - n) <= 2e-3 * Math.max(1, Math.abs(n)), `autodiff ${a} vs finite difference ${n}`);
  });
});

for (const c of tinyCases()) {
  Deno.test(`tiny ${c.name} on wasm: every filter copied = every filter cached, bit for bit (output and gradients)`, async () => {
    const copies = convCache.copies;
    const copied = await withBudget(0, () => outputsAndGrads("wasm", c, true));
    assert.ok(convCache.copies > copies, "budget 0: the filters were copied");
    const cached = await withBudget(2 ** 30, () => outputsAndGrads("wasm", c, true));
    assert.deepEqual(copied.out, cached.out);
    for (const [name, g] of cached.grads) assert.deepEqual(copied.grads.get(name), g, `∂/∂${name}`);
  });
}

Deno.test("filters beyond the budget leave the wasm heap flat, cached ones grow it; disposing frees the budget", async () => {
  assert.ok(await tf.setBackend("wasm"));
  const MIB = 2 ** 20;
  const n = 16;
  const shape = [1, 1, 1024, 2048]; // 8 MiB each
  const x = tf.ones([1, 2, 2, 1024]) as tf.Tensor4D;
  const conv = (w: tf.Tensor) => tf.tidy(() => tf.conv2d(x, w as tf.Tensor4D, 1, "same").dataSync());
  const filters = () => Array.from({ length: n }, (_, i) => tf.fill(shape, 1 / (i + 1)));

  // Beyond the budget: after the first call (its transient copy, transposed copy and packing), no growth.
  await withBudget(0, () => {
    const ws = filters();
    const copies = convCache.copies;
    conv(ws[0]);
    const heap = heapBytes();
    ws.slice(1).forEach(conv);
    assert.equal(
      heapBytes(),
      heap,
      `heap grew by ${(heapBytes() - heap) / MIB} MiB with every filter copied`,
    );
    assert.equal(convCache.copies - copies, n, "every call ran on a copy");
    tf.dispose(ws);
    return Promise.resolve();
  });

  // Within the budget: the packed copies stay, n − 1 of 8 MiB each beyond the first.
  await withBudget(2 ** 31, () => {
    const before = cachedFilterBytes();
    const ws = filters();
    const copies = convCache.copies;
    conv(ws[0]);
    const heap = heapBytes();
    ws.slice(1).forEach(conv);
    const grown = (heapBytes() - heap) / MIB;
    assert.ok(grown >= (n - 1) * 8 * 0.9, `cached filters grew the heap by only ${grown} MiB`);
    assert.equal(convCache.copies, copies, "no copies within the budget");
    assert.equal(cachedFilterBytes() - before, n * 8 * MIB);
    tf.dispose(ws);
    assert.equal(cachedFilterBytes(), before, "disposed filters leave the budget");
    return Promise.resolve();
  });

  // A budget of 3 filters: the first 3 are cached, the rest copied; a disposed one makes room for another.
  await withBudget(cachedFilterBytes() + 3 * 8 * MIB, () => {
    const ws = filters();
    const copies = convCache.copies;
    ws.forEach(conv);
    assert.equal(convCache.copies - copies, n - 3);
    ws[0].dispose();
    const again = convCache.copies;
    conv(ws[5]); // not cached before: now it fits
    conv(ws[5]);
    assert.equal(convCache.copies, again, "the freed share was given to the next filter");
    tf.dispose(ws);
    return Promise.resolve();
  });
  x.dispose();
});
