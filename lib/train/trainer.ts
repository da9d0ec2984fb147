// The state of a consistency-training run and one step of it: the student θ, its EMA (for sampling), CT's
// EMA teacher when asked for, the optimizer, the host RNG and the data order. A checkpoint holds all of it, so
// a resumed run takes exactly the steps the uninterrupted one would have taken.
import * as tf from "@tensorflow/tfjs";
import { CheckpointError, type Expectation, loadCheckpoint, saveCheckpoint } from "../io/checkpoint.ts";
import { ConsistencyModel } from "../consistency_model.ts";
import { DataLoader, type Dataset, type LoaderState } from "../data/dataset.ts";
import { MODELS } from "../models/index.ts";
import { oneHotLabels } from "../models/network.ts";
import { disposeParams, numel, type Params, type ParamSpec, trainableParams } from "../nn/params.ts";
import { Rng, type RngState } from "../rng.ts";
import { LOOP_KEYS, type TrainConfig, validateConfig, withLoopDefaults } from "./config.ts";
import { type MemoryPlan, type PlanLimits, planLimits, planMemory } from "./memory_plan.ts";
import { type Communicator, localCommunicator } from "../distributed/mpi.ts";
import type { Shard } from "../data/dataset.ts";
import { Optimizer } from "./optim.ts";
import { copyParams, emaUpdate, lossAndGrads, planStep } from "./step.ts";

/** The JSON part of a checkpoint. */
export interface TrainState {
  /** Steps completed: the next step is k = step. */
  step: number;
  rng: RngState;
  loader: LoaderState;
  optimizerStep: number;
  /** Steps whose batch (and step plan) the guard skipped, once per skip: drawn, thrown away, then another. */
  skip?: number[];
  /** The last `spikeWindow` losses (the spike check's median): resumes decide as the uninterrupted run. */
  recentLosses?: number[];
}

/** What one step reports. */
export interface StepMetrics {
  /** The step's k (0-based): the curriculum was at N(k). */
  k: number;
  loss: number;
  n: number;
  lr: number;
  gradNorm: number;
  seconds: number;
  /** Whether any rank asked to stop after this step (a signal): the ranks stop together. */
  stop: boolean;
}

/** Why the divergence guard refused a step: what it saw, and what went non-finite. */
export interface Divergence {
  kind: "non-finite" | "spike";
  /** The step's k (0-based). */
  k: number;
  loss: number;
  gradNorm: number;
  n: number;
  lr: number;
  /** The median of the recent losses the spike was measured against. */
  median?: number;
  /** What went non-finite: "loss", "gradient <name>", "input samples <indices>" (this rank's shard). */
  nonFinite: string[];
  /** The losses of the steps before it (oldest first). */
  recentLosses: number[];
}

/** A step the divergence guard refused (NaN/Inf loss or gradient, or a loss spike): nothing was updated. */
export class DivergenceError extends Error {
  constructor(readonly divergence: Divergence) {
    super(describeDivergence(divergence));
    this.name = "DivergenceError";
  }
  /** The old name's fields. */
  get metrics() {
    const d = this.divergence;
    return { k: d.k, loss: d.loss, n: d.n, lr: d.lr, gradNorm: d.gradNorm };
  }
}

/** A loss or gradient that is NaN or ±Inf. The parameters were NOT updated with it. */
export class NonFiniteLossError extends DivergenceError {
  constructor(divergence: Divergence) {
    super(divergence);
    this.name = "NonFiniteLossError";
  }
}

export function describeDivergence(d: Divergence): string {
  const what = d.kind === "non-finite"
    ? `the loss or its gradient is not finite at step ${d.k} (loss ${d.loss}, gradient norm ${d.gradNorm}; ` +
      `non-finite: ${d.nonFinite.join("; ") || "the all-reduced sum only"})`
    : `the loss spiked at step ${d.k}: ${d.loss.toPrecision(4)} is over ${
      (d.loss / d.median!).toFixed(1)
    }× the median ${d.median!.toPrecision(4)} of the last ${d.recentLosses.length} steps (gradient norm ` +
      `${d.gradNorm.toPrecision(4)})`;
  return `${what}; N(k) = ${d.n}, lr = ${d.lr}; the parameters were not updated with it`;
}

