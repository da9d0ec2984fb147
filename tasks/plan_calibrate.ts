// deno task plan:calibrate [--backend NAME] [--runs '[["ncsnpp-small-32",[1,2,4,8]],["ncsnpp-cifar10",[1,2]]]']
// Measures the peak tensor memory of one real iCT step (lib/step_timing.ts: TF.js's own count) at several
// micro-batches, and sets it beside the memory plan's estimate for the same step. The step holds the
// parameters and the gradient; a training run also holds the EMA and Adam's two moments, which the plan adds.
import * as tf from "@tensorflow/tfjs";
import { initBackend } from "../lib/backend.ts";
import { BACKEND_FLAG, parseTaskFlags, runTask } from "../lib/cli.ts";
import { buildNetwork, modelConfig } from "../lib/models/index.ts";
import { numel } from "../lib/nn/params.ts";
import { allocateModel, timeIctStep } from "../lib/step_timing.ts";
import { BYTES_PER_ACTIVATION } from "../lib/train/memory_plan.ts";

await runTask(async () => {
  const args = parseTaskFlags({
    usage: `deno task plan:calibrate [--backend NAME] [--runs '[["ncsnpp-small-32",[1,2,4,8]]]']`,
    flags: [
      BACKEND_FLAG,
      {
        name: "runs",
        value: "JSON",
        default: '[["ncsnpp-small-32",[1,2,4,8]],["ncsnpp-small-28",[1,4]],["ncsnpp-cifar10",[1,2]]]',
        help: "models and the micro-batches to measure",
      },
    ],
  });
  let runs: [string, number[]][];
  try {
    runs = JSON.parse(args.values.runs!);
  } catch {
    throw new Error(`--runs takes JSON like '[["ncsnpp-small-32",[1,2]]]', got ${args.values.runs}`);
  }
  await initBackend({ backend: args.values.backend as never });
  const GiB = 2 ** 30;
  console.log(`| model | micro-batch | measured peak | plan's estimate of this step | estimate / measured |`);
  console.log(`| --- | --- | --- | --- | --- |`);
  for (const [name, microBatches] of runs) {
    const config = modelConfig(name);
    const net = buildNetwork(config);
    const paramBytes = 4 * net.specs.reduce((n, s) => n + numel(s.shape), 0);
    const m = allocateModel(net);
    try {
      const peaks: number[] = [];
      for (const mb of microBatches) {
        const { peakBytes } = await timeIctStep(m, config, mb);
        peaks.push(peakBytes);
        // This step's share of the plan: parameters, gradient and one more parameter-sized sum (3 copies).
        const estimate = 3 * paramBytes + mb * BYTES_PER_ACTIVATION * net.cost.activations;
        console.log(
          `| ${name} | ${mb} | ${(peakBytes / GiB).toFixed(3)} GiB | ${(estimate / GiB).toFixed(3)} GiB | ` +
            `${(estimate / peakBytes).toFixed(2)} |`,
        );
      }
      if (peaks.length > 1) {
        const [m0, m1] = [microBatches[0], microBatches.at(-1)!];
        const slope = (peaks.at(-1)! - peaks[0]) / (m1 - m0);
        console.log(
          `|  | per image: ${(slope / net.cost.activations).toFixed(1)} bytes per counted activation ` +
            `(plan: ${BYTES_PER_ACTIVATION}) |  |  |  |`,
        );
      }
    } finally {
      tf.dispose([...m.params.values()]);
    }
  }
});
