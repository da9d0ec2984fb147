// deno task fid:ref --data cifar10 [--data-dir DIR] [--split train|test] [--n N] [--pr] [--out FILE.npz]
// deno task fid --samples DIR|FILE.npz|DATASET:SPLIT --ref DATASET|FILE.npz [--n 50000] [--is] [--pr]
//               [--out FILE.json]
//   both: [--features inception|mnist|fashion-mnist] [--weights real|standin] [--classifier FILE] [--batch B]
//         [--backend NAME]
// Reference statistics (feature mean and covariance, pytorch-fid's .npz layout) and FID / Inception Score of
// samples against them, with the FID Inception-v3 (2015-12-05 weights from `deno task data:inception`). With
// `--weights standin` a synthetic set of weights stands in, and every output says so: those numbers are not FIDs.
// `--features mnist` (or fashion-mnist) uses the small classifier of `deno task data:mnist-classifier`
// instead: the MNIST-FD, a CPU-sized proxy for 28×28 samples that every output labels as not comparable to FID.
// `--pr`: improved precision and recall (Kynkäänniemi et al. 2019, k = 3) on the same features; `fid:ref --pr`
// keeps the reference features themselves (float32 [N, dim], 8 KiB an image at 2048-d) in the .npz for it.
import { initBackend, runsOnCpu } from "../lib/backend.ts";
import { BACKEND_FLAG, parseTaskFlags, runTask } from "../lib/cli.ts";
import { type DataConfig, DATASET_NAMES } from "../lib/data/index.ts";
import { writeFileAtomic } from "../lib/io/fs.ts";
import { readNpz } from "../lib/io/npz.ts";
import { Logger } from "../lib/log.ts";
import {
  computeFeatures,
  datasetSource,
  type FeatureNetwork,
  formatDistance,
  type ImageSource,
  loadInception,
  loadProxy,
  npzSource,
  pngFolderSource,
  weightsId,
  type WeightsKind,
} from "../lib/metrics/evaluate.ts";
import { frechetDistance, inceptionScore, loadStats, saveStats } from "../lib/metrics/fid.ts";
import { CLASSIFIER_DATASETS, type ClassifierDataset } from "../lib/metrics/mnist_classifier.ts";
import { precisionRecall, referenceFeatures, tfGramKernel } from "../lib/metrics/precision_recall.ts";

const REF_DIR = "data/fid_refs";
const RECORD_DIR = "data/fid_runs";
/** A rate with two significant digits below 10/s (the cpu backend runs the Inception at ≈ 0.12 images/s). */
const perSecond = (rate: number) =>
  rate.toFixed(rate < 10 ? Math.max(1, 1 - Math.floor(Math.log10(rate))) : 0);

