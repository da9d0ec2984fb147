import { assert, assertEquals, assertMatch, assertThrows } from "@std/assert";
import * as tf from "@tensorflow/tfjs";
import {
  allowGpuMemoryGrowth,
  type BackendRequest,
  backendRequest,
  checkPresetBackend,
  chooseBackend,
  deviceLimits,
  initBackend,
  type Probe,
  probeBackends,
  tensorflowProbe,
} from "../lib/backend.ts";
import { checkTensorFits } from "../lib/webgpu_guard.ts";
import { registerWasmTrainingKernels } from "../lib/wasm_kernels.ts";
import { Rng } from "../lib/rng.ts";
import { assertClose } from "../lib/testing.ts";

function randn(n: number, seed: number): Float32Array {
  const r = Rng.seeded(seed);
  return Float32Array.from({ length: n }, () => r.normal());
}

/** Run f on a backend with fresh tensors built from the same host data; return the host result. */
async function on(backend: string, f: () => tf.Tensor): Promise<Float32Array> {
  assert(await tf.setBackend(backend), `could not switch to ${backend}`);
  const out = tf.tidy(f);
  const data = (await out.data()) as Float32Array;
  out.dispose();
  return data;
}

registerWasmTrainingKernels();

const cases: {
  x: [number, number, number, number];
  k: number;
  cout: number;
  stride: 1 | 2;
  pad: "same" | "valid";
}[] = [
  { x: [2, 7, 7, 3], k: 3, cout: 4, stride: 1, pad: "same" },
  { x: [2, 7, 7, 3], k: 3, cout: 4, stride: 1, pad: "valid" },
  { x: [3, 8, 8, 2], k: 3, cout: 5, stride: 2, pad: "same" },
  { x: [3, 9, 9, 2], k: 3, cout: 5, stride: 2, pad: "valid" },
  { x: [2, 8, 6, 4], k: 1, cout: 3, stride: 1, pad: "same" },
  { x: [2, 6, 6, 3], k: 2, cout: 2, stride: 2, pad: "same" },
  { x: [1, 10, 10, 2], k: 3, cout: 3, stride: 2, pad: "same" },
  { x: [2, 5, 7, 3], k: 3, cout: 2, stride: 2, pad: "valid" },
];

const kernelOf = { filter: "Conv2DBackpropFilter", input: "Conv2DBackpropInput" } as const;

for (const c of cases) {
  for (const wrt of ["filter", "input"] as const) {
    Deno.test(`wasm ${kernelOf[wrt]} = cpu: x ${c.x}, ${c.k}x${c.k}, stride ${c.stride}, ${c.pad}`, async () => {
      const wShape: [number, number, number, number] = [c.k, c.k, c.x[3], c.cout];
      const xData = randn(c.x.reduce((a, b) => a * b), 1);
      const wData = randn(wShape.reduce((a, b) => a * b), 2);
      const grad = () => {
        const [x, w] = [tf.tensor4d(xData, c.x), tf.tensor4d(wData, wShape)];
        const y = tf.conv2d(x, w, c.stride, c.pad);
        const r = tf.tensor(randn(y.size, 3), y.shape);
        const loss = (xx: tf.Tensor, ww: tf.Tensor) =>
          tf.sum(tf.mul(tf.conv2d(xx as tf.Tensor4D, ww as tf.Tensor4D, c.stride, c.pad), r));
        return wrt === "filter"
          ? tf.grad((ww: tf.Tensor) => loss(x, ww))(w)
          : tf.grad((xx: tf.Tensor) => loss(xx, w))(x);
      };
      await assertClose(await on("wasm", grad), await on("cpu", grad), { atol: 1e-4, rtol: 1e-4 });
    });
  }
}

Deno.test("a small conv net's full gradient on wasm equals cpu", async () => {
  const xData = randn(2 * 8 * 8 * 3, 4);
  const w1 = randn(3 * 3 * 3 * 8, 5);
  const w2 = randn(3 * 3 * 8 * 4, 6);
  const run = () => {
    const params = [tf.tensor4d(w1, [3, 3, 3, 8]), tf.tensor4d(w2, [3, 3, 8, 4])];
    const loss = (a: tf.Tensor4D, b: tf.Tensor4D) => {
      const h = tf.relu(tf.conv2d(tf.tensor4d(xData, [2, 8, 8, 3]), a, 2, "same"));
      return tf.mean(tf.square(tf.conv2d(h, b, 1, "same")));
    };
    const g = tf.grads(loss as (...t: tf.Tensor[]) => tf.Tensor)(params);
    return tf.concat(g.map((t) => t.flatten()));
  };
  await assertClose(await on("wasm", run), await on("cpu", run), { atol: 1e-4, rtol: 1e-4 });
});