// Separate streams from one seed: parameters, the step RNG, the data order.
const SEED_OFFSETS = { params: 0, steps: 1, data: 2 } as const;

export class Trainer {
  private constructor(
    /** The memory plan the micro-batch came from (or was checked against). */
    readonly plan: MemoryPlan,
    readonly config: TrainConfig,
    readonly model: ConsistencyModel,
    readonly params: Map<string, tf.Tensor>,
    readonly ema: Map<string, tf.Tensor>,
    /** CT's EMA teacher θ⁻; null in iCT, where θ⁻ = stopgrad(θ). */
    readonly teacher: Map<string, tf.Tensor> | null,
    readonly optimizer: Optimizer,
    private rng: Rng,
    readonly loader: DataLoader,
    private steps: number,
    /** The data-parallel ranks: each takes its shard of every batch; gradients are summed over all. */
    readonly comm: Communicator,
    /** Batches to skip before step k's, by k (the divergence guard's rollbacks). */
    readonly skip: Map<number, number> = new Map(),
    /** The last spikeWindow losses. */
    private recentLosses: number[] = [],
  ) {}

  /**
   * A fresh run: parameters initialized from config.seed, or taken from `initial` (another run's weights,
   * `loadInitWeights`; the map's tensors are taken over). Either way the EMA (and CT's teacher) start equal to
   * the student, the optimizer has no state and the step is 0. A micro-batch of 0 ("auto") is resolved here
   * by the memory plan for `limits` (default: the current backend's stated budget) and written into the config.
   */
  static create(
    config: TrainConfig,
    dataset: Dataset,
    limits?: PlanLimits,
    comm: Communicator = localCommunicator(),
    initial?: Map<string, tf.Tensor>,
  ): Trainer {
    validateConfig(config);
    const model = modelFor(config, dataset);
    const plan = resolveMicroBatch(config, model, limits, comm);
    const params = initial
      ? paramsFrom(model.network.specs, initial)
      : model.init(config.seed + SEED_OFFSETS.params);
    return new Trainer(
      plan,
      config,
      model,
      params,
      copyParams(params),
      config.teacher === "ema" ? copyParams(params) : null,
      new Optimizer(config.optimizer, trainableParams(params)),
      Rng.seeded(config.seed + SEED_OFFSETS.steps),
      loaderFor(config, model, dataset),
      0,
      comm,
    );
  }

  /**
   * Continue from a checkpoint written by `save`. The config is the checkpoint's, with the loop settings and
   * the data folder of `current` (the config the caller resolved now) applied.
   */
  static async load(
    path: string,
    dataset: Dataset,
    current?: TrainConfig,
    limits?: PlanLimits,
    comm: Communicator = localCommunicator(),
  ): Promise<Trainer> {
    let config: TrainConfig | undefined;
    let model: ConsistencyModel | undefined;
    // One read: the stored config says which groups and shapes the file must hold.
    const saved = await loadCheckpoint(path, (stored) => {
      if (!(stored as TrainConfig)?.model) throw new CheckpointError(path, "has no training config");
      config = resumedConfig(withLoopDefaults(stored as TrainConfig), current);
      validateConfig(config);
      model = modelFor(config, dataset);
      const specs = model.network.specs;
      const expect: Expectation = { params: specs, ema: specs };
      if (config.teacher === "ema") expect.teacher = specs;
      return expect;
    });
    const state = saved.state as TrainState;
    if (!state || !Number.isInteger(state.step) || !state.rng || !state.loader) {
      throw new CheckpointError(path, "has no training state (step, rng, loader): not a training checkpoint");
    }
    const restore = (group: Map<string, tf.Tensor>) => paramsFrom(model!.network.specs, group);
    const params = restore(saved.groups.params);
    const optimizer = new Optimizer(config!.optimizer, trainableParams(params));
    const moments = saved.groups.optimizer ?? new Map();
    try {
      optimizer.load(moments, state.optimizerStep);
    } catch (e) {
      disposeParams(params);
      optimizer.dispose();
      throw new CheckpointError(path, `optimizer state does not fit: ${(e as Error).message}`);
    } finally {
      disposeParams(moments);
    }
    return new Trainer(
      resolveMicroBatch(config!, model!, limits, comm), // masks follow the sample: the split may change
      config!,
      model!,
      params,
      restore(saved.groups.ema),
      config!.teacher === "ema" ? restore(saved.groups.teacher) : null,
      optimizer,
      Rng.fromState(state.rng),
      loaderFor(config!, model!, dataset, state.loader),
      state.step,
      comm,
      new Map((state.skip ?? []).reduce((m, k) => m.set(k, (m.get(k) ?? 0) + 1), new Map<number, number>())),
      state.recentLosses ?? [],
    );
  }

