// Run by wasm_threads_test.ts in a fresh process (threaded wasm can only start once per process): start wasm
// with 2 XNNPACK threads, run a conv2d forward and backward on it and on cpu, print what happened as JSON.
import * as tf from "@tensorflow/tfjs";
import { initThreadedWasm } from "../lib/wasm_threads.ts";
import { registerWasmTrainingKernels } from "../lib/wasm_kernels.ts";
import { Rng } from "../lib/rng.ts";

if (tf.findBackend("wasm") !== null) throw new Error("wasm was initialized before the threaded start");
const threads = await initThreadedWasm(2);
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
if (!(await tf.setBackend("wasm"))) throw new Error("wasm backend did not start");
const wasm = Array.from(await tf.tidy(run).data());
await tf.setBackend("cpu");
const cpu = Array.from(await tf.tidy(run).data());
console.log(JSON.stringify({ threads, wasm, cpu }));
