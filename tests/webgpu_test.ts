// WebGPU fails loudly (lib/webgpu_guard.ts), and the kit's host-reading paths run on it (no dataSync). Runs
// where an adapter exists (CI installs mesa-vulkan-drivers: software Vulkan counts, this checks behaviour,
// not speed); sizes are read from the device, never assumed.
import { assert, assertEquals, assertMatch, assertRejects, assertThrows } from "@std/assert";
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
  assertEquals([...out.slice(6)], [...points.slice(6)], "f*(x, σ ≤ σ_min) = x exactly");
}

Deno.test("exactConsistencyFn (tensor ops) equals the float64 host solver on cpu", async () => {
  assert(await tf.setBackend("cpu")); // not initBackend: cpu keeps TF.js's own kernels, the reference below
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
  assert(Number.isFinite(loss));
  const { accuracy } = await evaluateClassifier(params, train, 32);
  assert(accuracy >= 0 && accuracy <= 1);
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
    {
      const e = assertThrows(() => tf.add(big, big), Error);
      assert(
        e.message.includes("maxStorageBufferBindingSize") && e.message.includes(`[${limit / 4 + 1}]`) &&
          !e.message.includes("\n"),
        e.message,
      );
    }
    const after = tf.memory() as tf.MemoryInfo & { numBytesInGPU?: number };
    assertEquals(after.numBytesInGPU, before.numBytesInGPU, "nothing was allocated on the GPU");
    big.dispose();
    // At the limit exactly is fine (checked without allocating: a shape of size limit/4 passes the guard).
    const ok = tf.fill([1024], 2);
    assertEquals((await tf.sum(tf.add(ok, ok)).data())[0], 4096);
  },
);

Deno.test(
  { name: "webgpu: a GPU error is thrown at the next read with wgpu's message", ignore },
  async () => {
    const { device } = await onWebgpu();
    const x = tf.fill([4096], 1); // large enough to run on the GPU (TF.js hands tiny ops to the CPU)
    // An invalid call, as a bad dispatch would make: wgpu reports it only through an error event.
    device.createBuffer({ size: 16, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.MAP_WRITE });
    assertMatch(
      (await assertRejects(() => tf.add(x, 1).data(), Error)).message,
      /webgpu reported an error.*MAP/,
    );
    assertEquals((await tf.add(x, 1).data())[0], 2, "reported once; the next read is clean");
  },
);

/** A conv gradient of Σ conv(x, w)·R, on the current backend. */
async function convGradient(
  wrt: "filter" | "input",
  x: tf.Tensor4D,
  w: tf.Tensor4D,
  stride: number,
  pad: "same" | "valid",
) {
  const y = tf.conv2d(x, w, stride, pad);
  const r = tf.randomNormal(y.shape, 0, 1, "float32", 3);
  const loss = (xx: tf.Tensor, ww: tf.Tensor) =>
    tf.sum(tf.mul(tf.conv2d(xx as tf.Tensor4D, ww as tf.Tensor4D, stride, pad), r));
  const g = wrt === "filter"
    ? tf.grad((ww: tf.Tensor) => loss(x, ww))(w)
    : tf.grad((xx: tf.Tensor) => loss(xx, w))(x);
  return await g.data();
}

Deno.test(
  { name: "webgpu uses the forward-op conv gradients, equal to cpu's own kernels", ignore },
  async () => {
    await onWebgpu();
    for (
      const [kernel, fn] of [["Conv2DBackpropFilter", "filter"], ["Conv2DBackpropInput", "input"]] as const
    ) {
      // TF.js's own webgpu kernels build a shader program; the kit's run forward ops (lib/wasm_kernels.ts).
      const registered = tf.getKernel(kernel, "webgpu")!.kernelFunc.toString();
      assert(!/Program|runWebGPUProgram/.test(registered), `${kernel} (${fn}) is the kit's: ${registered}`);
    }
    const cases = [
      { x: [2, 7, 7, 3], k: 3, cout: 4, stride: 1, pad: "same" },
      { x: [3, 9, 9, 2], k: 3, cout: 5, stride: 2, pad: "valid" },
      { x: [2, 8, 6, 4], k: 1, cout: 3, stride: 1, pad: "same" },
      { x: [1, 10, 10, 2], k: 3, cout: 3, stride: 2, pad: "same" },
    ] as const;
    for (const c of cases) {
      for (const wrt of ["filter", "input"] as const) {
        const make = () =>
          [
            tf.randomNormal([...c.x], 0, 1, "float32", 1) as tf.Tensor4D,
            tf.randomNormal([c.k, c.k, c.x[3], c.cout], 0, 1, "float32", 2) as tf.Tensor4D,
          ] as const;
        assert(await tf.setBackend("cpu"));
        const cpu = await convGradient(wrt, ...make(), c.stride, c.pad);
        assert(await tf.setBackend("webgpu"));
        const gpu = await convGradient(wrt, ...make(), c.stride, c.pad);
        await assertClose(gpu, cpu, {
          atol: 1e-4,
          rtol: 1e-4,
          message: `${wrt} gradient, x ${c.x}, ${c.k}x${c.k}/${c.stride} ${c.pad}`,
        });
      }
    }
  },
);

Deno.test({ name: "deviceLimits on webgpu are the device's own limits", ignore }, async () => {
  const { device } = await onWebgpu();
  const limits = await deviceLimits();
  assertEquals(limits.backend, "webgpu");
  assertEquals(limits.maxBindingBytes, device.limits.maxStorageBufferBindingSize);
  assertEquals(limits.maxBufferBytes, device.limits.maxBufferSize);
  assert(limits.memorySource.length > 0);
});