  /** Steps completed so far. */
  get step(): number {
    return this.steps;
  }

  /**
   * Optimizer step k = this.step: plan, loss and gradient (of this rank's shard, summed over the ranks),
   * update, EMAs. `stopRequested`: this rank wants to stop after the step; the answer's `stop` is every rank's.
   */
  async trainStep(stopRequested = false): Promise<StepMetrics> {
    const started = performance.now();
    const c = this.config;
    const k = this.steps;
    const shard = this.shard();
    for (let i = 0; i < (this.skip.get(k) ?? 0); i++) {
      // The guard refused this step's data: its plan and batch are drawn as before and thrown away.
      planStep(c, k, this.rng);
      this.loader.nextHost(shard);
    }
    const plan = planStep(c, k, this.rng); // the same on every rank: the RNG state is global
    const host = this.loader.nextHost(shard);
    const batch = {
      x: tf.tensor(host.x, [shard?.count ?? c.batch, ...this.loader.dataset.sampleShape], "float32"),
      labels: host.labels ? oneHotLabels(host.labels, this.loader.dataset.labelDim) : undefined,
    };
    const lr = c.optimizer.lr;
    let result;
    try {
      result = await lossAndGrads(
        this.model,
        this.params,
        this.teacher ?? this.params,
        c,
        plan,
        batch,
        shard,
      );
    } finally {
      batch.x.dispose();
      batch.labels?.dispose();
    }
    const { loss, grads, gradNorm, stop } = this.comm.size > 1
      ? await allReduceStep(this.comm, result, stopRequested)
      : { ...result, stop: stopRequested };
    // The divergence guard: every rank sees the same all-reduced loss and norm, so all decide alike.
    const recent = [...this.recentLosses];
    const median = medianOf(recent);
    const finite = Number.isFinite(loss) && Number.isFinite(gradNorm);
    const spike = finite && c.spikeFactor > 0 && recent.length >= Math.min(c.spikeWindow, 20) &&
      loss > c.spikeFactor * median;
    if (!finite || spike) {
      const nonFinite = finite ? [] : await nonFiniteParts(loss, grads, host);
      for (const g of grads.values()) g.dispose();
      const d: Divergence = {
        kind: finite ? "spike" : "non-finite",
        k,
        loss,
        gradNorm,
        n: plan.n,
        lr,
        median: spike ? median : undefined,
        nonFinite,
        recentLosses: recent,
      };
      throw finite ? new DivergenceError(d) : new NonFiniteLossError(d);
    }
    this.optimizer.update(grads, lr);
    for (const g of grads.values()) g.dispose();
    emaUpdate(this.ema, this.params, c.emaDecay); // student EMA, for sampling
    if (this.teacher) emaUpdate(this.teacher, this.params, plan.mu); // CT: θ⁻ ← μ(k)θ⁻ + (1 − μ(k))θ
    this.recentLosses.push(loss);
    if (this.recentLosses.length > c.spikeWindow) {
      this.recentLosses.splice(0, this.recentLosses.length - c.spikeWindow);
    }
    this.steps = k + 1;
    return { k, loss, n: plan.n, lr, gradNorm, seconds: (performance.now() - started) / 1000, stop };
  }

  /** This rank's samples of every batch (undefined in a one-process run). */
  private shard(): Shard | undefined {
    const { rank, size } = this.comm;
    if (size === 1) return undefined;
    const count = this.config.batch / size;
    return { offset: rank * count, count };
  }

