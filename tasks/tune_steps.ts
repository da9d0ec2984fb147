// deno task tune:steps --run DIR|FILE.safetensors [--steps 2|3|N] [--n N] [--iterations I]
//                      [--metric auto|energy|sliced-w1|fid|fid-standin|mnist-fd] [--lo σ] [--hi σ] [--seed S]
//                      [--batch B] [--data-dir DIR] [--weights ema|params] [--out FILE.json] [--backend NAME]
// The CM paper's multistep timestep search for a trained run: τ_2 of two-step sampling by ternary search over
// ln σ in (σ_min, σ_max) minimising the run's metric, then (greedily, τ_2 fixed) τ_3 for three steps, and so on
// (lib/two_step_search.ts greedyStepSearch). The metric: for 2-D runs the energy distance (or sliced W1) to
// held-out points (lib/metrics/distances.ts); for images FID with the real Inception weights against held-out
// images (lib/metrics), or a labelled stand-in. Every schedule uses the same noise. Prints and writes the τ's,
// their score beside the run's default schedule, and the `deno task sample --taus …` that uses them.
import { concat } from "../lib/arrays.ts";
import { initBackend } from "../lib/backend.ts";
import { BACKEND_FLAG, checkStop, parseTaskFlags, RUN_FLAG, runTask, WEIGHTS_FLAG } from "../lib/cli.ts";
import { loadDataset } from "../lib/data/index.ts";
import { writeFileAtomic } from "../lib/io/fs.ts";
import { Logger } from "../lib/log.ts";
import {
  arraySource,
  computeFeatures,
  type FeatureNetwork,
  loadInception,
  loadProxy,
} from "../lib/metrics/evaluate.ts";
import { frechetDistance } from "../lib/metrics/fid.ts";
import { CLASSIFIER_DATASETS, type ClassifierDataset } from "../lib/metrics/mnist_classifier.ts";
import { sampleAll, samplingSchedule } from "../lib/sampling.ts";
import { SIGMA_MAX } from "../lib/schedules.ts";
import { latestCheckpoint } from "../lib/train/run.ts";
import { loadForSampling } from "../lib/train/trainer.ts";
import { greedyStepSearch, pointDistances } from "../lib/two_step_search.ts";

const METRICS = ["auto", "energy", "sliced-w1", "fid", "fid-standin", "mnist-fd"] as const;
type Metric = typeof METRICS[number];

