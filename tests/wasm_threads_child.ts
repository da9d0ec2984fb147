// Run by wasm_threads_test.ts in a fresh process (threaded wasm can only start once per process): start wasm
// with 2 XNNPACK threads, run a conv2d forward and backward on it and on cpu, print what happened as JSON.
// No argument: the way every task starts it, initBackend with ICT_WASM_THREADS=2. Otherwise the argument is
// "after-findBackend" (tf.findBackend("wasm") first, which starts a single-threaded init), or a JSON start
// policy (lib/wasm_threads.ts StartPolicy) whose `stall` is a list of [slot, attempt] pairs, or "all", naming
// pool worker starts to make stall.
import * as tf from "@tensorflow/tfjs";
import { initBackend } from "../lib/backend.ts";
import {
  DEFAULT_START_POLICY,
  initThreadedWasm,
  type StartPolicy,
  wasmThreads,
} from "../lib/wasm_threads.ts";
import { registerWasmTrainingKernels } from "../lib/wasm_kernels.ts";
import { Rng } from "../lib/rng.ts";

let report = "";
let replaced: number | undefined;
if (!Deno.args[0]) {
  Deno.env.set("ICT_WASM_THREADS", "2");
  report = (await initBackend({ backend: "wasm", quiet: true })).reason;
} else if (Deno.args[0] === "after-findBackend") {
  tf.findBackend("wasm");
  await initThreadedWasm(2);
} else {
  const spec = JSON.parse(Deno.args[0]);
  const policy: StartPolicy = {
    ...DEFAULT_START_POLICY,
    ...spec,
    stall: spec.stall === "all"
      ? () => true
      : (slot: number, attempt: number) => spec.stall.some(([s, a]: number[]) => s === slot && a === attempt),
  };
  replaced = (await initThreadedWasm(2, policy)).replaced;
}
const threads = wasmThreads();
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
console.log(JSON.stringify({ threads, replaced, report, globalWorker: globalThis.Worker.name, wasm, cpu }));
// No explicit exit: the process must end on its own (pool workers must not hold the event loop).
