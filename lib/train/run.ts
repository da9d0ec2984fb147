// A training run on disk: the loop around `Trainer` with everything a long job needs.
//
//   RUN/config.json                the resolved config
//   RUN/checkpoints/step-*.safetensors   every `checkpointEvery` steps, on SIGINT/SIGTERM and at the end; last k kept
//   RUN/metrics.jsonl              one line per `logEvery` steps: loss, N(k), lr, images/s, gradient norm
//   RUN/samples/step-*.png         one-step samples of the EMA student every `sampleEvery` steps (fixed noise)
//   RUN/loss.html                  the loss curve (plotly, works offline)
//   RUN/train.log                  what was printed
//
// `--resume` continues from the newest checkpoint with the same step, curriculum, optimizer moments, EMA, RNG
// and data order, so its losses equal those of an uninterrupted run on the same backend.
import { loadDataset } from "../data/index.ts";
import type { Dataset } from "../data/dataset.ts";
import { sampleImage, writePng } from "../images.ts";
import { Logger } from "../log.ts";
import { figure, line, writePlotHtml } from "../plot.ts";
import { sampleMany, samplingSchedule } from "../sampling.ts";
import { concat } from "../arrays.ts";
import { deviceLimits } from "../backend.ts";
import { numel } from "../nn/params.ts";
import { readCheckpointInfo } from "../checkpoint.ts";
import { writeFileAtomic } from "../fs.ts";
import { stepsOf, type TrainConfig } from "./config.ts";
import { NonFiniteLossError, resumedConfig, type StepMetrics, Trainer } from "./trainer.ts";
import { type PlanLimits, planLimits } from "./memory_plan.ts";
import { type Communicator, localCommunicator } from "../distributed/mpi.ts";

export interface RunOptions {
  runDir: string;
  /** Continue the newest checkpoint in runDir (its config wins; only loop settings may change). */
  resume?: boolean;
  /** Stop after this many steps in THIS invocation (as if interrupted); for tests and demos. */
  stopAfter?: number;
  /** Checkpoint and stop on SIGINT/SIGTERM (default true). */
  signals?: boolean;
  quiet?: boolean;
  /** The training data; loaded from config.data when not given. */
  dataset?: Dataset;
  /** Held-out data drawn under 2-D samples in sample plots. */
  reference?: Dataset;
  /** What the memory plan must fit (default: what the current backend reports, `deviceLimits`). */
  limits?: PlanLimits;
  /**
   * The data-parallel ranks (default: one process). Every rank runs this with the same config; each trains on
   * its shard of every batch, and rank 0 alone writes checkpoints, metrics, samples and the log.
   */
  comm?: Communicator;
}

export interface RunResult {
  /** Steps completed in total. */
  step: number;
  stoppedBy: "done" | "signal" | "stopAfter";
  lastCheckpoint: string;
  /** Every step's metrics of this invocation. */
  history: StepMetrics[];
}

export interface MetricsLine {
  step: number;
  loss: number;
  n: number;
  lr: number;
  imagesPerSec: number;
  gradNorm: number;
  time: string;
}

const CKPT = /^step-(\d+)\.safetensors$/;

export function checkpointPath(runDir: string, step: number): string {
  return `${runDir}/checkpoints/step-${String(step).padStart(8, "0")}.safetensors`;
}

