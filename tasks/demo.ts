// deno task demo [--config toy2d|mnist] [--run DIR] [--eval-n N] [--classifier FILE] [--SETTING VALUE …]
// The kit's main command on a laptop: trains iCT from scratch on the CPU in a few minutes, then measures how
// close one-step (and two-step) samples are to held-out data — sliced Wasserstein and energy distance, and on
// MNIST / Fashion-MNIST the MNIST-FD (a small-classifier proxy, not comparable to FID) — against the same
// figures for the untrained model, and prints where the samples, loss curve and report are.
import { initBackend } from "../lib/backend.ts";
import { ConsistencyModel } from "../lib/consistency_model.ts";
import { loadDataset } from "../lib/data/index.ts";
import { sampleImage, writePng } from "../lib/images.ts";
import { energyDistance, slicedWasserstein } from "../lib/metrics/distances.ts";
import { arraySource, type FeatureNetwork, frechetBetween, loadProxy } from "../lib/metrics/evaluate.ts";
import {
  CLASSIFIER_DATASETS,
  type ClassifierDataset,
  ensureClassifier,
} from "../lib/metrics/mnist_classifier.ts";
import { disposeParams, type Params } from "../lib/nn/params.ts";
import { formatDuration, Logger } from "../lib/log.ts";
import { sampleAll, samplingSchedule } from "../lib/sampling.ts";
import { applyOverrides, preset } from "../lib/train/config.ts";
import { runTraining } from "../lib/train/run.ts";
import { loadForSampling } from "../lib/train/trainer.ts";
import { BACKEND_FLAG, parseTaskFlags, runTask } from "../lib/cli.ts";