  /** Everything needed to continue, in one safetensors file (atomic write). */
  async save(path: string): Promise<void> {
    const groups: Record<string, Params> = {
      params: this.params,
      ema: this.ema,
      optimizer: this.optimizer.state(),
    };
    if (this.teacher) groups.teacher = this.teacher;
    const state: TrainState = {
      step: this.steps,
      rng: this.rng.state(),
      loader: this.loader.state(),
      optimizerStep: this.optimizer.step,
      skip: [...this.skip].sort(([a], [b]) => a - b).flatMap(([k, n]) => Array(n).fill(k)),
      recentLosses: [...this.recentLosses],
    };
    await saveCheckpoint(path, { config: this.config, groups, state });
  }

  dispose(): void {
    disposeParams(this.params);
    disposeParams(this.ema);
    if (this.teacher) disposeParams(this.teacher);
    this.optimizer.dispose();
  }
}

function medianOf(values: number[]): number {
  if (!values.length) return NaN;
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

/** What went non-finite in a refused step: the loss, which gradients, which input samples. */
async function nonFiniteParts(
  loss: number,
  grads: Map<string, tf.Tensor>,
  host: { x: Float32Array; indices: Uint32Array },
): Promise<string[]> {
  const out: string[] = [];
  if (!Number.isFinite(loss)) out.push(`loss ${loss}`);
  const names = [...grads.keys()].sort();
  const counts = tf.tidy(() =>
    tf.stack(names.map((n) => tf.sum(tf.cast(tf.logicalNot(tf.isFinite(grads.get(n)!)), "float32"))))
  );
  const bad = await counts.data();
  counts.dispose();
  const badNames = names.filter((_, i) => bad[i] > 0);
  if (badNames.length) {
    out.push(
      `gradient of ${badNames.slice(0, 8).join(", ")}${
        badNames.length > 8 ? ` and ${badNames.length - 8} more` : ""
      }`,
    );
  }
  const per = host.x.length / host.indices.length;
  const samples = Array.from(host.indices).filter((_, b) =>
    host.x.subarray(b * per, (b + 1) * per).some((v) => !Number.isFinite(v))
  );
  if (samples.length) out.push(`input samples ${samples.slice(0, 16).join(", ")} (dataset indices)`);
  return out;
}

/** A checkpoint group as the network's parameters: trainable ones become variables (the tensors are taken over). */
function paramsFrom(specs: readonly ParamSpec[], group: Map<string, tf.Tensor>): Map<string, tf.Tensor> {
  const out = new Map<string, tf.Tensor>();
  for (const s of specs) {
    const t = group.get(s.name)!;
    out.set(s.name, s.trainable ? tf.variable(t, true) : t);
    if (s.trainable) t.dispose();
  }
  return out;
}

/** Model settings that change no weight's meaning (dropout's): a run from another's weights may set them. */
const FREE_MODEL_KEYS: readonly string[] = ["dropout", "dropoutMaxResolution"];

/**
 * Where the network of `current` differs from that of `source` (another run's config) so that the source's
 * weights would compute something else: any model setting but dropout's, and σ_data (c_skip, c_out, c_in). One
 * entry per setting, "model.modelChannels: 64 here, 32 in the source"; none when the weights fit.
 */
export function networkDifferences(current: TrainConfig, source: TrainConfig): string[] {
  const show = (v: unknown) => v === undefined ? "(unset)" : JSON.stringify(v);
  const here = current.model as unknown as Record<string, unknown>;
  const there = source.model as unknown as Record<string, unknown>;
  if (here.family !== there.family) {
    return [`model.family: ${show(here.family)} here, ${show(there.family)} in the source`];
  }
  const out: string[] = [];
  for (const k of new Set([...Object.keys(here), ...Object.keys(there)])) {
    if (FREE_MODEL_KEYS.includes(k) || JSON.stringify(here[k]) === JSON.stringify(there[k])) continue;
    out.push(`model.${k}: ${show(here[k])} here, ${show(there[k])} in the source`);
  }
  if (current.sigmaData !== source.sigmaData) {
    out.push(`sigmaData: ${current.sigmaData} here, ${source.sigmaData} in the source`);
  }
  return out;
}

/**
 * Refuse `--init` weights (`source`: their checkpoint's config) whose network is not that of `config`, naming
 * each differing setting and the --model (and --sigma-data) that fits.
 */
export function checkInitNetwork(path: string, config: TrainConfig, source: TrainConfig): void {
  if (!source?.model) throw new CheckpointError(path, "has no model config: not a kit checkpoint");
  const diffs = networkDifferences(config, source);
  if (!diffs.length) return;
  const fits = Object.entries(MODELS).find(([, m]) =>
    !networkDifferences({ ...config, model: m, sigmaData: source.sigmaData }, source).length
  );
  const how = [fits ? `--model ${fits[0]}` : "the source's --model and --model.* settings (its config.json)"];
  if (config.sigmaData !== source.sigmaData) how.push(`--sigma-data ${source.sigmaData}`);
  throw new Error(
    `--init ${path}: its network is not this run's (${diffs.join("; ")}): pass ${how.join(" and ")} ` +
      "(dropout may differ)",
  );
}

/** Weights to start a new run from (`--init`): a checkpoint's EMA or student, checked against the config. */
export interface InitWeights {
  /** The checkpoint file. */
  path: string;
  /** Its group the weights came from. */
  weights: "ema" | "params";
  /** The source's step (0 for an imported network). */
  step: number;
  params: Map<string, tf.Tensor>;
}

/**
 * Read the `weights` group (the EMA by default: what sampling uses, and all an imported run holds) of the
 * checkpoint at `path` for a new run with `config`. Refuses a source whose network differs (naming each
 * setting, and the --model that fits when one does), a checkpoint without that group, and weights that do not
 * fit the network's parameters.
 */
export async function loadInitWeights(
  path: string,
  config: TrainConfig,
  weights: "ema" | "params" = "ema",
): Promise<InitWeights> {
  let step = 0;
  const loaded = await loadCheckpoint(path, (stored, state, groups) => {
    checkInitNetwork(path, config, stored as TrainConfig);
    if (!groups.includes(weights)) {
      throw new CheckpointError(
        path,
        `holds no "${weights}" weights (it has ${groups.join(", ") || "none"})` +
          (groups.includes("ema") ? ": use --init-weights ema" : ""),
      );
    }
    step = (state as TrainState | null)?.step ?? 0;
    const model = ConsistencyModel.fromConfig(config.model, { sigmaData: config.sigmaData });
    return { [weights]: model.network.specs };
  }, { groups: [weights] });
  return { path, weights, step, params: loaded.groups[weights] };
}

/**
 * The config a resumed run continues with: the stored one, with `current`'s loop settings and data folder.
 * Refuses a `current` that names other data (another dataset, toy distribution or size).
 */
export function resumedConfig(stored: TrainConfig, current?: TrainConfig): TrainConfig {
  if (!current) return structuredClone(stored);
  const { dir: _a, ...was } = stored.data;
  const { dir: _b, ...now } = current.data;
  if (JSON.stringify(was) !== JSON.stringify(now)) {
    throw new Error(
      `this run was trained on ${JSON.stringify(was)}, the config given names ${JSON.stringify(now)}: ` +
        `resume with the run's own data (only --data.dir may change)`,
    );
  }
  const loop = Object.fromEntries(LOOP_KEYS.map((k) => [k, current[k]]));
  return { ...structuredClone(stored), ...loop, data: { ...stored.data, dir: current.data.dir } };
}

/**
 * Plan the step's memory for this rank's share of the batch; a micro-batch of 0 ("auto") becomes the plan's,
 * written into the config.
 */
function resolveMicroBatch(
  config: TrainConfig,
  model: ConsistencyModel,
  limits: PlanLimits | undefined,
  comm: Communicator,
): MemoryPlan {
  if (config.batch % comm.size !== 0) {
    throw new Error(
      `the batch ${config.batch} does not split evenly over ${comm.size} ranks: run a divisor of it`,
    );
  }
  const share = config.batch / comm.size;
  if (config.microBatch > 0 && share % config.microBatch !== 0) {
    throw new Error(
      `each of the ${comm.size} ranks takes ${share} samples of the batch, not a multiple of --micro-batch ` +
        `${config.microBatch}: pick a divisor of ${share}`,
    );
  }
  limits ??= planLimits({ backend: tf.getBackend(), memorySource: "the backend was not asked" });
  const plan = planMemory(model.network, { ...config, batch: share }, limits);
  config.microBatch = plan.microBatch;
  return plan;
}

/**
 * Sum a rank's loss and gradients over all ranks (one MPI all-reduce of one buffer: the loss, the stop flag,
 * every gradient in parameter-name order) and recompute the norm of the sum on the host.
 */
async function allReduceStep(
  comm: Communicator,
  part: { loss: number; grads: Map<string, tf.Tensor> },
  stopRequested: boolean,
): Promise<{ loss: number; grads: Map<string, tf.Tensor>; gradNorm: number; stop: boolean }> {
  const names = [...part.grads.keys()].sort(); // the same order on every rank
  const total = names.reduce((n, name) => n + part.grads.get(name)!.size, 2);
  const buf = new Float32Array(total);
  buf[0] = part.loss;
  buf[1] = stopRequested ? 1 : 0;
  let at = 2;
  const shapes = new Map<string, number[]>();
  for (const name of names) {
    const g = part.grads.get(name)!;
    buf.set((await g.data()) as Float32Array, at); // waits on the device: the gradient leaves it here
    shapes.set(name, g.shape);
    at += g.size;
    g.dispose();
  }
  comm.allReduceSum(buf); // blocks until every rank has sent its share
  const grads = new Map<string, tf.Tensor>();
  let squared = 0;
  at = 2;
  for (const name of names) {
    const shape = shapes.get(name)!;
    const values = buf.subarray(at, at + numel(shape));
    for (const v of values) squared += v * v;
    grads.set(name, tf.tensor(values, shape, "float32"));
    at += values.length;
  }
  return { loss: buf[0], grads, gradNorm: Math.sqrt(squared), stop: buf[1] > 0 };
}

function modelFor(config: TrainConfig, dataset: Dataset): ConsistencyModel {
  const model = ConsistencyModel.fromConfig(config.model, { sigmaData: config.sigmaData });
  const want = model.network.sampleShape.join("×");
  if (dataset.sampleShape.join("×") !== want) {
    throw new Error(
      `the model takes samples of ${want} but dataset ${dataset.name} has ${
        dataset.sampleShape.join("×")
      }: ` +
        `pick a model for this data with --model NAME`,
    );
  }
  const labelDim = model.network.labelDim;
  if (labelDim > 0 && dataset.labelDim !== labelDim) {
    throw new Error(
      `the model is conditional on ${labelDim} classes but dataset ${dataset.name} has ${dataset.labelDim}`,
    );
  }
  return model;
}

function loaderFor(
  config: TrainConfig,
  model: ConsistencyModel,
  dataset: Dataset,
  state?: LoaderState,
): DataLoader {
  return new DataLoader(dataset, config.batch, {
    seed: config.seed + SEED_OFFSETS.data,
    flip: config.data.flip,
    labels: model.network.labelDim > 0,
    state,
  });
}

/** The parameters of a checkpoint for sampling: the student's EMA (default) or the online student. */
export async function loadForSampling(
  path: string,
  which: "ema" | "params" = "ema",
): Promise<{ config: TrainConfig; model: ConsistencyModel; params: Map<string, tf.Tensor>; step: number }> {
  let config: TrainConfig | undefined;
  let model: ConsistencyModel | undefined;
  const loaded = await loadCheckpoint(path, (stored) => {
    config = stored as TrainConfig;
    if (!config?.model) throw new CheckpointError(path, "has no model config: not a kit training checkpoint");
    model = ConsistencyModel.fromConfig(config.model, { sigmaData: config.sigmaData });
    return { [which]: model.network.specs };
  }, { groups: [which] });
  return {
    config: config!,
    model: model!,
    params: loaded.groups[which],
    step: (loaded.state as TrainState | null)?.step ?? 0,
  };
}
