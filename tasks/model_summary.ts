// deno task model:summary --model NAME [--batch B] [--json]
// Parameter count, forward GFLOP per image (counted from layer shapes: 2 FLOP per multiply-add of every
// convolution, dense layer, attention product and FIR filter), and memory estimates for a batch. Builds the
// network's description only: nothing is allocated, so the largest configs print instantly.
import { parseArgs } from "node:util";
import { buildNetwork, modelConfig, MODELS } from "../lib/models/index.ts";
import { countParams } from "../lib/nn/params.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    model: { type: "string" },
    batch: { type: "string", default: "1" },
    json: { type: "boolean", default: false },
    help: { type: "boolean", default: false },
  },
});
const usage = `usage: deno task model:summary --model NAME [--batch B] [--json]\nmodels: ${
  Object.keys(MODELS).join(", ")
}`;
if (values.help) {
  console.log(usage);
  Deno.exit(0);
}
if (!values.model) {
  console.error(`--model is required\n${usage}`);
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
const buffers = net.specs.filter((s) => !s.trainable).reduce(
  (n, s) => n + s.shape.reduce((a, b) => a * b, 1),
  0,
);
const GB = 1024 ** 3;
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
  // Activations kept for the backward pass of a batch (float32), a lower bound on what autodiff holds.
  activationGiB: (4 * net.cost.activations * batch) / GB,
  config,
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
  console.log(`  activations, batch ${batch}   ${f(summary.activationGiB)} GiB (estimate)`);
}
