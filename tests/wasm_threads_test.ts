import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { initThreadedWasm, requestedWasmThreads } from "../lib/wasm_threads.ts";
import { registerWasmTrainingKernels } from "../lib/wasm_kernels.ts";
import { Rng } from "../lib/rng.ts";
import { assertClose } from "../lib/testing.ts";

Deno.test("threaded wasm: starts with 2 XNNPACK threads in Deno and trains like cpu", async () => {
  assert.equal(
    tf.findBackend("wasm"),
    null,
    "this test file must be the first to initialize wasm in its process",
  );
  assert.equal(await initThreadedWasm(2), 2);
  registerWasmTrainingKernels();
  const r = Rng.seeded(11);
  const xData = Float32Array.from({ length: 4 * 16 * 16 * 8 }, () => r.normal());
  const wData = Float32Array.from({ length: 3 * 3 * 8 * 16 }, () => r.normal());
  const run = () => {
    const x = tf.tensor4d(xData, [4, 16, 16, 8]);
    const w = tf.tensor4d(wData, [3, 3, 8, 16]);
    const loss = (a: tf.Tensor, b: tf.Tensor) =>
      tf.mean(tf.square(tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, 2, "same")));
    const [gx, gw] = tf.grads(loss)([x, w]);
    return tf.concat([tf.conv2d(x, w, 1, "same").flatten(), gx.flatten(), gw.flatten()]);
  };
  assert.ok(await tf.setBackend("wasm"));
  const onWasm = tf.tidy(run);
  const wasmValues = await onWasm.data();
  assert.ok(await tf.setBackend("cpu"));
  await assertClose(wasmValues, tf.tidy(run), { atol: 1e-4, rtol: 1e-4 });
});

Deno.test("requestedWasmThreads: ICT_WASM_THREADS, default all cores, bad values refused", () => {
  const saved = Deno.env.get("ICT_WASM_THREADS");
  try {
    Deno.env.delete("ICT_WASM_THREADS");
    assert.equal(requestedWasmThreads(), navigator.hardwareConcurrency);
    Deno.env.set("ICT_WASM_THREADS", "3");
    assert.equal(requestedWasmThreads(), 3);
    Deno.env.set("ICT_WASM_THREADS", "0");
    assert.throws(() => requestedWasmThreads(), /integer >= 1/);
  } finally {
    if (saved === undefined) Deno.env.delete("ICT_WASM_THREADS");
    else Deno.env.set("ICT_WASM_THREADS", saved);
  }
});
