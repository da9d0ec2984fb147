// WebGPU fails loudly (lib/webgpu_guard.ts), and the kit's host-reading paths run on it (no dataSync). Runs
// where an adapter exists (CI installs mesa-vulkan-drivers: software Vulkan counts, this checks behaviour,
// not speed); sizes are read from the device, never assumed.
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { deviceLimits, initBackend, requestWebgpuAdapter } from "../lib/backend.ts";
import { loadDataset } from "../lib/data/index.ts";
import {
  evaluateClassifier,
  firstSamples,
  loadClassifier,
  saveClassifier,
  trainClassifier,
} from "../lib/metrics/mnist_classifier.ts";
import { exactConsistencyFn, exactConsistencyFunction, type GaussianMixture } from "../lib/pf_ode.ts";
import { assertClose } from "../lib/testing.ts";

const hasWebgpu = !!(await requestWebgpuAdapter());
const ignore = !hasWebgpu;

async function onWebgpu() {
  await initBackend({ backend: "webgpu", quiet: true });
  return tf.backend() as unknown as { device: GPUDevice };
}

const mix: GaussianMixture = { dim: 2, means: [[-1, 0.5], [1, -0.5]], stds: [0.1, 0], weights: [0.3, 0.7] };
const sigmas = Float64Array.of(80, 3, 0.5, 0.002, 0.001); // at or below σ_min f* must return x itself
const points = Float32Array.of(40, -60, 2.5, 1, -0.3, 0.9, 0.25, -0.75, 0.5, 0.1);

/** f* of exactConsistencyFn (tensor ops) against the float64 host solver, on the current backend. */
async function checkExactFn() {
  const out = await exactConsistencyFn(mix, 0.002, 100)(tf.tensor2d(points, [5, 2]), sigmas).data();
  const host = [0, 1, 2, 3, 4].flatMap((b) => [
    ...exactConsistencyFunction(
      mix,
      Float64Array.from(points.subarray(2 * b, 2 * b + 2)),
      sigmas[b],
      0.002,
      100,
    ),
  ]);
  await assertClose(out, host, { atol: 2e-4, rtol: 2e-4, message: `f* on ${tf.getBackend()}` });
  assert.deepEqual([...out.slice(6)], [...points.slice(6)], "f*(x, σ ≤ σ_min) = x exactly");
}

Deno.test("exactConsistencyFn (tensor ops) equals the float64 host solver on cpu", async () => {
  await initBackend({ backend: "cpu", quiet: true });
  await checkExactFn();
});

Deno.test({ name: "exactConsistencyFn runs on webgpu and equals the host solver", ignore }, async () => {
  await onWebgpu();
  await checkExactFn();
});

Deno.test({ name: "the MNIST classifier trains, evaluates and saves on webgpu", ignore }, async () => {
  await onWebgpu();
  const train = firstSamples(await loadDataset({ dataset: "mnist", flip: false }, "train"), 64);
  const { params, loss } = await trainClassifier(train, { epochs: 1, batch: 32, seed: 1 });
  assert.ok(Number.isFinite(loss));
  const { accuracy } = await evaluateClassifier(params, train, 32);
  assert.ok(accuracy >= 0 && accuracy <= 1);
  const dir = await Deno.makeTempDir({ prefix: "ict-webgpu-" });
  const info = { dataset: "mnist" as const, testAccuracy: accuracy, epochs: 1, trainImages: 64, seed: 1 };
  await saveClassifier(`${dir}/c.safetensors`, params, info);
  const loaded = await loadClassifier("mnist", `${dir}/c.safetensors`);
  for (const [name, t] of params) await assertClose(loaded.params.get(name)!, t, { message: name });
  await Deno.remove(dir, { recursive: true });
});

Deno.test(
  { name: "webgpu: an op on a tensor over the binding limit is refused before dispatch", ignore },
  async () => {
    const { device } = await onWebgpu();
    const limit = device.limits.maxStorageBufferBindingSize;
    const big = tf.tensor1d(new Float32Array(limit / 4 + 1)); // one float over: host values, no GPU buffer yet
    const before = tf.memory() as tf.MemoryInfo & { numBytesInGPU?: number };
    assert.throws(
      () => tf.add(big, big),
      (e: Error) =>
        e.message.includes("maxStorageBufferBindingSize") && e.message.includes(`[${limit / 4 + 1}]`) &&
        !e.message.includes("\n"),
    );
    const after = tf.memory() as tf.MemoryInfo & { numBytesInGPU?: number };
    assert.equal(after.numBytesInGPU, before.numBytesInGPU, "nothing was allocated on the GPU");
    big.dispose();
    // At the limit exactly is fine (checked without allocating: a shape of size limit/4 passes the guard).
    const ok = tf.fill([1024], 2);
    assert.equal((await tf.sum(tf.add(ok, ok)).data())[0], 4096);
  },
);

Deno.test(
  { name: "webgpu: a GPU error is thrown at the next read with wgpu's message", ignore },
  async () => {
    const { device } = await onWebgpu();
    const x = tf.fill([4096], 1); // large enough to run on the GPU (TF.js hands tiny ops to the CPU)
    // An invalid call, as a bad dispatch would make: wgpu reports it only through an error event.
    device.createBuffer({ size: 16, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.MAP_WRITE });
    await assert.rejects(() => tf.add(x, 1).data(), /webgpu reported an error.*MAP/);
    assert.equal((await tf.add(x, 1).data())[0], 2, "reported once; the next read is clean");
  },
);

Deno.test({ name: "deviceLimits on webgpu are the device's own limits", ignore }, async () => {
  const { device } = await onWebgpu();
  const limits = await deviceLimits();
  assert.equal(limits.backend, "webgpu");
  assert.equal(limits.maxBindingBytes, device.limits.maxStorageBufferBindingSize);
  assert.equal(limits.maxBufferBytes, device.limits.maxBufferSize);
  assert.ok(limits.memorySource.length > 0);
});
