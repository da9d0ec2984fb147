// deno task bench: the small NCSN++ (ncsnpp-small-32) at batch 8 on the chosen backend — a forward pass and
// one iCT-style step (student forward + backward, teacher forward outside the gradient tape, same dropout masks).
import * as tf from "@tensorflow/tfjs";
import { initBackend } from "../lib/backend.ts";
import { ConsistencyModel } from "../lib/consistency_model.ts";
import { ctLoss, ictMetric, teacherOutput } from "../lib/losses.ts";
import { modelConfig } from "../lib/models/index.ts";
import { EVAL } from "../lib/nn/params.ts";

await initBackend({ quiet: true });
const model = ConsistencyModel.fromConfig(modelConfig("ncsnpp-small-32"));
const params = model.init(0);
const vars = [...params.values()].filter((v): v is tf.Variable => v instanceof tf.Variable);
const batch = 8;
const x = tf.randomUniform([batch, 32, 32, 3], -1, 1, "float32", 1);
const z = tf.randomNormal([batch, 32, 32, 3], 0, 1, "float32", 2);
const sigmaLo = new Float64Array(batch).fill(0.5);
const sigmaHi = new Float64Array(batch).fill(0.7);
const lambda = new Float64Array(batch).fill(5);
const metric = ictMetric(32 * 32 * 3);
const group = `ncsnpp-small-32 (1.78M parameters), batch ${batch}, on ${tf.getBackend()}`;

Deno.bench("forward", { group, baseline: true, n: 10, warmup: 2 }, async () => {
  const y = model.apply(params, x, sigmaHi, EVAL);
  await y.data();
  y.dispose();
});
let seed = 0;
Deno.bench("iCT step: forward + backward + teacher", { group, n: 5, warmup: 1 }, async () => {
  const ctx = { training: true, dropoutSeed: ++seed };
  const teacher = teacherOutput(model.fn(params, ctx), x, z, sigmaLo); // outside the tape
  const { value, grads } = tf.variableGrads(() =>
    ctLoss({
      student: model.fn(params, ctx),
      teacher,
      x,
      z,
      sigmaLo,
      sigmaHi,
      lambda,
      metric,
    }), vars);
  await value.data();
  tf.dispose([teacher, value, ...Object.values(grads)]);
});
