import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { backendRequest, chooseBackend, initBackend, type Probe, probeBackends } from "../lib/backend.ts";
import { registerWasmTrainingKernels } from "../lib/wasm_kernels.ts";
import { Rng } from "../lib/rng.ts";
import { assertClose } from "../lib/testing.ts";

function randn(n: number, seed: number): Float32Array {
  const r = Rng.seeded(seed);
  return Float32Array.from({ length: n }, () => r.normal());
}

/** Run f on a backend with fresh tensors built from the same host data; return the host result. */
async function on(backend: string, f: () => tf.Tensor): Promise<Float32Array> {
  assert.ok(await tf.setBackend(backend), `could not switch to ${backend}`);
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

const probe = (name: Probe["name"], available: boolean, software = false): Probe => ({
  name,
  available,
  software,
  detail: available ? "ok" : "missing",
});

Deno.test("chooseBackend: preference order tensorflow > webgpu > wasm > cpu", () => {
  const all = [probe("tensorflow", true), probe("webgpu", true), probe("wasm", true), probe("cpu", true)];
  assert.equal(chooseBackend(all, "auto").name, "tensorflow");
  assert.equal(chooseBackend([probe("tensorflow", false), ...all.slice(1)], "auto").name, "webgpu");
  assert.equal(
    chooseBackend([probe("tensorflow", false), probe("webgpu", false), ...all.slice(2)], "auto").name,
    "wasm",
  );
  assert.equal(chooseBackend([probe("cpu", true)], "auto").name, "cpu");
});

Deno.test("chooseBackend: a software WebGPU adapter is skipped unless asked for", () => {
  const probes = [
    probe("tensorflow", false),
    probe("webgpu", true, true),
    probe("wasm", true),
    probe("cpu", true),
  ];
  assert.equal(chooseBackend(probes, "auto").name, "wasm");
  const asked = chooseBackend(probes, "webgpu");
  assert.equal(asked.name, "webgpu");
  assert.match(asked.reason, /software adapter/);
});

Deno.test("chooseBackend: an unusable explicit request is an error that says what to do", () => {
  const probes = [
    probe("tensorflow", false),
    probe("webgpu", false),
    probe("wasm", true),
    probe("cpu", true),
  ];
  assert.throws(
    () => chooseBackend(probes, "tensorflow"),
    /requested but is not usable.*deno add npm:@tensorflow\/tfjs-node/,
  );
  assert.throws(() => chooseBackend(probes, "webgpu"), /GPU adapter/);
  assert.equal(chooseBackend(probes, "cpu").name, "cpu");
});

Deno.test("backendRequest: --backend flag beats ICT_BACKEND; bad names refused", () => {
  const env = (v?: string) => ({ get: (k: string) => (k === "ICT_BACKEND" ? v : undefined) });
  assert.equal(backendRequest([], env()), "auto");
  assert.equal(backendRequest([], env("CPU")), "cpu");
  assert.equal(backendRequest(["--backend", "wasm"], env("cpu")), "wasm");
  assert.equal(backendRequest(["--steps", "2", "--backend=webgpu"], env("cpu")), "webgpu");
  assert.throws(() => backendRequest(["--backend", "tpu"], env()), /unknown backend "tpu"/);
});

Deno.test("probeBackends here: tensorflow reported not installed without importing; wasm and cpu present", async () => {
  const probes = await probeBackends();
  const tfProbe = probes.find((p) => p.name === "tensorflow")!;
  assert.equal(tfProbe.available, false);
  assert.match(tfProbe.detail, /not installed/);
  assert.ok(probes.find((p) => p.name === "wasm")!.available);
  const choice = await initBackend({ backend: "wasm", quiet: true });
  assert.equal(choice.name, "wasm");
  assert.equal(tf.getBackend(), "wasm");
  assert.ok(tf.getKernel("Conv2DBackpropFilter", "wasm"), "training kernel registered");
  assert.ok(tf.getKernel("Conv2DBackpropInput", "wasm"), "input-gradient kernel registered");
});
