// Reading a training run back from disk (any run of `runTraining`: a notebook's, a user's GPU run), plotting
// its metrics against step, showing its sample grids with visible captions, and what a run costs in FLOP and
// time. The layout read is the one lib/train/run.ts writes: config.json, metrics.jsonl, samples/step-*.png,
// checkpoints/step-*.safetensors.
import { type Figure, figure, line, showPlot } from "./plot.ts";
import { encodePng, type RawImage, readPng, upscale } from "./images.ts";
import type { TrainConfig } from "./train/config.ts";
import { listCheckpoints, type MetricsLine } from "./train/run.ts";

export interface RunOnDisk {
  dir: string;
  config: TrainConfig;
  /** metrics.jsonl's loss lines, one per logged step, in step order. */
  metrics: MetricsLine[];
  /** metrics.jsonl's evaluation lines (`eval: true`; 1- and 2-step scores of the EMA student), in step order. */
  evals: { step: number; metric: string; "1-step": number; "2-step": number }[];
  /** metrics.jsonl's event lines (rollback, failed checkpoint write, …), in step order. */
  events: { step: number; event: string; message: string }[];
  /** samples/step-*.png, oldest first. */
  samples: { step: number; path: string }[];
  /** checkpoints/step-*.safetensors, oldest first. */
  checkpoints: { step: number; path: string }[];
}

const SAMPLE = /^step-(\d+)\.png$/;

/** The numeric series of metrics.jsonl that can be plotted against step. */
export const RUN_METRICS = ["loss", "n", "lr", "imagesPerSec", "gradNorm"] as const;
export type RunMetric = typeof RUN_METRICS[number];