await runTask(async () => {
  /**
   * The demo's run: the toy2d preset, shortened to what 2 cores train in under 3 minutes (measured: 3000 steps
   * of batch 256 in 2m32s on wasm). Other presets run with their own settings (`--config mnist`), which on a
   * CPU takes far longer than a demo should.
   */
  const DEMO_DEFAULTS: Record<string, [string, string][]> = {
    toy2d: [["total-iters", "3000"], ["checkpoint-every", "1000"], ["sample-every", "1000"], [
      "log-every",
      "100",
    ]],
  };

  const args = parseTaskFlags({
    usage:
      "deno task demo [--config toy2d|mnist] [--run DIR] [--eval-n N] [--classifier FILE] [--SETTING VALUE …]",
    flags: [
      {
        name: "config",
        value: "NAME",
        default: "toy2d",
        help: "the preset: toy2d (minutes on a CPU) or mnist",
      },
      { name: "run", value: "DIR", help: "the run directory, emptied first (default runs/demo-<preset>)" },
      BACKEND_FLAG,
      {
        name: "eval-n",
        value: "N",
        help: "samples per quality measurement (default 2000 for 2-D, else 1000)",
      },
      {
        name: "classifier",
        value: "FILE",
        help: "the MNIST-FD classifier (default: trained once and cached)",
      },
    ],
    settings: "any training setting, as for deno task train (e.g. --total-iters 500)",
  });
  const get = (k: string) => args.values[k];
  const name = get("config")!;
  const config = preset(name);
  applyOverrides(config, [...(DEMO_DEFAULTS[name] ?? []), ...args.settings]);
  const runDir = get("run") ?? `runs/demo-${name}`;
  const evalN = args.int("eval-n", 1) ?? (config.model.family === "mlp" ? 2000 : 1000);
  const log = new Logger();
  const started = performance.now();

  await initBackend();
  await Deno.remove(runDir, { recursive: true }).catch(() => {}); // the demo always starts fresh
  const train = await loadDataset(config.data, "train");
  const heldOut = await loadDataset(config.data, "test");
  const refCount = Math.min(evalN, heldOut.size);
  const reference = heldOut.get(Array.from({ length: refCount }, (_, i) => i)).x;
  const dim = reference.length / refCount;

  // MNIST-sized data: the MNIST-FD too (the classifier is trained once and cached on first use).
  let proxy: FeatureNetwork | undefined;
  const proxyData = config.data.dataset as ClassifierDataset;
  if (CLASSIFIER_DATASETS.includes(proxyData)) {
    const c = await ensureClassifier(proxyData, { path: get("classifier"), dataDir: config.data.dir });
    if (c.trained) log.info(`trained the ${proxyData} classifier for the MNIST-FD once: ${c.path}`);
    proxy = await loadProxy(proxyData, c.path);
    log.warn(proxy.caveat!);
  }
  const sampleShape = train.sampleShape;

  /** One-step and two-step sample quality against held-out data. */
  async function quality(model: ConsistencyModel, params: Params, tag: string) {
    const out: Record<string, { slicedWasserstein: number; energyDistance: number; fd?: number }> = {};
    for (const steps of [1, 2]) {
      const x = await sampleAll(model, params, evalN, {
        taus: samplingSchedule(steps, config.sigmaMid),
        batch: 250,
        seed: 777,
      });
      out[`${steps}-step`] = {
        slicedWasserstein: slicedWasserstein(x, reference, dim, { seed: 1 }),
        energyDistance: energyDistance(x, reference, dim),
        fd: proxy &&
          await frechetBetween(
            proxy,
            arraySource(tag, x, sampleShape),
            arraySource("held-out", reference, sampleShape),
          ),
      };
      if (steps === 1) {
        await writePng(
          `${runDir}/${tag}-1step.png`,
          await sampleImage(x, model.network.sampleShape, { reference }),
        );
      }
    }
    return out;
  }

  await Deno.mkdir(runDir, { recursive: true });
  log.info(
    `demo: iCT on ${train.name} (${train.size} samples), ${config.totalIters} steps of batch ${config.batch}`,
  );
  const untrainedModel = ConsistencyModel.fromConfig(config.model, { sigmaData: config.sigmaData });
  const untrainedParams = untrainedModel.init(config.seed); // exactly the trainer's initialization
  const before = await quality(untrainedModel, untrainedParams, "untrained");
  disposeParams(untrainedParams);

  const trainStart = performance.now();
  const result = await runTraining(config, { runDir, dataset: train, reference: heldOut });
  const trainSeconds = (performance.now() - trainStart) / 1000;
  const trained = await loadForSampling(result.lastCheckpoint, "ema");
  const after = await quality(trained.model, trained.params, "trained");

  const report = {
    config: name,
    dataset: train.name,
    steps: result.step,
    batch: config.batch,
    trainSeconds,
    totalSeconds: (performance.now() - started) / 1000,
    evalSamples: evalN,
    heldOut: `${heldOut.name} (${refCount} samples)`,
    fdMetric: proxy && { metric: proxy.metric, weights: proxy.weights, caveat: proxy.caveat },
    untrained: before,
    trained: after,
  };
  await Deno.writeTextFile(`${runDir}/report.json`, JSON.stringify(report, null, 2) + "\n");

  const row = (label: string, q: typeof before, k: string) =>
    `  ${label.padEnd(10)} ${k}: sliced W1 ${q[k].slicedWasserstein.toFixed(4).padStart(8)}   energy ${
      q[k].energyDistance.toFixed(4).padStart(8)
    }${proxy ? `   ${proxy.metric} ${q[k].fd!.toFixed(3).padStart(9)}` : ""}`;
  console.log(
    [
      ``,
      `iCT demo on ${train.name}: ${result.step} steps in ${formatDuration(trainSeconds)} ` +
      `(total ${
        formatDuration(report.totalSeconds)
      }), distance to ${refCount} held-out samples (lower is better):`,
      row("untrained", before, "1-step"),
      row("trained", after, "1-step"),
      row("untrained", before, "2-step"),
      row("trained", after, "2-step"),
      ...(proxy ? [`  (${proxy.caveat}; ${proxy.weights})`] : []),
      ``,
      `samples:     ${runDir}/trained-1step.png (untrained: ${runDir}/untrained-1step.png)`,
      `loss curve:  ${runDir}/loss.html      metrics: ${runDir}/metrics.jsonl`,
      `report:      ${runDir}/report.json    checkpoint: ${result.lastCheckpoint}`,
      `more:        deno task sample --run ${runDir} --steps 2 --n 1000`,
    ].join("\n"),
  );
}, { stoppable: true });
