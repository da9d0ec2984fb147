// A training run on disk: the loop around `Trainer` with everything a long job needs.
//
//   RUN/config.json                the resolved config
//   RUN/checkpoints/step-*.safetensors   every `checkpointEvery` steps, on SIGINT/SIGTERM and at the end; last k kept
//   RUN/metrics.jsonl              one line per `logEvery` steps: loss, N(k), lr, images/s, gradient norm
//   RUN/samples/step-*.png         one-step samples of the EMA student every `sampleEvery` steps (fixed noise)
//   RUN/loss.html                  the loss curve (plotly, works offline)
//   RUN/train.log                  what was printed
//   RUN/init.json                  with `init` (--init): the checkpoint whose weights the run started from
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
import { readCheckpointInfo } from "../io/checkpoint.ts";
import { writeFileAtomic } from "../io/fs.ts";
import { stepsOf, type TrainConfig } from "./config.ts";
import {
  checkInitNetwork,
  DivergenceError,
  loadInitWeights,
  resumedConfig,
  type StepMetrics,
  Trainer,
} from "./trainer.ts";
import { checkStop, handleSignals, onStop, StopRequested, stopRequested, yieldToEvents } from "../cli.ts";
import { createEvaluator, type EvalResult } from "./evaluate.ts";
import { acquireRunLock } from "./lock.ts";
import { type PlanLimits, planLimits } from "./memory_plan.ts";
import { type Communicator, localCommunicator } from "../distributed/mpi.ts";

export interface RunOptions {
  runDir: string;
  /** Continue the newest checkpoint in runDir (its config wins; only loop settings may change). */
  resume?: boolean;
  /**
   * Start a new run from another run's weights (`--init`): a run directory (its newest checkpoint) or a
   * checkpoint file, and which of its weights (the EMA by default). Student, EMA and CT's teacher all start
   * from them; the optimizer is fresh and the step 0. The network must be the source's (dropout may differ).
   */
  init?: { from: string; weights?: "ema" | "params" };
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
  // One process writes into a run directory at a time: rank 0 holds the lock (a crashed run's is taken over).
  const lock = comm.rank === 0 ? await acquireRunLock(dir) : null;
  try {
    return await train(config, opts, comm);
  } finally {
    await lock?.release();
  }
}

/** A JSON line of metrics.jsonl: a loss line, an evaluation, or an event (rollback, failed write, …). */
type JsonLine = MetricsLine | EvalLine | EventLine;

export interface EvalLine extends EvalResult {
  step: number;
  eval: true;
  /** This evaluation is the best so far: checkpoints/best.safetensors holds its weights. */
  best: boolean;
  time: string;
}

export interface EventLine {
  step: number;
  event: "divergence" | "rollback" | "diverged" | "checkpoint-failed" | "checkpoint-recovered";
  message: string;
  time: string;
  [key: string]: unknown;
}

const isLoss = (l: JsonLine): l is MetricsLine => "loss" in l && !("event" in l);
const isEval = (l: JsonLine): l is EvalLine => "eval" in l;