/** A run directory as written by `runTraining`; the error names the missing file. */
export async function readRun(dir: string): Promise<RunOnDisk> {
  let config: TrainConfig;
  try {
    config = JSON.parse(await Deno.readTextFile(`${dir}/config.json`));
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new Error(
        `${dir}/config.json not found: not a training run directory (deno task train:… --run DIR)`,
      );
    }
    throw e;
  }
  let text = "";
  try {
    text = await Deno.readTextFile(`${dir}/metrics.jsonl`);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  const lines = text.split("\n").filter((l) => l.trim()).map((l, i) => {
    try {
      return JSON.parse(l) as Record<string, unknown> & { step: number };
    } catch {
      throw new Error(`${dir}/metrics.jsonl line ${i + 1} is not JSON: ${l.slice(0, 80)}`);
    }
  }).sort((a, b) => a.step - b.step);
  const metrics = lines.filter((l) => "loss" in l && !("event" in l)) as unknown as MetricsLine[];
  const evals = lines.filter((l) => l.eval === true) as unknown as RunOnDisk["evals"];
  const events = lines.filter((l) => "event" in l) as unknown as RunOnDisk["events"];
  const samples: { step: number; path: string }[] = [];
  try {
    for await (const e of Deno.readDir(`${dir}/samples`)) {
      const m = e.isFile ? SAMPLE.exec(e.name) : null;
      if (m) samples.push({ step: Number(m[1]), path: `${dir}/samples/${e.name}` });
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  samples.sort((a, b) => a.step - b.step);
  const checkpoints = (await listCheckpoints(dir)).reverse();
  return { dir, config, metrics, evals, events, samples, checkpoints };
}

/** `metric` of a run against step, with N(k) on a second axis (log scale for loss and gradient norm). */
export function runMetricFigure(run: RunOnDisk, metric: RunMetric = "loss"): Figure {
  const steps = run.metrics.map((m) => m.step);
  const logY = metric === "loss" || metric === "gradNorm";
  const traces = [line(steps, run.metrics.map((m) => m[metric]), metric, { mode: "lines+markers" })];
  if (metric !== "n") {
    traces.push(line(steps, run.metrics.map((m) => m.n), "N(k)", { yaxis: "y2", line: { dash: "dot" } }));
  }
  const fig = figure(traces, {
    title: `${run.config.preset} run ${run.dir.split("/").pop()}: ${metric} against step`,
    x: "step",
    y: metric,
    log: logY ? "y" : undefined,
  });
  if (metric !== "n") {
    fig.layout!.yaxis2 = { title: { text: "N(k)" }, overlaying: "y", side: "right", type: "log" };
    // Keep the legend off the right axis.
    fig.layout!.legend = { x: 0.02, y: 0.98, bgcolor: "rgba(255,255,255,0.6)" };
  }
  return fig;
}

/** A PNG in the notebook with its caption as a visible markdown line under it (not only in text/plain). */
export async function showCaptionedImage(img: RawImage, caption: string, zoom = 1): Promise<void> {
  if (!("jupyter" in Deno)) {
    throw new Error("showCaptionedImage runs inside the Deno Jupyter kernel; outside it, use writePng");
  }
  const png = await encodePng(zoom > 1 ? upscale(img, zoom) : img);
  let b64 = "";
  for (let i = 0; i < png.length; i += 0x8000) b64 += String.fromCharCode(...png.subarray(i, i + 0x8000));
  await Deno.jupyter.display({ "image/png": btoa(b64), "text/plain": `[image: ${caption}]` }, {
    raw: true,
  });
  await Deno.jupyter.display({ "text/markdown": `*${caption}*`, "text/plain": caption }, { raw: true });
  await new Promise((resolve) => setTimeout(resolve, 100)); // as showPlot: let the messages leave first
}

/**
 * Shows a run in a notebook: `metric` against step (plotly), then up to `maxGrids` of its sample grids spread
 * over the run (first, last and evenly between), each captioned with its step.
 */
export async function showRun(
  dir: string,
  opts: { metric?: RunMetric; maxGrids?: number; zoom?: number } = {},
): Promise<RunOnDisk> {
  const run = await readRun(dir);
  if (run.metrics.length) await showPlot(runMetricFigure(run, opts.metric ?? "loss"));
  else console.log(`${dir}: no metrics.jsonl lines yet`);
  if (run.evals.length) {
    const steps = run.evals.map((e) => e.step);
    await showPlot(figure([
      line(steps, run.evals.map((e) => e["1-step"]), "1-step", { mode: "lines+markers" }),
      line(steps, run.evals.map((e) => e["2-step"]), "2-step", { mode: "lines+markers" }),
    ], {
      title: `${run.evals[0].metric} of the EMA student's samples during training`,
      x: "step",
      y: run.evals[0].metric,
    }));
  }
  for (const e of run.events) console.log(`event at step ${e.step}: ${e.event}: ${e.message}`);
  const picked = spread(run.samples, opts.maxGrids ?? 4);
  for (const s of picked) {
    await showCaptionedImage(
      await readPng(s.path),
      `${run.config.preset}: one-step samples of the EMA student at step ${s.step} (${
        s.path.split("/").slice(-2).join("/")
      })`,
      opts.zoom ?? 1,
    );
  }
  if (!run.samples.length) console.log(`${dir}: no sample grids (samples/step-*.png) yet`);
  return run;
}

/** Up to `k` items spread evenly over `items`, always the first and the last. */
export function spread<T>(items: T[], k: number): T[] {
  if (items.length <= k) return items.slice();
  if (k <= 1) return items.slice(-1);
  const idx = new Set(Array.from({ length: k }, (_, i) => Math.round((i * (items.length - 1)) / (k - 1))));
  return [...idx].map((i) => items[i]);
}

export interface TrainingCost {
  /** FLOP of the whole run: GFLOP per step × 1e9 × steps. */
  totalFlop: number;
  /** Wall time at the measured seconds per image, if given. */
  seconds?: number;
  /** The same in days. */
  days?: number;
  /** Sustained FLOP/s that the measured rate means. */
  flopPerSecond?: number;
}

/**
 * What a run costs: `gflopsPerStep` (the memory plan's count, 4 forward passes per image) times `steps`, and
 * how long that is at a measured rate of `secondsPerImage` (e.g. one timed step at batch 1).
 */
export function trainingCost(
  gflopsPerStep: number,
  steps: number,
  batch: number,
  secondsPerImage?: number,
): TrainingCost {
  const totalFlop = gflopsPerStep * 1e9 * steps;
  if (secondsPerImage === undefined) return { totalFlop };
  const seconds = secondsPerImage * batch * steps;
  return {
    totalFlop,
    seconds,
    days: seconds / 86400,
    flopPerSecond: (gflopsPerStep * 1e9) / (secondsPerImage * batch),
  };
}

/** A record `deno task fid` wrote (data/fid_runs/*.json): what was scored, against what, and with which weights. */
export interface FidRecord {
  file: string;
  samples: string;
  count: number;
  reference: string;
  metric: string;
  value: number;
  caveat?: string;
  weights: string;
  date: string;
  /** True only for an FID with the real Inception weights over ≥ 50,000 samples: the paper's protocol. */
  comparable: boolean;
  inceptionScore?: { mean: number; std: number };
  /** `deno task fid --pr`'s improved precision and recall (k nearest neighbours, counts behind them). */
  precisionRecall?: { precision: number; recall: number; k: number; realCount: number; fakeCount: number };
}

/**
 * Every FID / MNIST-FD record in `dir` (data/fid_runs, or a run directory where `deno task fid --samples
 * RUN/x.npz` writes RUN/x.fid.json), oldest first; other JSON files (config.json, import.json) are skipped, and
 * none are returned when the folder is absent.
 */
export async function readFidRecords(dir: string): Promise<FidRecord[]> {
  const out: FidRecord[] = [];
  try {
    for await (const e of Deno.readDir(dir)) {
      if (!e.isFile || !e.name.endsWith(".json")) continue;
      const r = JSON.parse(await Deno.readTextFile(`${dir}/${e.name}`));
      if (typeof r?.metric !== "string" || typeof r.value !== "number" || typeof r.date !== "string") {
        continue;
      }
      out.push({
        file: `${dir}/${e.name}`,
        samples: r.samples,
        count: r.count,
        reference: r.reference,
        metric: r.metric,
        value: r.value,
        caveat: r.caveat,
        weights: r.weights,
        date: r.date,
        comparable: r.metric === "FID" && !r.caveat && r.count >= 50_000 && !/stand-?in/i.test(r.weights),
        inceptionScore: r.inceptionScore,
        precisionRecall: r.precisionRecall,
      });
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return out.sort((a, b) => a.date.localeCompare(b.date));
}