/** Checkpoints of a run, newest first. */
export async function listCheckpoints(runDir: string): Promise<{ step: number; path: string }[]> {
  const out: { step: number; path: string }[] = [];
  try {
    for await (const e of Deno.readDir(`${runDir}/checkpoints`)) {
      const m = e.isFile ? CKPT.exec(e.name) : null;
      if (m) out.push({ step: Number(m[1]), path: `${runDir}/checkpoints/${e.name}` });
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return out.sort((a, b) => b.step - a.step);
}

/** The newest checkpoint of a run, or a checkpoint file itself; the error says what to run. */
export async function latestCheckpoint(runOrFile: string): Promise<string> {
  if (runOrFile.endsWith(".safetensors")) return runOrFile;
  const all = await listCheckpoints(runOrFile);
  if (!all.length) {
    throw new Error(
      `no checkpoint in ${runOrFile}/checkpoints: train first (deno task train:toy --run ${runOrFile}) ` +
        `or pass a .safetensors file`,
    );
  }
  return all[0].path;
}

/** Train according to `config` in `opts.runDir` (fresh, or resumed with opts.resume). */
export async function runTraining(config: TrainConfig, opts: RunOptions): Promise<RunResult> {
  const dir = opts.runDir;
  await Deno.mkdir(`${dir}/checkpoints`, { recursive: true });
  await Deno.mkdir(`${dir}/samples`, { recursive: true });
  const comm = opts.comm ?? localCommunicator();
  const writer = comm.rank === 0; // the one rank that writes
  const log = new Logger({ file: writer ? `${dir}/train.log` : undefined, quiet: opts.quiet || !writer });
  if (writer) await removeStaleTemps(`${dir}/checkpoints`);
  const existing = await listCheckpoints(dir);
  if (!opts.resume && existing.length) {
    throw new Error(
      `${dir} already holds checkpoints (newest: step ${
        existing[0].step
      }): add --resume to continue that run, ` +
        `or choose a new --run directory`,
    );
  }
  if (opts.resume && existing.length) {
    // The data to load is the run's own: check the stored config before reading gigabytes of images.
    resumedConfig((await readCheckpointInfo(existing[0].path)).config as TrainConfig, config);
  }
  const dataset = opts.dataset ?? await loadDataset(config.data, "train");
  // 2-D samples are drawn over held-out points, so the plot shows what they should look like.
  const reference = opts.reference ??
    (dataset.sampleShape.length === 1 && !opts.dataset ? await loadDataset(config.data, "test") : undefined);
  const limits = opts.limits ?? planLimits(await deviceLimits());
  const trainer = opts.resume
    ? await resumeTrainer(existing, dataset, config, log, limits, comm)
    : Trainer.create(config, dataset, limits, comm);
  const c = trainer.config;
  const plan = trainer.plan;
  log.info(
    `memory plan: micro-batch ${plan.microBatch} (${plan.passes} pass(es) per step), about ` +
      `${plan.peakGiB.toFixed(2)} GiB at peak; ${plan.notes.join("; ")}`,
  );
  for (const w of plan.warnings) log.warn(w);
  const metricsPath = `${dir}/metrics.jsonl`;
  const metrics = await readMetrics(metricsPath, trainer.step); // lines after the checkpoint are dropped
  if (writer) {
    await writeJson(`${dir}/config.json`, c);
    await Deno.writeTextFile(metricsPath, metrics.map((m) => JSON.stringify(m) + "\n").join(""));
  }
  if (comm.size > 1) {
    log.info(`data parallel: ${comm.size} ranks, ${c.batch / comm.size} samples of each batch per rank`);
  }
  const total = stepsOf(c);
  log.info(
    `${
      opts.resume ? "resuming" : "training"
    } ${c.preset} (${c.model.family}, ${dataset.name}: ${dataset.size} ` +
      `samples) from step ${trainer.step} to ${total}; batch ${c.batch} in passes of ${c.microBatch}, ` +
      `K = ${c.totalIters}; run dir ${dir}`,
  );

  let stop: "signal" | null = null;
  const onSignal = () => {
    if (!stop) log.info("signal received: saving a checkpoint after this step, then stopping");
    stop = "signal";
  };
  const signals = opts.signals !== false ? (["SIGINT", "SIGTERM"] as const) : [];
  for (const s of signals) Deno.addSignalListener(s, onSignal);

  const history: StepMetrics[] = [];
  let window: StepMetrics[] = [];
  let lastCheckpoint = existing[0]?.path ?? "";
  let savedAt = opts.resume ? trainer.step : -1;
  const started = trainer.step;
  let stoppedBy: RunResult["stoppedBy"] = "done";
  const save = async () => {
    lastCheckpoint = checkpointPath(dir, trainer.step);
    savedAt = trainer.step;
    if (!writer) return; // every rank holds the same state: rank 0 writes it
    await trainer.save(lastCheckpoint);
    for (const old of (await listCheckpoints(dir)).slice(c.keepCheckpoints)) await Deno.remove(old.path);
  };
  try {
    while (trainer.step < total) {
      let m: StepMetrics;
      try {
        m = await trainer.trainStep(stop !== null); // the ranks agree on stopping in the step's all-reduce
      } catch (e) {
        if (e instanceof NonFiniteLossError) {
          log.info(
            `stopped: ${e.message}. Nothing was saved after it; the last good checkpoint is ` +
              `${
                lastCheckpoint || "(none yet)"
              }. Resume from it with a lower --optimizer.lr, or look at the data.`,
          );
        }
        throw e;
      }
      history.push(m);
      window.push(m);
      const step = trainer.step;
      if (step % c.logEvery === 0 || step === total) {
        const line = summarize(window, step, c.batch);
        window = [];
        metrics.push(line);
        if (writer) await Deno.writeTextFile(metricsPath, JSON.stringify(line) + "\n", { append: true });
        log.progress(
          step,
          total,
          line.imagesPerSec / c.batch,
          `loss ${line.loss.toPrecision(4)}  N ${line.n}  ${line.imagesPerSec.toFixed(1)} img/s`,
        );
      }
      if (step % c.checkpointEvery === 0 || step === total) await save();
      if (writer && c.sampleEvery > 0 && (step % c.sampleEvery === 0 || step === total)) {
        await writeSamples(
          trainer,
          `${dir}/samples/step-${String(step).padStart(8, "0")}.png`,
          reference,
          log,
        );
        await writePlotHtml(`${dir}/loss.html`, lossFigure(metrics), `${c.preset}: training loss`);
      }
      if (m.stop || (opts.stopAfter !== undefined && step - started >= opts.stopAfter)) {
        stoppedBy = m.stop ? "signal" : "stopAfter";
        if (savedAt !== step) await save();
        break;
      }
    }
  } finally {
    for (const s of signals) Deno.removeSignalListener(s, onSignal);
    log.clearBar();
    trainer.dispose();
  }
  log.info(
    `${stoppedBy === "done" ? "finished" : "stopped"} at step ${trainer.step}; checkpoint ${lastCheckpoint}`,
  );
  return { step: trainer.step, stoppedBy, lastCheckpoint, history };
}

async function resumeTrainer(
  existing: { step: number; path: string }[],
  dataset: Dataset,
  config: TrainConfig,
  log: Logger,
  limits: PlanLimits,
  comm: Communicator,
): Promise<Trainer> {
  if (!existing.length) {
    throw new Error("--resume was given but the run has no checkpoint: start without --resume");
  }
  for (const [i, ck] of existing.entries()) {
    try {
      const t = await Trainer.load(ck.path, dataset, config, limits, comm);
      if (i > 0) log.warn(`resumed from ${ck.path}, the newest readable checkpoint`);
      return t;
    } catch (e) {
      if (i === existing.length - 1) throw e;
      log.warn(`${(e as Error).message}; it is kept as it is, trying the one before it`);
    }
  }
  throw new Error("unreachable");
}

/** Temp files of interrupted checkpoint writes. */
async function removeStaleTemps(dir: string): Promise<void> {
  for await (const e of Deno.readDir(dir)) {
    if (e.isFile && e.name.includes(".safetensors.tmp-")) await Deno.remove(`${dir}/${e.name}`);
  }
}

function summarize(window: StepMetrics[], step: number, batch: number): MetricsLine {
  const mean = (f: (m: StepMetrics) => number) => window.reduce((a, m) => a + f(m), 0) / window.length;
  const last = window[window.length - 1];
  return {
    step,
    loss: mean((m) => m.loss),
    n: last.n,
    lr: last.lr,
    imagesPerSec: (batch * window.length) / window.reduce((a, m) => a + m.seconds, 0),
    gradNorm: mean((m) => m.gradNorm),
    time: new Date().toISOString(),
  };
}

async function readMetrics(path: string, upTo: number): Promise<MetricsLine[]> {
  try {
    const text = await Deno.readTextFile(path);
    return text.split("\n").filter((l) => l.trim()).map((l) => JSON.parse(l) as MetricsLine).filter((m) =>
      m.step <= upTo
    );
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return [];
    throw e;
  }
}

function writeJson(path: string, value: unknown): Promise<void> {
  return writeFileAtomic(path, JSON.stringify(value, null, 2) + "\n");
}

/** The loss curve with N(k) on a second axis. */
export function lossFigure(metrics: MetricsLine[]) {
  const steps = metrics.map((m) => m.step);
  const fig = figure([
    line(steps, metrics.map((m) => m.loss), "loss"),
    line(steps, metrics.map((m) => m.n), "N(k)", { yaxis: "y2", line: { dash: "dot" } }),
  ], { title: "consistency-training loss", x: "step", y: "loss (Eq. 5)", log: "y" });
  fig.layout!.yaxis2 = { title: { text: "N(k)" }, overlaying: "y", side: "right", type: "log" };
  return fig;
}

/**
 * One-step samples of the EMA student with fixed noise: an image grid, or a scatter plot for 2-D data. Images
 * are made in passes of the memory plan's micro-batch, with a progress line when the grid takes a while.
 */
export async function writeSamples(
  trainer: Trainer,
  path: string,
  reference?: Dataset,
  log?: Logger,
): Promise<void> {
  const c = trainer.config;
  const shape = trainer.model.network.sampleShape;
  const n = shape.length === 1 ? c.sampleCount : Math.min(c.sampleCount, 100);
  const batch = shape.length === 1 ? Math.min(n, 256) : Math.min(n, trainer.plan.microBatch);
  const started = performance.now();
  const parts: Float32Array[] = [];
  for await (
    const b of sampleMany(trainer.model, trainer.ema, n, {
      taus: samplingSchedule(1),
      batch,
      seed: c.seed + 12345,
    })
  ) {
    parts.push(b.x);
    const done = parts.reduce((k, p) => k + p.length, 0) / numel(shape);
    const seconds = (performance.now() - started) / 1000;
    if (log && seconds > 3 && done < n) log.progress(done, n, done / seconds, "sample grid");
  }
  log?.clearBar();
  const x = concat(parts, Float32Array);
  const ref = reference && shape.length === 1
    ? reference.get(Array.from({ length: Math.min(reference.size, n) }, (_, i) => i)).x
    : undefined;
  await writePng(path, await sampleImage(x, shape, { reference: ref }));
}
