// Evaluation during training (`--eval-every K --eval-n N`): the run's metric on 1- and 2-step samples of the
// EMA student, with fixed noise, against held-out data. Which metric depends on the data and on what is on
// disk; the choice is printed and written with every number:
//   2-D points          sliced W1 (and the energy distance) against held-out points (lib/metrics/distances.ts)
//   images              FID with the real Inception weights (data/inception, `deno task data:inception`)
//   MNIST-sized images  else the MNIST-FD (`deno task data:mnist-classifier`), a proxy NOT comparable to FID
//   --eval-metric fid-standin   the stand-in Inception, only when asked for (its numbers are NOT FIDs)
// When no metric is available the run refuses to start and says what to fetch.
import { checkStop } from "../cli.ts";
import { concat } from "../arrays.ts";
import type { ConsistencyModel } from "../consistency_model.ts";
import type { Dataset } from "../data/dataset.ts";
import { loadDataset } from "../data/index.ts";
import { fileSize } from "../io/fs.ts";
import { energyDistance, slicedWasserstein } from "../metrics/distances.ts";
import {
  arraySource,
  computeFeatures,
  type FeatureNetwork,
  loadInception,
  loadProxy,
} from "../metrics/evaluate.ts";
import { frechetDistance } from "../metrics/fid.ts";
import { inceptionWeightsPath } from "../metrics/inception_weights.ts";
import { CLASSIFIER_DATASETS, type ClassifierDataset, classifierPath } from "../metrics/mnist_classifier.ts";
import type { Params } from "../nn/params.ts";
import { sampleMany, samplingSchedule } from "../sampling.ts";
import type { TrainConfig } from "./config.ts";

/** One evaluation: the metric of 1- and 2-step samples (lower is better), plus any second figure. */
export interface EvalResult {
  metric: string;
  "1-step": number;
  "2-step": number;
  /** Other figures of the same samples (energy distance for 2-D data). */
  extra?: Record<string, number>;
  caveat?: string;
  seconds: number;
}

export interface RunEvaluator {
  /** "sliced W1", "FID", "MNIST-FD", … */
  metric: string;
  /** What the numbers are computed with (weights, held-out data). */
  description: string;
  caveat?: string;
  evaluate(model: ConsistencyModel, ema: Params): Promise<EvalResult>;
  dispose(): void;
}

/** Fixed evaluation noise: the same samples for the same weights, in any invocation. */
const EVAL_SEED_OFFSET = 424242;

async function samples(
  c: TrainConfig,
  model: ConsistencyModel,
  ema: Params,
  steps: number,
  batch: number,
): Promise<Float32Array> {
  const parts: Float32Array[] = [];
  for await (
    const b of sampleMany(model, ema, c.evalN, {
      taus: samplingSchedule(steps, c.sigmaMid),
      batch,
      seed: c.seed + EVAL_SEED_OFFSET,
    })
  ) {
    parts.push(b.x);
    await checkStop("eval");
  }
  return concat(parts, Float32Array);
}

/** The evaluator this run's data and disk allow; the error says what to fetch when there is none. */
export async function createEvaluator(c: TrainConfig, train: Dataset, batch: number): Promise<RunEvaluator> {
  const heldOut = await loadDataset(c.data, "test").catch(() => train);
  const count = Math.min(c.evalN, heldOut.size);
  const reference = heldOut.get(Array.from({ length: count }, (_, i) => i)).x;
  const shape = train.sampleShape;
  const refName = `${count} ${heldOut === train ? "training" : "held-out"} samples of ${heldOut.name}`;
  if (shape.length === 1) {
    if (c.evalMetric !== "auto" && c.evalMetric !== "sliced-w1") {
      throw new Error(
        `--eval-metric ${c.evalMetric} needs images; ${train.name} holds points: use sliced-w1`,
      );
    }
    const dim = shape[0];
    return {
      metric: "sliced W1",
      description: `sliced W1 and energy distance to ${refName}`,
      async evaluate(model, ema) {
        const started = performance.now();
        const out: Record<string, number> = {};
        const extra: Record<string, number> = {};
        for (const steps of [1, 2]) {
          const x = await samples(c, model, ema, steps, 256);
          out[`${steps}-step`] = slicedWasserstein(x, reference, dim, { seed: 1 });
          extra[`energy ${steps}-step`] = energyDistance(x, reference, dim);
        }
        return {
          metric: "sliced W1",
          "1-step": out["1-step"],
          "2-step": out["2-step"],
          extra,
          seconds: (performance.now() - started) / 1000,
        };
      },
      dispose() {},
    };
  }
  const net = await featureNetwork(c, train);
  const refStats = await computeFeatures(net, arraySource("reference", reference, shape), { batch: 50 });
  return {
    metric: net.metric,
    description: `${net.metric} (${net.weights}) against ${refName}`,
    caveat: net.caveat,
    async evaluate(model, ema) {
      const started = performance.now();
      const out: Record<string, number> = {};
      for (const steps of [1, 2]) {
        const x = await samples(c, model, ema, steps, batch);
        const f = await computeFeatures(net, arraySource(`${steps}-step`, x, shape), { batch: 50 });
        out[`${steps}-step`] = frechetDistance(
          f.stats.mean(),
          f.stats.covariance(),
          refStats.stats.mean(),
          refStats.stats.covariance(),
          net.dim,
        );
      }
      return {
        metric: net.metric,
        "1-step": out["1-step"],
        "2-step": out["2-step"],
        caveat: net.caveat,
        seconds: (performance.now() - started) / 1000,
      };
    },
    dispose: () => net.dispose(),
  };
}

async function featureNetwork(c: TrainConfig, train: Dataset): Promise<FeatureNetwork> {
  const m = c.evalMetric;
  if (m === "sliced-w1") {
    throw new Error(`--eval-metric sliced-w1 is for 2-D points; ${train.name} holds images`);
  }
  if (m === "fid-standin") return await loadInception("standin");
  let hasInception = true;
  try {
    inceptionWeightsPath(); // throws when `deno task data:inception` has not been run
  } catch {
    hasInception = false;
  }
  const proxyData = c.data.dataset as ClassifierDataset;
  const mnistSized = CLASSIFIER_DATASETS.includes(proxyData) && train.sampleShape.join() === "28,28,1";
  const hasProxy = mnistSized && fileSize(classifierPath(proxyData)) > 0;
  if ((m === "auto" || m === "fid") && hasInception) return await loadInception("real");
  if ((m === "auto" || m === "mnist-fd") && hasProxy) return await loadProxy(proxyData);
  throw new Error(
    `no evaluation metric for ${train.name} on this machine: ` +
      (m === "mnist-fd" && !mnistSized ? `the MNIST-FD is for MNIST-sized data only; ` : "") +
      `FID needs the real Inception weights (\`deno task data:inception\`)` +
      (mnistSized ? `, the MNIST-FD the classifier (\`deno task data:mnist-classifier\`)` : "") +
      `. Fetch one, or drop --eval-every (--eval-metric fid-standin gives numbers that are NOT FIDs)`,
  );
}