await runTask(async () => {
  const args = parseTaskFlags({
    usage:
      "deno task fid:ref --data DATASET [--data-dir DIR] [--split train|test] [--n N] [--pr] [--out FILE.npz]\n" +
      "       deno task fid --samples DIR|FILE.npz|DATASET:SPLIT --ref DATASET|FILE.npz [--n N] [--is] [--pr] " +
      "[--out FILE.json]",
    positionals: ["mode"],
    flags: [
      { name: "data", value: "DATASET", help: "fid:ref: the dataset whose statistics to compute" },
      { name: "data-dir", value: "DIR", help: "where the dataset lives" },
      { name: "split", value: "train|test", default: "train", help: "fid:ref: the split" },
      { name: "samples", value: "SOURCE", help: "fid: a sample folder, .npz, or DATASET:SPLIT" },
      { name: "ref", value: "DATASET|FILE", help: "fid: the reference statistics" },
      { name: "n", value: "N", help: "use the first N images" },
      { name: "is", help: "fid: the Inception Score too" },
      {
        name: "pr",
        help: "fid:ref: keep the features for precision/recall; fid: improved precision and recall (k = 3)",
      },
      { name: "out", value: "FILE", help: "where to write (default data/fid_refs/… or next to the samples)" },
      { name: "features", value: "NAME", default: "inception", help: "inception, mnist or fashion-mnist" },
      { name: "weights", value: "real|standin", default: "real", help: "standin: NOT an FID, for tests" },
      { name: "classifier", value: "FILE", help: "the MNIST-FD classifier file" },
      { name: "batch", value: "B", default: "50", help: "images per network call" },
      BACKEND_FLAG,
    ],
  });
  const mode = args.positionals.mode;
  const values = { ...args.values, is: args.flag("is"), pr: args.flag("pr") } as
    & Record<string, string | undefined>
    & { is: boolean; pr: boolean };
  if (values.weights !== "real" && values.weights !== "standin") {
    throw new Error(`--weights takes real or standin, got "${values.weights}"`);
  }
  const features = values.features!;
  if (features !== "inception" && !(CLASSIFIER_DATASETS as readonly string[]).includes(features)) {
    throw new Error(`--features takes inception, ${CLASSIFIER_DATASETS.join(" or ")}, got "${features}"`);
  }
  if (features !== "inception" && values.is) {
    throw new Error("--is (Inception Score) needs --features inception");
  }
  const limit = args.int("n", 1);
  const batch = args.int("batch", 1)!;
  const dataConfig = (name: string): DataConfig => {
    if (!(DATASET_NAMES as readonly string[]).includes(name)) {
      throw new Error(`unknown dataset "${name}": use one of ${DATASET_NAMES.join(", ")}`);
    }
    return { dataset: name as DataConfig["dataset"], dir: values["data-dir"], flip: false };
  };
  /** The cached statistics of a dataset split, by its own name (cifar10-train, cifar10-subset-train, …). */
  const refPath = (sourceName: string, n: number | undefined, id: string) =>
    `${REF_DIR}/${sourceName}${n ? `-n${n}` : ""}-${id}.npz`;

  const backend = await initBackend();
  const log = new Logger();
  const net: FeatureNetwork = features === "inception"
    ? await loadInception(values.weights as WeightsKind)
    : await loadProxy(features as ClassifierDataset, values.classifier);
  const id = weightsId(net.weights);
  if (net.caveat) log.warn(net.caveat);
  const started = performance.now();
  const progress = (done: number, total: number) => {
    const rate = done / ((performance.now() - started) / 1000);
    log.progress(done, total, rate, `${perSecond(rate)} images/s`);
  };

  if (mode === "ref") {
    if (!values.data) throw new Error("fid:ref needs --data DATASET (e.g. --data cifar10)");
    const split = values.split === "test" ? "test" : "train";
    const source = await datasetSource(dataConfig(values.data), split, limit);
    log.info(`reference statistics of ${source.name}: ${source.count} images`);
    const r = await computeFeatures(net, source, { batch, features: values.pr, onProgress: progress });
    log.clearBar();
    const out = values.out ?? refPath(source.name, limit, id);
    await Deno.mkdir(out.slice(0, out.lastIndexOf("/")) || ".", { recursive: true });
    await saveStats(out, { mu: r.stats.mean(), sigma: r.stats.covariance(), features: r.features });
    await writeFileAtomic(
      `${out}.json`,
      JSON.stringify(
        {
          source: source.name,
          count: r.count,
          metric: net.metric,
          weights: net.weights,
          features: r.features ? r.count : 0,
        },
        null,
        2,
      ) +
        "\n",
    );
    console.log(
      `wrote ${out} (${r.count} images, ${perSecond(r.count / r.seconds)} images/s; ${net.weights})`,
    );
    return;
  }

  if (!values.samples || !values.ref) {
    throw new Error("fid needs --samples DIR|FILE.npz|DATASET:SPLIT and --ref");
  }
  let source: ImageSource;
  let defaultOut = `${
    values.samples.replace(/\/$/, "").replace(/\.npz$/, "")
  }.${net.metric.toLowerCase()}.json`;
  if (values.samples.endsWith(".npz")) source = npzSource(values.samples, limit);
  else if (/^[a-z0-9-]+:(train|test)$/.test(values.samples)) {
    const [name, split] = values.samples.split(":");
    source = await datasetSource(dataConfig(name), split as "train" | "test", limit);
    defaultOut = `${RECORD_DIR}/${source.name}.${net.metric.toLowerCase()}.json`;
  } else {
    const npz = `${values.samples}/samples.npz`;
    source = (await Deno.stat(npz).catch(() => null))
      ? npzSource(npz, limit)
      : await pngFolderSource(values.samples, limit);
  }
  const ref = values.ref.endsWith(".npz")
    ? values.ref
    : refPath((await datasetSource(dataConfig(values.ref), "train")).name, undefined, id);
  // The fid:ref command that writes this reference (with `extra` flags).
  const refCommand = (extra: string) =>
    `deno task fid:ref --data ${values.ref}${extra}` +
    `${values["data-dir"] ? ` --data-dir ${values["data-dir"]}` : ""}` +
    `${features !== "inception" ? ` --features ${features}` : ""}` +
    `${features === "inception" && values.weights === "standin" ? " --weights standin" : ""}`;
  if (!(await Deno.stat(ref).catch(() => null))) {
    throw new Error(
      `reference statistics ${ref} not found: compute them with \`${refCommand("")}\` or pass --ref FILE.npz`,
    );
  }
  const refArrays = readNpz(await Deno.readFile(ref), ref); // read once: the statistics and, for --pr, the features
  const refStats = loadStats(refArrays, ref);
  if (refStats.dim !== net.dim) {
    throw new Error(
      `${ref} holds ${refStats.dim}-dimensional statistics; ${net.metric} features have ${net.dim}`,
    );
  }
  if (net.metric === "FID" && source.count < 50_000) {
    log.warn(`${source.count} samples: the paper's FIDs use 50,000; fewer give a higher, not comparable FID`);
  } else if (net.metric !== "FID") {
    log.warn(
      `compare ${net.metric}s only at the same number of samples: the estimate is biased upward at small n`,
    );
  }
  // Checked before any image is scored: the reference features that precision/recall need.
  const refFeatures = values.pr
    ? referenceFeatures(
      refArrays,
      net.dim,
      ref,
      values.ref.endsWith(".npz")
        ? "re-run the `deno task fid:ref` that wrote it with --pr added"
        : `re-run \`${refCommand(" --pr")}\``,
    )
    : undefined;
  log.info(`${net.metric} of ${source.name} (${source.count} images) against ${ref}`);
  const r = await computeFeatures(net, source, {
    batch,
    logits: values.is,
    features: values.pr,
    onProgress: progress,
  });
  log.clearBar();
  const distance = frechetDistance(
    r.stats.mean(),
    r.stats.covariance(),
    refStats.mu,
    refStats.sigma,
    refStats.dim,
  );
  const is = r.logits ? inceptionScore(r.logits, r.count, net.logitsDim, Math.min(10, r.count)) : undefined;
  let pr;
  if (refFeatures) {
    if (refFeatures.count !== r.count) {
      log.warn(
        `precision/recall of ${r.count} generated against ${refFeatures.count} reference features: both ` +
          "depend on the two set sizes; compare them only at the same sizes",
      );
    }
    const gram = tfGramKernel(net.dim, !runsOnCpu(backend));
    const t0 = performance.now();
    const res = precisionRecall(refFeatures.features, refFeatures.count, r.features!, r.count, net.dim, {
      gram,
      onProgress: (done, total) => {
        const rate = done / ((performance.now() - t0) / 1000);
        log.progress(done, total, rate, `${(rate / 1e6).toPrecision(3)}M distances/s`);
      },
    });
    log.clearBar();
    pr = { ...res, method: gram.name, seconds: (performance.now() - t0) / 1000 };
  }
  const record = {
    samples: source.name,
    count: r.count,
    reference: ref,
    metric: net.metric,
    value: distance,
    caveat: net.caveat,
    inceptionScore: is ? { mean: is.mean, std: is.std } : undefined,
    precisionRecall: pr,
    weights: net.weights,
    seconds: r.seconds,
    imagesPerSec: r.count / r.seconds,
    date: new Date().toISOString(),
  };
  const out = values.out ?? defaultOut;
  await Deno.mkdir(out.slice(0, out.lastIndexOf("/")) || ".", { recursive: true });
  await writeFileAtomic(out, JSON.stringify(record, null, 2) + "\n");
  console.log(
    `${formatDistance(net, distance)}${is ? `  IS ${is.mean.toFixed(3)} ± ${is.std.toFixed(3)}` : ""}` +
      `${pr ? `  precision ${pr.precision.toFixed(4)}  recall ${pr.recall.toFixed(4)}` : ""}  ` +
      `(${r.count} images, ${perSecond(record.imagesPerSec)} images/s${
        pr ? `; k = ${pr.k} against ${pr.realCount} reference features, ${pr.seconds.toFixed(1)} s` : ""
      })\nrecord: ${out}`,
  );
}, { stoppable: true });
