// Times the trainer's own iCT step (lib/train/step.ts: teacher forward outside the gradient tape, student
// forward + backward, Pseudo-Huber loss) on the current backend, at the first curriculum stage (N = 11) of the
// CIFAR-10 recipe. Used by `model:summary --step` and `gpu:check`.
import * as tf from "@tensorflow/tfjs";
import { ConsistencyModel } from "./consistency_model.ts";
import type { ModelConfig } from "./models/index.ts";
import { type Network, oneHotLabels } from "./models/network.ts";
import { type Params, trainableParams } from "./nn/params.ts";
import { Rng } from "./rng.ts";
import { preset } from "./train/config.ts";
import type { Optimizer } from "./train/optim.ts";
import { lossAndGrads, planStep } from "./train/step.ts";

/** A model's parameters, allocated once and reused for steps at several batch sizes. */
export interface StepModel {
  model: ConsistencyModel;
  params: Params;
  initSeconds: number;
}

export function allocateModel(net: Network): StepModel {
  const model = new ConsistencyModel(net);
  const t = performance.now();
  const params = model.init(0);
  return { model, params, initSeconds: (performance.now() - t) / 1000 };
}

/**
 * The largest tensor total (TF.js's own count, tf.memory().numBytes) while `f` runs: the engine's tensor
 * tracking is wrapped for the duration, so nothing else (no profiler, no reads) is added to the step.
 */
export async function peakTensorBytes<T>(f: () => Promise<T>): Promise<{ result: T; peakBytes: number }> {
  const engine = tf.engine() as unknown as {
    state: { numBytes: number };
    trackTensor(a: unknown, backend: unknown): void;
  };
  const track = engine.trackTensor;
  let peak = engine.state.numBytes;
  engine.trackTensor = function (a, backend) {
    track.call(this, a, backend);
    peak = Math.max(peak, engine.state.numBytes);
  };
  try {
    return { result: await f(), peakBytes: peak };
  } finally {
    engine.trackTensor = track;
  }
}

export interface StepResult {
  seconds: number;
  loss: number;
  peakBytes: number;
}

/**
 * One iCT step at `batch` (gradients read back, then freed); throws on a non-finite loss. With `optimizer`
 * (built on `m.params`), the step includes its update, as the trainer's does.
 */
export async function timeIctStep(
  m: StepModel,
  config: ModelConfig,
  batch: number,
  seed = 1,
  optimizer?: Optimizer,
): Promise<StepResult> {
  const net = m.model.network;
  const recipe = { ...preset("cifar10"), model: config, batch, microBatch: batch };
  const plan = planStep(recipe, 0, Rng.seeded(seed));
  const x = tf.clipByValue(tf.randomNormal([batch, ...net.sampleShape], 0, 0.5, "float32", seed + 1), -1, 1);
  const labels = net.labelDim
    ? oneHotLabels(Array.from({ length: batch }, (_, i) => i % net.labelDim), net.labelDim)
    : undefined;
  try {
    const t = performance.now();
    const { result, peakBytes } = await peakTensorBytes(async () => {
      const r = await lossAndGrads(m.model, m.params, m.params, recipe, plan, { x, labels });
      if (optimizer) {
        // lossAndGrads read the loss and the gradient norm, so the gradients are done; queued work runs in
        // order, so reading the last parameter waits for the whole update.
        optimizer.update(r.grads);
        await [...trainableParams(m.params)].at(-1)![1].data();
      } else await Promise.all([...r.grads.values()].map((g) => g.data()));
      return r;
    });
    const seconds = (performance.now() - t) / 1000;
    tf.dispose([...result.grads.values()]);
    if (!Number.isFinite(result.loss)) {
      throw new Error(`the training step gave a non-finite loss ${result.loss}`);
    }
    return { seconds, loss: result.loss, peakBytes };
  } finally {
    tf.dispose([x, ...(labels ? [labels] : [])]);
  }
}