await runTask(async () => {
  const args = parseTaskFlags({
    usage: "deno task tune:steps --run DIR|FILE.safetensors [--steps 2|3|N] [--n N] [--iterations I] " +
      "[--metric auto|energy|sliced-w1|fid|fid-standin|mnist-fd] [--lo σ] [--hi σ] [--seed S] [--batch B] " +
      "[--data-dir DIR] [--weights ema|params] [--out FILE.json] [--backend NAME]",
    flags: [
      RUN_FLAG,
      { name: "steps", value: "N", default: "2", help: "sampling steps to tune (>= 2): τ_2 … τ_N, greedily" },
      { name: "n", value: "N", default: "1000", help: "samples per scored schedule (and held-out samples)" },
      { name: "iterations", value: "I", default: "10", help: "ternary iterations per σ (2 schedules each)" },
      {
        name: "metric",
        value: "NAME",
        default: "auto",
        help: "auto: energy for 2-D runs, FID (real Inception) for images; also sliced-w1, fid-standin " +
          "(NOT an FID), mnist-fd (a proxy)",
      },
      { name: "lo", value: "σ", default: "0.0021", help: "the lower end of every search (> σ_min)" },
      { name: "hi", value: "σ", default: String(SIGMA_MAX), help: "the upper end of the τ_2 search" },
      { name: "seed", value: "S", default: "0", help: "the sampling noise (the same for every schedule)" },
      { name: "batch", value: "B", default: "250", help: "samples per network call" },
      { name: "data-dir", value: "DIR", help: "where the run's held-out data lives (default: the run's)" },
      WEIGHTS_FLAG,
      { name: "out", value: "FILE.json", help: "the record (default RUN/tune-steps-Nstep.json)" },
      BACKEND_FLAG,
    ],
  });
  const v = args.values;
  if (!v.run) throw new Error("--run DIR|FILE.safetensors is required (see --help)");
  const steps = args.int("steps", 2)!;
  const n = args.int("n", 2)!;
  const iterations = args.int("iterations", 1)!;
  const seed = args.int("seed", 0)!;
  const batch = args.int("batch", 1)!;
  const [lo, hi] = [args.number("lo")!, args.number("hi")!];
  const metricName = v.metric as Metric;
  if (!METRICS.includes(metricName)) {
    throw new Error(`--metric takes one of ${METRICS.join(", ")}, got "${v.metric}"`);
  }
  if (v.weights !== "ema" && v.weights !== "params") {
    throw new Error(`--weights takes ema or params, got "${v.weights}"`);
  }

  await initBackend(); // reads --backend
  const log = new Logger();
  const path = await latestCheckpoint(v.run);
  const { config, model, params, step } = await loadForSampling(path, v.weights);
  const dataCfg = { ...config.data, ...(v["data-dir"] ? { dir: v["data-dir"] } : {}) };
  const heldOut = await loadDataset(dataCfg, "test");
  const count = Math.min(n, heldOut.size);
  const reference = heldOut.get(Array.from({ length: count }, (_, i) => i)).x;
  const shape = model.network.sampleShape;
  // Every batch has its own noise stream (seed, batch index), so that schedules with any number of steps share
  // their first steps' noise: the stages of the greedy search compare like with like.
  const labelDim = Math.max(model.network.labelDim, 1);
  const draw = async (taus: number[], noiseSeed = seed) => {
    const parts: Float32Array[] = [];
    for (let start = 0, b = 0; start < n; start += batch, b++) {
      const count = Math.min(batch, n - start);
      const classes = (i: number) => (start + i) % labelDim;
      parts.push(
        await sampleAll(model, params, count, { taus, batch: count, seed: noiseSeed * 100_003 + b, classes }),
      );
      await checkStop("tune");
    }
    return concat(parts, Float32Array);
  };

  // The metric: lower is better; its description goes with every number.
  let score: (taus: number[], noiseSeed?: number) => Promise<number>;
  let description: string;
  let caveat: string | undefined;
  let net: FeatureNetwork | undefined;
  if (shape.length === 1) {
    const which = metricName === "auto" ? "energy" : metricName;
    if (which !== "energy" && which !== "sliced-w1") {
      throw new Error(
        `--metric ${which} needs images; ${heldOut.name} holds points: use energy or sliced-w1`,
      );
    }
    description =
      `${which === "energy" ? "energy distance" : "sliced W1"} of ${n} samples to ${count} held-out ` +
      `points of ${heldOut.name}`;
    score = async (taus, noiseSeed) => {
      const d = pointDistances(await draw(taus, noiseSeed), reference, shape[0]);
      return which === "energy" ? d.energy : d.slicedW1;
    };
  } else {
    if (metricName === "energy" || metricName === "sliced-w1") {
      throw new Error(
        `--metric ${metricName} is for 2-D points; ${heldOut.name} holds images: use auto or fid`,
      );
    }
    if (metricName === "mnist-fd") {
      if (!CLASSIFIER_DATASETS.includes(config.data.dataset as ClassifierDataset)) {
        throw new Error(`--metric mnist-fd is for MNIST-sized data; this run trains on ${heldOut.name}`);
      }
      net = await loadProxy(config.data.dataset as ClassifierDataset);
    } else if (metricName === "fid-standin") net = await loadInception("standin");
    else {
      net = await loadInception("real").catch((e: Error) => {
        throw new Error(
          `${e.message.replace(/\.?$/, "")}; or pass --metric fid-standin for numbers that are NOT FIDs`,
        );
      });
    }
    const ref = await computeFeatures(net, arraySource("held-out", reference, shape), { batch: 50 });
    const feat = net;
    caveat = net.caveat;
    description = `${net.metric} of ${n} samples against ${count} held-out images of ${heldOut.name} ` +
      `(${net.weights})${caveat && !net.weights.includes("NOT") ? ` [${caveat}]` : ""}`;
    score = async (taus, noiseSeed) => {
      const samples = await draw(taus, noiseSeed);
      const f = await computeFeatures(feat, arraySource("samples", samples, shape), { batch: 50 });
      return frechetDistance(
        f.stats.mean(),
        f.stats.covariance(),
        ref.stats.mean(),
        ref.stats.covariance(),
        feat.dim,
      );
    };
  }
  log.info(`tuning ${steps}-step sampling of ${path} (step ${step}, ${v.weights}); metric: ${description}`);
  const started = performance.now();
  const total = (steps - 1) * (2 * iterations + 1);
  let done = 0;
  const found = await greedyStepSearch(score, steps, {
    lo,
    hi,
    iterations,
    sigmaMax: SIGMA_MAX,
    onEvaluate: (e, stage) => {
      done++;
      log.info(
        `  [${done}/${total}] stage τ_${stage}: τ = [${e.taus.map((t) => +t.toPrecision(4))}]  ${
          e.score.toPrecision(5)
        }`,
      );
    },
  });
  await checkStop("tune");
  // The run's default schedules (lib/sampling.ts samplingSchedule: the preset's σ_mid, then Karras levels).
  const defaults = [];
  for (let k = 2; k <= steps; k++) {
    const t = samplingSchedule(k, config.sigmaMid);
    defaults.push({ steps: k, taus: t, score: await score(t) });
  }
  const oneStep = await score([SIGMA_MAX]);
  // The search saw one noise draw; score the tuned and default schedules again with unseen noise (seed + 1).
  const validation = {
    seed: seed + 1,
    tuned: await score(found.taus, seed + 1),
    default: await score(defaults[defaults.length - 1].taus, seed + 1),
  };
  net?.dispose();
  const taus = found.taus.map((t) => +t.toPrecision(5));
  const record = {
    command: `deno task tune:steps ${Deno.args.join(" ")}`,
    date: new Date().toISOString(),
    checkpoint: path,
    step,
    weights: v.weights,
    metric: description,
    caveat,
    search: "greedy ternary search over ln σ (CM paper; lib/two_step_search.ts greedyStepSearch)",
    steps,
    n,
    seed,
    iterations,
    range: [lo, hi],
    taus,
    score: found.score,
    defaults,
    validation,
    oneStep: { taus: [SIGMA_MAX], score: oneStep },
    stages: found.stages,
    seconds: (performance.now() - started) / 1000,
  };
  const out = v.out ?? `${v.run.endsWith(".safetensors") ? "." : v.run}/tune-steps-${steps}step.json`;
  await writeFileAtomic(out, JSON.stringify(record, null, 2) + "\n");
  const fmt = (x: number) => x.toPrecision(5);
  console.log(
    [
      `metric: ${description} (lower is better)`,
      ...found.stages.map((st) =>
        `tuned   ${st.steps}-step τ = [${taus.slice(0, st.steps)}]: ${fmt(st.score)}` +
        (st.steps === 3 ? " (τ_2 fixed by the first stage)" : "") +
        (st.steps > 3 ? ` (τ_2 … τ_${st.steps - 1} fixed by the earlier stages)` : "")
      ),
      ...defaults.map((d) =>
        `default ${d.steps}-step τ = [${d.taus.map((t) => +t.toPrecision(5))}]: ${fmt(d.score)}`
      ),
      `1-step  τ = [${SIGMA_MAX}]: ${fmt(oneStep)}`,
      `with unseen noise (seed ${validation.seed}): tuned ${fmt(validation.tuned)}, default ${
        fmt(validation.default)
      }`,
      `${found.stages.reduce((s, x) => s + x.evaluations.length, 0)} schedules scored in ` +
      `${record.seconds.toFixed(1)} s; wrote ${out}`,
      `sample with them: deno task sample --run ${v.run} --taus ${taus.join(",")}`,
    ].join("\n"),
  );
}, { stoppable: true });
