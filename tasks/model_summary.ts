// deno task model:summary --model NAME [--batch B] [--json] [--step [--backend NAME]]
// Parameter count, forward GFLOP per image (counted from layer shapes: 2 FLOP per multiply-add of every
// convolution, dense layer, attention product and FIR filter), and memory estimates for a batch. Builds the
// network's description only: nothing is allocated, so the largest configs print instantly.
// --step also allocates the model and times one iCT training step at that batch on the chosen backend:
// the trainer's own step (lib/train/step.ts) with the CIFAR-10 recipe at N = 11 (lib/step_timing.ts).
import * as tf from "@tensorflow/tfjs";
import { parseTaskFlags } from "../lib/cli.ts";
import { initBackend } from "../lib/backend.ts";
import { buildNetwork, modelConfig, MODELS } from "../lib/models/index.ts";
import { countParams, numel } from "../lib/nn/params.ts";
import { allocateModel, timeIctStep } from "../lib/step_timing.ts";

const usage = `deno task model:summary --model NAME [--batch B] [--json] [--step [--backend NAME]]`;
let parsed;
try {
  parsed = parseTaskFlags({
    usage,
    flags: [
      { name: "model", value: "NAME", help: `one of ${Object.keys(MODELS).join(", ")}` },
      { name: "batch", value: "B", default: "1", help: "images per batch" },
      { name: "json", help: "one JSON object" },
      { name: "step", help: "also allocate the model and time one iCT step" },
      { name: "backend", value: "NAME", help: "with --step: TF.js backend" },
    ],
  });
} catch (e) {
  console.error(`error: ${(e as Error).message}`);
  Deno.exit(2);
}
const values = {
  ...parsed.values,
  json: parsed.flag("json"),
  step: parsed.flag("step"),
} as Record<string, string> & { json: boolean; step: boolean; model?: string };
if (!values.model) {
  console.error(`--model is required\nusage: ${usage}`);
  Deno.exit(2);
}
const batch = Number(values.batch);
if (!Number.isInteger(batch) || batch < 1) {
  console.error(`--batch must be an integer >= 1, got "${values.batch}"`);
  Deno.exit(2);
}
let config;
try {
  config = modelConfig(values.model);
} catch (e) {
  console.error((e as Error).message);
  Deno.exit(2);
}
const net = buildNetwork(config);
const params = countParams(net.specs);
const buffers = net.specs.filter((s) => !s.trainable).reduce((n, s) => n + numel(s.shape), 0);
const GB = 1024 ** 3;
/** One iCT step at the first curriculum stage (N = 11): its time, the init time, the loss and peak tensor memory. */
async function timeStep() {
  await initBackend({ backend: values.backend as never });
  const m = allocateModel(net);
  const step = await timeIctStep(m, config!, batch);
  return {
    backend: tf.getBackend(),
    initSeconds: m.initSeconds,
    stepSeconds: step.seconds,
    loss: step.loss,
    peakTensorGiB: step.peakBytes / 1024 ** 3,
  };
}

const summary = {
  model: values.model,
  family: config.family,
  params,
  buffers,
  gflopsPerImage: net.cost.flops / 1e9,
  // iCT step per image: student forward + backward (≈ 2× forward) + teacher forward.
  trainGflopsPerImage: (4 * net.cost.flops) / 1e9,
  batch,
  // float32 weights, their gradients and two Adam/RAdam moments, + the EMA copy.
  weightsAndOptimizerGiB: (5 * 4 * params) / GB,
  // Layer outputs of a batch (float32): a lower bound on what autodiff keeps (TF.js keeps every intermediate
  // an op needs for its gradient; one ncsnpp-cifar10 step at batch 1 peaks at 2.2 GiB of tensors).
  activationGiB: (4 * net.cost.activations * batch) / GB,
  config,
  step: values.step ? await timeStep() : undefined,
};
if (values.json) {
  console.log(JSON.stringify(summary, null, 2));
} else {
  const f = (x: number, d = 2) => x.toFixed(d);
  console.log(`${summary.model} (${summary.family})`);
  console.log(
    `  parameters           ${(params / 1e6).toFixed(2)}M (${params.toLocaleString("en-US")})` +
      (buffers ? `, + ${buffers} fixed buffer values` : ""),
  );
  console.log(`  forward              ${f(summary.gflopsPerImage)} GFLOP per image`);
  console.log(
    `  iCT training step    ${f(summary.trainGflopsPerImage)} GFLOP per image (student fwd+bwd, teacher fwd)`,
  );
  console.log(`  weights + grads + optimizer + EMA   ${f(summary.weightsAndOptimizerGiB)} GiB`);
  console.log(
    `  activations, batch ${batch}   ${
      f(summary.activationGiB)
    } GiB (layer outputs only: a lower bound, TF.js keeps more)`,
  );
  const st = summary.step;
  if (st) {
    console.log(
      `  one iCT step, batch ${batch} on ${st.backend}: ${f(st.stepSeconds)} s ` +
        `(init ${f(st.initSeconds)} s, loss ${st.loss.toPrecision(4)}, peak ${
          f(st.peakTensorGiB)
        } GiB in tensors)`,
    );
  }
}
