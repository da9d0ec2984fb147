// The memory plan (lib/train/memory_plan.ts): its arithmetic, its choice of micro-batch under a budget and
// WebGPU's per-tensor limit, overrides and refusals, its calibration against a measured step, and
// `train --plan --json`.
import { assert, assertEquals, assertMatch, assertThrows } from "@std/assert";
import * as tf from "@tensorflow/tfjs";
import { buildNetwork, modelConfig } from "../lib/models/index.ts";
import { numel } from "../lib/nn/params.ts";
import { allocateModel, timeIctStep } from "../lib/step_timing.ts";
import { BYTES_PER_ACTIVATION, planLimits, planMemory } from "../lib/train/memory_plan.ts";
import { TINY_NCSNPP } from "./reference/tiny_networks.ts";

const GiB = 2 ** 30;
const NET = buildNetwork(modelConfig("ncsnpp-cifar10"));
const P = NET.specs.reduce((n, s) => n + numel(s.shape), 0);

Deno.test("plan: peak = parameter copies + micro-batch × bytes per image; FLOPs 4× the forward", () => {
  const limits = planLimits({ backend: "tensorflow", memorySource: "test" }, 1000);
  const plan = planMemory(NET, { batch: 1024, microBatch: 8, teacher: "stopgrad" }, limits);
  assertEquals(plan.fixedBytes, 6 * 4 * P, "student, EMA, 2 moments, gradient, accumulated gradient");
  assertEquals(plan.perSampleBytes, BYTES_PER_ACTIVATION * NET.cost.activations);
  assertEquals(plan.peakBytes, plan.fixedBytes + 8 * plan.perSampleBytes);
  assertEquals(plan.largestTensorBytes, 8 * 4 * NET.cost.largest);
  assertEquals(plan.gflopsPerStep, (4 * NET.cost.flops * 1024) / 1e9);
  assert(Math.abs(plan.gflopsPerStep / 1024 - 171) < 2, `${plan.gflopsPerStep / 1024} GFLOP per image`);
  assertEquals(plan.passes, 128);
  const ct = planMemory(NET, { batch: 1024, microBatch: 8, teacher: "ema" }, limits);
  assertEquals(ct.fixedBytes, 7 * 4 * P, "CT's teacher is one more copy");
});

Deno.test("plan: the largest divisor of the batch that fits the budget, and WebGPU's per-tensor limit", () => {
  const c = { batch: 1024, microBatch: 0, teacher: "stopgrad" as const };
  for (const gib of [16, 40, 80]) {
    const limits = planLimits({ backend: "tensorflow", memorySource: "test" }, gib);
    assertEquals(limits.budgetBytes, 0.9 * gib * GiB);
    const plan = planMemory(NET, c, limits);
    assert(plan.fits && plan.peakBytes <= limits.budgetBytes, `${gib} GiB`);
    assertEquals(1024 % plan.microBatch, 0);
    const next = planMemory(NET, { ...c, microBatch: plan.microBatch * 2 }, limits);
    assert(!next.fits, `${gib} GiB: twice the micro-batch would not fit`);
  }
  // A small binding limit binds before memory does.
  const device = { backend: "webgpu", memoryBytes: 80 * GiB, memorySource: "test", maxBindingBytes: 2 ** 24 };
  const limits = planLimits({ ...device, maxBufferBytes: 2 ** 31 });
  assertEquals(limits.maxTensorBytes, 2 ** 24);
  assertEquals(limits.maxTensorSource, "maxStorageBufferBindingSize");
  const plan = planMemory(NET, c, limits);
  const byMemory = planMemory(NET, c, planLimits({ ...device, maxBindingBytes: undefined }));
  assert(plan.microBatch < byMemory.microBatch, `${plan.microBatch} vs ${byMemory.microBatch}`);
  assert(plan.largestTensorBytes <= 2 ** 24 && plan.largestTensorBytes * 2 > 2 ** 24, `${plan.microBatch}`);
  // The whole batch when it fits.
  const small = planMemory(buildNetwork(modelConfig("mlp-2d")), { ...c, batch: 256 }, limits);
  assertEquals([small.microBatch, small.passes], [256, 1]);
});

Deno.test("plan: --micro-batch is taken as asked, with a warning when it will not fit; refusals say what to do", () => {
  const limits = planLimits({ backend: "wasm", memoryBytes: 4 * GiB, memorySource: "wasm32 heap" });
  const c = { batch: 1024, microBatch: 64, teacher: "stopgrad" as const };
  const plan = planMemory(NET, c, limits);
  assertEquals(plan.microBatch, 64);
  assertEquals(plan.fits, false);
  assertMatch(plan.warnings.join(), /micro-batch 64 needs about .* over the budget/);
  assertMatch(
    assertThrows(
      () => planMemory(buildNetwork(modelConfig("adm-imagenet64")), { ...c, microBatch: 0 }, limits),
      Error,
    )
      .message,
    /one training image of this model needs about .* GiB, over the budget .*--memory-gib/,
  );
  assertThrows(
    () => planLimits({ backend: "cpu", memorySource: "x" }, -1),
    Error,
    "--memory-gib must be > 0",
  );
});

Deno.test("plan: the budget is --memory-gib, else what the device reports, else a stated default", () => {
  const device = { backend: "webgpu", memoryBytes: 24 * GiB, memorySource: "nvidia-smi memory.total" };
  assertMatch(planLimits(device, 10).budgetSource, /--memory-gib 10/);
  assertEquals(planLimits(device).budgetBytes, 0.9 * 24 * GiB);
  assertMatch(planLimits(device).budgetSource, /nvidia-smi/);
  const unknown = planLimits({ backend: "webgpu", memorySource: "WebGPU reports no device memory" });
  assertEquals(unknown.budgetBytes, 0.9 * 16 * GiB);
  assertMatch(unknown.budgetSource, /default for webgpu.*set --memory-gib/);
});

Deno.test("plan: the estimate per image matches a measured step's peak (tiny NCSN++, cpu)", async () => {
  await tf.setBackend("cpu");
  const net = buildNetwork(TINY_NCSNPP);
  const m = allocateModel(net);
  try {
    const [one, three] = [await timeIctStep(m, TINY_NCSNPP, 1), await timeIctStep(m, TINY_NCSNPP, 3)];
    const measuredPerImage = (three.peakBytes - one.peakBytes) / 2;
    const estimated = BYTES_PER_ACTIVATION * net.cost.activations;
    // Calibrated on the paper's networks at 75–77 bytes per counted value, rounded up to 80: the tiny net agrees.
    assert(
      estimated >= measuredPerImage && estimated < 1.5 * measuredPerImage,
      `estimated ${estimated} vs measured ${measuredPerImage} bytes per image`,
    );
  } finally {
    tf.dispose([...m.params.values()]);
  }
});

Deno.test("train --plan --json: one object with the micro-batch, the peak and the GFLOP per step", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-all",
      new URL("../tasks/train.ts", import.meta.url).pathname,
      "--config",
      "cifar10",
      "--plan",
      "--json",
      "--backend",
      "cpu",
      "--memory-gib",
      "40",
    ],
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  assertEquals(out.code, 0, new TextDecoder().decode(out.stderr));
  const plan = JSON.parse(new TextDecoder().decode(out.stdout).trim().split("\n").at(-1)!);
  assertEquals(plan.microBatch, 16);
  assertEquals(plan.config.microBatch, 16);
  assertEquals(plan.config.batch, 1024);
  assert(plan.peakGiB > 20 && plan.peakGiB <= 36, `${plan.peakGiB}`);
  assert(Math.abs(plan.gflopsPerStep / 1024 - 171) < 2);
});