const probe = (name: Probe["name"], available: boolean, software = false, gpu?: boolean): Probe => ({
  name,
  available,
  software,
  gpu: name === "tensorflow" && available ? gpu ?? true : undefined,
  detail: available ? "ok" : "missing",
});

Deno.test("chooseBackend: preference order tensorflow > webgpu > wasm > cpu", () => {
  const all = [probe("tensorflow", true), probe("webgpu", true), probe("wasm", true), probe("cpu", true)];
  assertEquals(chooseBackend(all, "auto").name, "tensorflow");
  assertEquals(chooseBackend([probe("tensorflow", false), ...all.slice(1)], "auto").name, "webgpu");
  assertEquals(
    chooseBackend([probe("tensorflow", false), probe("webgpu", false), ...all.slice(2)], "auto").name,
    "wasm",
  );
  assertEquals(chooseBackend([probe("cpu", true)], "auto").name, "cpu");
});

Deno.test("chooseBackend: a CPU-only tensorflow ranks below a real webgpu adapter, above wasm", () => {
  const cpuTf = probe("tensorflow", true, false, false);
  const rest = [probe("webgpu", true), probe("wasm", true), probe("cpu", true)];
  assertEquals(chooseBackend([cpuTf, ...rest], "auto").name, "webgpu");
  assertEquals(
    chooseBackend([cpuTf, probe("webgpu", true, true), ...rest.slice(1)], "auto").name,
    "tensorflow",
  );
  assertEquals(chooseBackend([cpuTf, probe("webgpu", false), ...rest.slice(1)], "auto").name, "tensorflow");
  const asked = chooseBackend([cpuTf, ...rest], "tensorflow");
  assertEquals(asked.name, "tensorflow");
  assertMatch(asked.reason, /host CPU only/);
});

Deno.test("tensorflowProbe: isUsingGpuDevice decides GPU or CPU-only, with the device's name", () => {
  const gpu = tensorflowProbe("@tensorflow/tfjs-node-gpu", true, "NVIDIA H100 80GB HBM3");
  assertEquals(gpu.gpu, true);
  assertMatch(gpu.detail, /on GPU NVIDIA H100/);
  const fallback = tensorflowProbe("@tensorflow/tfjs-node-gpu", false);
  assertEquals(fallback.gpu, false);
  assert(fallback.available, "a CPU-only addon still works, it just is not a GPU");
  assertMatch(fallback.detail, /host CPU only.*CUDA 11\.2.*cuDNN 8\.1/);
  assertEquals(tensorflowProbe("@tensorflow/tfjs-node", undefined).gpu, false, "unknown is not a GPU");
});

Deno.test("allowGpuMemoryGrowth sets TF_FORCE_GPU_ALLOW_GROWTH=true unless the user set it", () => {
  const env = (init: Record<string, string>) => {
    const m = new Map(Object.entries(init));
    return { get: (k: string) => m.get(k), set: (k: string, v: string) => void m.set(k, v), m };
  };
  const unset = env({});
  allowGpuMemoryGrowth(unset);
  assertEquals(unset.m.get("TF_FORCE_GPU_ALLOW_GROWTH"), "true");
  const chosen = env({ TF_FORCE_GPU_ALLOW_GROWTH: "false" });
  allowGpuMemoryGrowth(chosen);
  assertEquals(chosen.m.get("TF_FORCE_GPU_ALLOW_GROWTH"), "false");
});

Deno.test("probeBackends loads the tensorflow addon only for auto or tensorflow", async () => {
  for (const request of ["auto", "tensorflow", "webgpu", "wasm", "cpu"] as BackendRequest[]) {
    let loaded = 0;
    const probes = await probeBackends(request, {
      tensorflow: () => (loaded++, Promise.resolve(probe("tensorflow", true))),
      webgpu: () => Promise.resolve(probe("webgpu", false)),
    });
    const expected = request === "auto" || request === "tensorflow" ? 1 : 0;
    assertEquals(loaded, expected, `addon loads for --backend ${request}`);
    const tfProbe = probes.find((p) => p.name === "tensorflow")!;
    if (!expected) assertMatch(tfProbe.detail, new RegExp(`not loaded \\(--backend ${request}`));
  }
});