async function train(config: TrainConfig, opts: RunOptions, comm: Communicator): Promise<RunResult> {
  const dir = opts.runDir;
  const writer = comm.rank === 0; // the one rank that writes
  const log = new Logger({ file: writer ? `${dir}/train.log` : undefined, quiet: opts.quiet || !writer });
  if (writer) await removeStaleTemps(`${dir}/checkpoints`);
  const existing = await listCheckpoints(dir);
  if (opts.resume && opts.init) {
    throw new Error(
      "--init starts a new run from another run's weights and --resume continues this one: give one of them",
    );
  }
  if (!opts.resume && existing.length) {
    throw new Error(
      `${dir} already holds checkpoints (newest: step ${existing[0].step}): ` +
        (opts.init
          ? "--init starts a new run: choose a new --run directory"
          : "add --resume to continue that run, or choose a new --run directory"),
    );
  }
  // --init: the source's network is checked from its header before any data is read.
  const initPath = opts.init ? await latestCheckpoint(opts.init.from) : "";
  if (opts.init) {
    checkInitNetwork(initPath, config, (await readCheckpointInfo(initPath)).config as TrainConfig);
  }
  const initWeights = opts.init?.weights ?? "ema";
  if (opts.resume && existing.length) {
    // The data to load is the run's own: check the stored config before reading gigabytes of images.
    resumedConfig((await readCheckpointInfo(existing[0].path)).config as TrainConfig, config);
  }
  const dataset = opts.dataset ?? await loadDataset(config.data, "train");
  // 2-D samples are drawn over held-out points, so the plot shows what they should look like.
  const reference = opts.reference ??
    (dataset.sampleShape.length === 1 && !opts.dataset ? await loadDataset(config.data, "test") : undefined);
  const limits = opts.limits ?? planLimits(await deviceLimits());
  /** A new run's trainer: from config.seed, or from the --init weights (read again on a rollback). */
  const fresh = async (cfg: TrainConfig) => {
    if (!opts.init) return Trainer.create(cfg, dataset, limits, comm);
    const w = await loadInitWeights(initPath, cfg, initWeights);
    return Trainer.create(cfg, dataset, limits, comm, w.params);
  };
  let trainer = opts.resume
    ? await resumeTrainer(existing, dataset, config, log, limits, comm)
    : await fresh(config);
  if (opts.init) {
    const { step: sourceStep } = (await readCheckpointInfo(initPath)).state as { step?: number } ?? {};
    const which = initWeights === "ema" ? "EMA" : "student";
    const who = trainer.teacher ? "student, EMA and teacher" : "student and EMA";
    log.info(
      `started from ${initPath} (its ${which} weights, step ${sourceStep ?? 0}): ${who} start there; ` +
        "fresh optimizer, step 0",
    );
    if (writer) {
      await writeJson(`${dir}/init.json`, {
        from: opts.init.from,
        checkpoint: initPath,
        weights: initWeights,
        sourceStep: sourceStep ?? 0,
        time: new Date().toISOString(),
      });
    }
  }
  const c = trainer.config;
  const plan = trainer.plan;
  log.info(
    `memory plan: micro-batch ${plan.microBatch} (${plan.passes} pass(es) per step), about ` +
      `${plan.peakGiB.toFixed(2)} GiB at peak; ${plan.notes.join("; ")}`,
  );
  for (const w of plan.warnings) log.warn(w);
  const evaluator = writer && c.evalEvery > 0 ? await createEvaluator(c, dataset, plan.microBatch) : null;
  if (evaluator) {
    log.info(`evaluation every ${c.evalEvery} steps: ${evaluator.description}`);
    if (evaluator.caveat) log.warn(evaluator.caveat);
  }
  const metricsPath = `${dir}/metrics.jsonl`;
  // Loss and evaluation lines after the checkpoint are dropped (they are taken again); events are kept.
  const lines = await readMetrics(metricsPath, trainer.step);
  const rewriteMetrics = () =>
    writer ? writeFileAtomic(metricsPath, lines.map((m) => JSON.stringify(m) + "\n").join("")) : undefined;
  const append = async (line: JsonLine) => {
    lines.push(line);
    if (writer) await Deno.writeTextFile(metricsPath, JSON.stringify(line) + "\n", { append: true });
  };
  const event = async (step: number, kind: EventLine["event"], message: string, extra = {}) => {
    log.warn(message);
    await append({ step, event: kind, message, time: new Date().toISOString(), ...extra });
  };
  if (writer) {
    await writeJson(`${dir}/config.json`, c);
    await rewriteMetrics();
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

  // SIGINT/SIGTERM (lib/cli.ts): the first asks for a stop after this step, with a checkpoint; a second exits.
  const signals = opts.signals !== false;
  const releaseSignals = signals ? handleSignals(true) : () => {};
  const removeListener = signals
    ? onStop(() => log.info("signal received: saving a checkpoint after this step, then stopping"))
    : () => false;
  const wantStop = () => signals && stopRequested();

  const history: StepMetrics[] = [];
  let window: StepMetrics[] = [];
  let lastCheckpoint = existing.find((e) => e.step === trainer.step)?.path ?? "";
  let savedAt = opts.resume ? trainer.step : -1;
  const started = trainer.step;
  let stoppedBy: RunResult["stoppedBy"] = "done";
  let failedWrites = 0;
  let rollbacks = 0;

  /** Write a checkpoint of the current step; a failed write keeps the previous one (see README "Long runs"). */
  const save = async (final: boolean) => {
    const step = trainer.step;
    const path = checkpointPath(dir, step);
    let error: Error | undefined;
    if (writer) {
      try {
        await trainer.save(path);
        for (const old of (await listCheckpoints(dir)).slice(c.keepCheckpoints)) await Deno.remove(old.path);
      } catch (e) {
        error = e as Error;
      }
    }
    savedAt = step;
    if (!agree(comm, !error)) {
      failedWrites++;
      const kept = lastCheckpoint
        ? `the previous checkpoint ${lastCheckpoint} is intact`
        : "no checkpoint yet";
      const stop = final || failedWrites >= c.maxFailedWrites;
      const message =
        `checkpoint write failed at step ${step} (${error?.message ?? "on rank 0"}); ${kept}; ` +
        (stop
          ? `stopping (${final ? "the run's last checkpoint" : `${failedWrites} failed writes in a row`}): ` +
            `free space or fix the disk, then continue with --resume`
          : `training continues and writes again at step ${
            step + c.checkpointEvery - (step % c.checkpointEvery)
          } (${failedWrites} of ${c.maxFailedWrites} failures in a row allowed)`);
      await event(step, "checkpoint-failed", message, {
        error: error?.message,
        kept: lastCheckpoint || null,
      });
      if (stop) throw new Error(message);
      return;
    }
    if (failedWrites > 0) {
      await event(
        step,
        "checkpoint-recovered",
        `checkpoint ${path} written after ${failedWrites} failed write(s)`,
      );
    }
    failedWrites = 0;
    lastCheckpoint = path;
  };

  let best = Math.min(Infinity, ...lines.filter(isEval).map((l) => l["1-step"]));
  /** Evaluate the EMA student; a better score writes checkpoints/best.safetensors (never pruned). */
  const evaluate = async () => {
    const r = await evaluator!.evaluate(trainer.model, trainer.ema);
    const isBest = r["1-step"] < best;
    if (isBest) {
      best = r["1-step"];
      await trainer.save(`${dir}/checkpoints/best.safetensors`).catch((e) =>
        log.warn(`best checkpoint not written (${(e as Error).message}); the previous one is kept`)
      );
    }
    await append({ step: trainer.step, eval: true, ...r, best: isBest, time: new Date().toISOString() });
    log.info(
      `eval at step ${trainer.step}: ${r.metric} ${r["1-step"].toPrecision(4)} (1 step), ` +
        `${r["2-step"].toPrecision(4)} (2 steps)${isBest ? ", best so far" : ""} in ${
          r.seconds.toFixed(1)
        } s`,
    );
    await writePlotHtml(`${dir}/loss.html`, lossFigures(lines), `${c.preset}: training loss`);
  };
  const evalDue = (step: number) => evaluator && step % c.evalEvery === 0;
  /** A phase a signal may cut short (a sample grid, an evaluation): it is dropped, and the run stops. */
  const interruptible = async (what: string, f: () => Promise<void>) => {
    try {
      await f();
    } catch (e) {
      if (!(e instanceof StopRequested)) throw e;
      log.info(`${what} interrupted by the signal: it is not written`);
    }
  };

  try {
    // An evaluation the previous invocation did not finish is taken again first.
    if (
      evaluator && trainer.step > 0 && evalDue(trainer.step) &&
      !lines.some((l) => isEval(l) && l.step === trainer.step)
    ) {
      await interruptible("evaluation", evaluate);
    }
    while (trainer.step < total) {
      if (comm.size === 1 && wantStop()) {
        stoppedBy = "signal";
        break;
      }
      await yieldToEvents(); // lets a signal arrive between steps
      let m: StepMetrics;
      try {
        m = await trainer.trainStep(wantStop()); // the ranks agree on stopping in the step's all-reduce
      } catch (e) {
        if (!(e instanceof DivergenceError)) throw e;
        const d = e.divergence;
        const extra = {
          kind: d.kind,
          loss: d.loss,
          gradNorm: d.gradNorm,
          median: d.median,
          nonFinite: d.nonFinite,
        };
        if (rollbacks >= c.maxRollbacks) {
          const recent = d.recentLosses.slice(-10).map((l, i, a) =>
            `${d.k - a.length + i}: ${l.toPrecision(4)}`
          );
          e.message =
            `divergence guard: stopped after ${rollbacks} rollback(s) (--max-rollbacks ${c.maxRollbacks}). ` +
            `${e.message}. Losses before it (step: loss): ${recent.join(", ") || "none"}. The last good ` +
            `checkpoint is ${
              lastCheckpoint || "(none yet)"
            }: resume from it with a lower --optimizer.lr, or ` +
            `look at the data.`;
          await event(d.k, "diverged", e.message, extra);
          throw e;
        }
        rollbacks++;
        const target = lastCheckpoint ? `checkpoint ${lastCheckpoint}` : "the initial parameters (step 0)";
        await event(
          d.k,
          "rollback",
          `${e.message}. Rolling back to ${target} and skipping the data of step ${d.k} ` +
            `(rollback ${rollbacks} of ${c.maxRollbacks})`,
          extra,
        );
        const skip = new Map(trainer.skip);
        skip.set(d.k, (skip.get(d.k) ?? 0) + 1);
        trainer.dispose();
        trainer = lastCheckpoint
          ? await Trainer.load(lastCheckpoint, dataset, c, limits, comm)
          : await fresh(structuredClone(c));
        for (const [k, n] of skip) if ((trainer.skip.get(k) ?? 0) < n) trainer.skip.set(k, n);
        const back = trainer.step;
        lines.splice(0, lines.length, ...lines.filter((l) => "event" in l || l.step <= back));
        await rewriteMetrics();
        history.splice(history.findIndex((h) => h.k >= back) >>> 0);
        window = [];
        savedAt = back;
        continue;
      }
      history.push(m);
      window.push(m);
      const step = trainer.step;
      if (step % c.logEvery === 0 || step === total) {
        const line = summarize(window, step, c.batch);
        window = [];
        await append(line);
        log.progress(
          step,
          total,
          line.imagesPerSec / c.batch,
          `loss ${line.loss.toPrecision(4)}  N ${line.n}  ${line.imagesPerSec.toFixed(1)} img/s`,
        );
      }
      if (step % c.checkpointEvery === 0 || step === total) await save(step === total);
      if (evalDue(step)) await interruptible("evaluation", evaluate);
      if (writer && c.sampleEvery > 0 && (step % c.sampleEvery === 0 || step === total)) {
        await interruptible("sample grid", async () => {
          await writeSamples(
            trainer,
            `${dir}/samples/step-${String(step).padStart(8, "0")}.png`,
            reference,
            log,
          );
          await writePlotHtml(`${dir}/loss.html`, lossFigures(lines), `${c.preset}: training loss`);
        });
      }
      const signalled = m.stop || (comm.size === 1 && wantStop());
      if (signalled || (opts.stopAfter !== undefined && step - started >= opts.stopAfter)) {
        stoppedBy = signalled ? "signal" : "stopAfter";
        break;
      }
    }
    if (savedAt !== trainer.step) await save(true);
  } finally {
    removeListener();
    releaseSignals();
    log.clearBar();
    trainer.dispose();
    evaluator?.dispose();
  }
  log.info(
    `${stoppedBy === "done" ? "finished" : "stopped"} at step ${trainer.step}; checkpoint ${lastCheckpoint}`,
  );
  return { step: trainer.step, stoppedBy, lastCheckpoint, history };
}

/** Whether every rank's `ok` is true (one all-reduce; rank 0 alone writes, so its answer is everyone's). */
function agree(comm: Communicator, ok: boolean): boolean {
  if (comm.size === 1) return ok;
  const buf = new Float32Array([comm.rank === 0 && !ok ? 1 : 0]);
  comm.allReduceSum(buf);
  return buf[0] === 0;
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

/**
 * The lines of metrics.jsonl worth keeping when a run continues from step `upTo`: loss and evaluation lines up
 * to it, and every event. A partial last line (a process killed mid-append) is dropped.
 */
async function readMetrics(path: string, upTo: number): Promise<JsonLine[]> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return [];
    throw e;
  }
  const out: JsonLine[] = [];
  for (const l of text.split("\n")) {
    if (!l.trim()) continue;
    let line: JsonLine;
    try {
      line = JSON.parse(l);
    } catch {
      continue; // torn by a kill during the append: that step is taken again
    }
    if ("event" in line || line.step <= upTo) out.push(line);
  }
  return out;
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

/** loss.html: the loss curve, and beside it the evaluations (1- and 2-step) when the run has any. */
export function lossFigures(lines: JsonLine[]) {
  const figs = [lossFigure(lines.filter(isLoss))];
  const evals = lines.filter(isEval);
  if (evals.length) {
    const steps = evals.map((e) => e.step);
    figs.push(figure([
      line(steps, evals.map((e) => e["1-step"]), "1-step"),
      line(steps, evals.map((e) => e["2-step"]), "2-step"),
    ], { title: `${evals[0].metric} of EMA samples (lower is better)`, x: "step", y: evals[0].metric }));
  }
  return figs;
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
  let done = 0;
  for await (
    const b of sampleMany(trainer.model, trainer.ema, n, {
      taus: samplingSchedule(1),
      batch,
      seed: c.seed + 12345,
    })
  ) {
    parts.push(b.x);
    done += b.count;
    await checkStop("sample-grid"); // a signal drops the grid here, between batches
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
