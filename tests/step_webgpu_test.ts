// The training step on WebGPU equals the same step on cpu: loss, gradient norm and gradients of a tiny NCSN++
// with dropout 0.3 in passes of 2, then one whole trainer step (RAdam, EMA). Skipped where Deno finds no
// WebGPU adapter (`.ci/run` installs Mesa's software Vulkan, so CI has one).
import { assert, assertEquals } from "@std/assert";
import * as tf from "@tensorflow/tfjs";
import { initBackend } from "../lib/backend.ts";
import { ConsistencyModel } from "../lib/consistency_model.ts";
import type { Dataset } from "../lib/data/dataset.ts";
import { Rng } from "../lib/rng.ts";
import { assertClose } from "../lib/testing.ts";
import { preset } from "../lib/train/config.ts";
import { lossAndGrads, planStep } from "../lib/train/step.ts";
import { Trainer } from "../lib/train/trainer.ts";
import { TINY_NCSNPP } from "./reference/tiny_networks.ts";

const adapter = await navigator.gpu?.requestAdapter().catch(() => null);

async function step(backend: "cpu" | "webgpu") {
  await initBackend({ backend, quiet: true });
  const model = ConsistencyModel.fromConfig(TINY_NCSNPP); // dropout 0.3
  const params = model.init(5);
  const c = { ...preset("cifar10"), model: TINY_NCSNPP, batch: 4, microBatch: 2 };
  const plan = planStep(c, 10, Rng.seeded(3));
  const x = tf.tensor(Float32Array.from({ length: 4 * 16 * 16 * 3 }, (_, i) => Math.sin(i * 0.37)), [
    4,
    16,
    16,
    3,
  ]);
  const r = await lossAndGrads(model, params, params, c, plan, { x });
  const grads = new Map<string, Float32Array>();
  for (const [name, g] of r.grads) grads.set(name, (await g.data()) as Float32Array);
  tf.dispose([x, ...r.grads.values(), ...params.values()]);
  return { loss: r.loss, gradNorm: r.gradNorm, grads };
}

async function trainerStep(backend: "cpu" | "webgpu") {
  await initBackend({ backend, quiet: true });
  const data: Dataset = {
    name: "waves",
    sampleShape: [16, 16, 3],
    size: 8,
    labelDim: 0,
    get: (idx) => ({ x: Float32Array.from({ length: idx.length * 768 }, (_, i) => Math.cos(i * 0.11)) }),
  };
  const c = {
    ...preset("cifar10"),
    model: TINY_NCSNPP,
    batch: 4,
    microBatch: 2,
    data: preset("cifar10").data,
  };
  const trainer = Trainer.create(structuredClone(c), data);
  const m = await trainer.trainStep();
  const w = (await trainer.params.get("enc.16x16_conv.weight")!.data()) as Float32Array;
  const ema = (await trainer.ema.get("enc.16x16_conv.weight")!.data()) as Float32Array;
  trainer.dispose();
  return { loss: m.loss, w, ema };
}

Deno.test({
  name: "webgpu: the iCT step (dropout 0.3, passes of 2) and a trainer step equal cpu's",
  ignore: !adapter,
  fn: async () => {
    const saved = tf.getBackend();
    try {
      const [cpu, gpu] = [await step("cpu"), await step("webgpu")];
      await assertClose(gpu.loss, cpu.loss, { rtol: 1e-4, message: "loss" });
      await assertClose(gpu.gradNorm, cpu.gradNorm, { rtol: 1e-4, message: "gradient norm" });
      assertEquals([...gpu.grads.keys()].sort(), [...cpu.grads.keys()].sort());
      for (const [name, g] of cpu.grads) {
        await assertClose(gpu.grads.get(name)!, g, { rtol: 1e-3, atol: 1e-6, message: name });
      }
      assert(cpu.loss > 0 && cpu.gradNorm > 0, "a step that moves");
      const [a, b] = [await trainerStep("cpu"), await trainerStep("webgpu")];
      await assertClose(b.loss, a.loss, { rtol: 1e-4, message: "trainer loss" });
      await assertClose(b.w, a.w, { rtol: 1e-3, atol: 1e-6, message: "weights after RAdam" });
      await assertClose(b.ema, a.ema, { rtol: 1e-3, atol: 1e-6, message: "EMA" });
    } finally {
      if (saved) await tf.setBackend(saved);
    }
  },
});