Deno.test("checkPresetBackend: a paper preset refuses a CPU backend that auto picked, in one line", () => {
  const none = [
    probe("tensorflow", false),
    probe("webgpu", true, true),
    probe("wasm", true),
    probe("cpu", true),
  ];
  const auto = chooseBackend(none, "auto");
  assertEquals(auto.name, "wasm");
  for (const preset of ["cifar10", "cifar10-deep", "imagenet64", "imagenet64-deep"]) {
    const e = assertThrows(() => checkPresetBackend(preset, auto), Error);
    assert(
      /GPU setup/.test(e.message) && e.message.includes(`${preset} preset`) &&
        /tensorflow: missing; webgpu: ok/.test(e.message) && /--backend wasm/.test(e.message) &&
        !e.message.includes("\n"),
      e.message,
    );
  }
  checkPresetBackend("cifar10", chooseBackend(none, "wasm")); // explicit: the user's choice
  checkPresetBackend("cifar10", chooseBackend(none, "cpu"));
  checkPresetBackend("mnist", auto); // small presets are CPU jobs
  checkPresetBackend("toy2d", auto);
  const cpuTf = [probe("tensorflow", true, false, false), ...none.slice(1)];
  assertEquals(chooseBackend(cpuTf, "auto").name, "tensorflow");
  assertThrows(() => checkPresetBackend("cifar10", chooseBackend(cpuTf, "auto")), Error, "no GPU backend");
  checkPresetBackend("cifar10", chooseBackend([probe("tensorflow", true), ...none.slice(1)], "auto"));
  checkPresetBackend(
    "imagenet64",
    chooseBackend([probe("tensorflow", false), probe("webgpu", true), ...none.slice(2)], "auto"),
  );
});

Deno.test("checkTensorFits: refuses a tensor over the binding or buffer limit, naming both", () => {
  const limits = { maxStorageBufferBindingSize: 128 * 2 ** 20, maxBufferSize: 256 * 2 ** 20 };
  checkTensorFits([32 * 2 ** 20], "float32", limits); // exactly at the binding limit
  assertMatch(
    assertThrows(() => checkTensorFits([32 * 2 ** 20 + 1], "float32", limits), Error).message,
    /\[33554433\].*maxStorageBufferBindingSize/,
  );
  assertMatch(
    assertThrows(() => checkTensorFits([1024, 32, 32, 65], "float32", limits), Error).message,
    /\[1024,32,32,65\].*maxBufferSize/,
  );
  assertThrows(() => checkTensorFits([32 * 2 ** 20 + 1], "int32", limits), Error, "int32 tensor");
});

Deno.test("chooseBackend: a software WebGPU adapter is skipped unless asked for", () => {
  const probes = [
    probe("tensorflow", false),
    probe("webgpu", true, true),
    probe("wasm", true),
    probe("cpu", true),
  ];
  assertEquals(chooseBackend(probes, "auto").name, "wasm");
  const asked = chooseBackend(probes, "webgpu");
  assertEquals(asked.name, "webgpu");
  assertMatch(asked.reason, /software adapter/);
});

Deno.test("chooseBackend: an unusable explicit request is an error that says what to do", () => {
  const probes = [
    probe("tensorflow", false),
    probe("webgpu", false),
    probe("wasm", true),
    probe("cpu", true),
  ];
  assertMatch(
    assertThrows(() => chooseBackend(probes, "tensorflow"), Error).message,
    /requested but is not usable.*deno add npm:@tensorflow\/tfjs-node/,
  );
  assertThrows(() => chooseBackend(probes, "webgpu"), Error, "GPU adapter");
  assertEquals(chooseBackend(probes, "cpu").name, "cpu");
});

Deno.test("backendRequest: --backend flag beats ICT_BACKEND; bad names refused", () => {
  const env = (v?: string) => ({ get: (k: string) => (k === "ICT_BACKEND" ? v : undefined) });
  assertEquals(backendRequest([], env()), "auto");
  assertEquals(backendRequest([], env("CPU")), "cpu");
  assertEquals(backendRequest(["--backend", "wasm"], env("cpu")), "wasm");
  assertEquals(backendRequest(["--steps", "2", "--backend=webgpu"], env("cpu")), "webgpu");
  assertThrows(() => backendRequest(["--backend", "tpu"], env()), Error, 'unknown backend "tpu"');
});

Deno.test("probeBackends here: tensorflow is GPU, CPU-only, absent or broken, said in words; wasm and cpu present", async () => {
  const probes = await probeBackends();
  const tfProbe = probes.find((p) => p.name === "tensorflow")!;
  // Either state is fine (machines differ); what it says must match what it is.
  if (tfProbe.available) assertMatch(tfProbe.detail, tfProbe.gpu ? /on GPU/ : /host CPU only|CPU build/);
  else assertMatch(tfProbe.detail, /not installed|failed to load/);
  assert(probes.find((p) => p.name === "wasm")!.available);
  const choice = await initBackend({ backend: "wasm", quiet: true });
  assertEquals(choice.name, "wasm");
  assertEquals(tf.getBackend(), "wasm");
  assert(tf.getKernel("Conv2DBackpropFilter", "wasm"), "training kernel registered");
  assert(tf.getKernel("Conv2DBackpropInput", "wasm"), "input-gradient kernel registered");
  const limits = await deviceLimits();
  assertEquals(limits.backend, "wasm");
  assertEquals(limits.memoryBytes, 4 * 2 ** 30, "wasm's 32-bit heap");
});
