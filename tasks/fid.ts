// deno task fid:ref --data cifar10 [--data-dir DIR] [--split train|test] [--n N] [--out FILE.npz]
// deno task fid --samples DIR|FILE.npz|DATASET:SPLIT --ref DATASET|FILE.npz [--n 50000] [--is] [--out FILE.json]
//   both: [--weights real|standin] [--batch B] [--backend NAME]
// Reference statistics (pool_3 mean and covariance, pytorch-fid's .npz layout) and FID / Inception Score of
// samples against them, with the FID Inception-v3 (2015-12-05 weights from `deno task data:inception`). With
// `--weights standin` a synthetic set of weights stands in, and every output says so: those numbers are not FIDs.
import { parseArgs } from "node:util";
import { initBackend } from "../lib/backend.ts";
import { runTask } from "../lib/cli.ts";
import { type DataConfig, DATASET_NAMES } from "../lib/data/index.ts";
import { writeFileAtomic } from "../lib/fs.ts";
import { Logger } from "../lib/log.ts";
import {
  computeFeatures,
  datasetSource,
  type ImageSource,
  loadInception,
  npzSource,
  pngFolderSource,
  weightsId,
  type WeightsKind,
} from "../lib/metrics/evaluate.ts";
import { frechetDistance, inceptionScore, loadStats, saveStats } from "../lib/metrics/fid.ts";
import { LOGITS_DIM } from "../lib/metrics/inception.ts";

const REF_DIR = "data/fid_refs";

await runTask(async () => {
  const [mode, ...rest] = Deno.args;
  const { values } = parseArgs({
    args: rest,
    options: {
      data: { type: "string" },
      "data-dir": { type: "string" },
      split: { type: "string", default: "train" },
      samples: { type: "string" },
      ref: { type: "string" },
      n: { type: "string" },
      is: { type: "boolean", default: false },
      out: { type: "string" },
      weights: { type: "string", default: "real" },
      batch: { type: "string", default: "50" },
      backend: { type: "string" },
    },
  });
  if (mode !== "ref" && mode !== "score") {
    throw new Error(`tasks/fid.ts takes "ref" or "score" first, got ${mode}`);
  }
  if (values.weights !== "real" && values.weights !== "standin") {
    throw new Error(`--weights takes real or standin, got "${values.weights}"`);
  }
  const limit = values.n !== undefined ? Number(values.n) : undefined;
  if (limit !== undefined && !(Number.isInteger(limit) && limit > 0)) {
    throw new Error(`--n takes an integer > 0`);
  }
  const batch = Number(values.batch);
  const dataConfig = (name: string): DataConfig => {
    if (!(DATASET_NAMES as readonly string[]).includes(name)) {
      throw new Error(`unknown dataset "${name}": use one of ${DATASET_NAMES.join(", ")}`);
    }
    return { dataset: name as DataConfig["dataset"], dir: values["data-dir"], flip: false };
  };
  const refPath = (name: string, split: string, id: string) =>
    `${REF_DIR}/${name}-${split}${limit ? `-n${limit}` : ""}-${id}.npz`;

  await initBackend();
  const log = new Logger();
  const inception = await loadInception(values.weights as WeightsKind);
  const id = weightsId(inception.weights);
  if (inception.kind === "standin") log.warn(inception.weights);
  const started = performance.now();
  const progress = (done: number, total: number) => {
    const rate = done / ((performance.now() - started) / 1000);
    log.progress(done, total, rate, `${rate.toFixed(1)} images/s`);
  };

  if (mode === "ref") {
    if (!values.data) throw new Error("fid:ref needs --data DATASET (e.g. --data cifar10)");
    const split = values.split === "test" ? "test" : "train";
    const source = await datasetSource(dataConfig(values.data), split, limit);
    log.info(`reference statistics of ${source.name}: ${source.count} images`);
    const r = await computeFeatures(inception.net, source, { batch, onProgress: progress });
    log.clearBar();
    const out = values.out ?? refPath(values.data, split, id);
    await Deno.mkdir(out.slice(0, out.lastIndexOf("/")) || ".", { recursive: true });
    await saveStats(out, { mu: r.stats.mean(), sigma: r.stats.covariance() });
    await writeFileAtomic(
      `${out}.json`,
      JSON.stringify({ source: source.name, count: r.count, weights: inception.weights }, null, 2) + "\n",
    );
    console.log(
      `wrote ${out} (${r.count} images, ${(r.count / r.seconds).toFixed(1)} images/s; ${inception.weights})`,
    );
    return;
  }

  if (!values.samples || !values.ref) {
    throw new Error("fid needs --samples DIR|FILE.npz|DATASET:SPLIT and --ref");
  }
  let source: ImageSource;
  if (values.samples.endsWith(".npz")) source = npzSource(values.samples, limit);
  else if (/^[a-z0-9-]+:(train|test)$/.test(values.samples)) {
    const [name, split] = values.samples.split(":");
    source = await datasetSource(dataConfig(name), split as "train" | "test", limit);
  } else {
    const npz = `${values.samples}/samples.npz`;
    source = (await Deno.stat(npz).catch(() => null))
      ? npzSource(npz, limit)
      : await pngFolderSource(values.samples, limit);
  }
  const ref = values.ref.endsWith(".npz") ? values.ref : refPath(values.ref, "train", id);
  if (!(await Deno.stat(ref).catch(() => null))) {
    throw new Error(
      `reference statistics ${ref} not found: compute them with \`deno task fid:ref --data ${values.ref}` +
        `${values.weights === "standin" ? " --weights standin" : ""}\` or pass --ref FILE.npz`,
    );
  }
  const refStats = loadStats(ref);
  if (source.count < 50_000) {
    log.warn(`${source.count} samples: the paper's FIDs use 50,000; fewer give a higher, not comparable FID`);
  }
  log.info(`FID of ${source.name} (${source.count} images) against ${ref}`);
  const r = await computeFeatures(inception.net, source, { batch, logits: values.is, onProgress: progress });
  log.clearBar();
  const fid = frechetDistance(
    r.stats.mean(),
    r.stats.covariance(),
    refStats.mu,
    refStats.sigma,
    refStats.dim,
  );
  const is = r.logits ? inceptionScore(r.logits, r.count, LOGITS_DIM, Math.min(10, r.count)) : undefined;
  const record = {
    samples: source.name,
    count: r.count,
    reference: ref,
    fid,
    inceptionScore: is ? { mean: is.mean, std: is.std } : undefined,
    weights: inception.weights,
    seconds: r.seconds,
    imagesPerSec: r.count / r.seconds,
    date: new Date().toISOString(),
  };
  const out = values.out ?? `${values.samples.replace(/\/$/, "").replace(/\.npz$/, "")}.fid.json`;
  await writeFileAtomic(out, JSON.stringify(record, null, 2) + "\n");
  const label = inception.kind === "standin" ? " [stand-in weights: NOT an FID]" : "";
  console.log(
    `FID ${fid.toFixed(3)}${label}${is ? `  IS ${is.mean.toFixed(3)} ± ${is.std.toFixed(3)}` : ""}  ` +
      `(${r.count} images, ${record.imagesPerSec.toFixed(1)} images/s)\nrecord: ${out}`,
  );
});
