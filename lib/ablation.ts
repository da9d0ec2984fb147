// Single-factor ablations of Section 3 on the 2-D toy data: analogues of the paper's Figures 1–5.
//
// Every variant is the `toy2d` preset under the iCT recipe with ONE Table 1 choice changed (or, in a group
// of several values, one setting swept). Each variant is trained with several seeds; seed s gives every
// variant the same initialization, data order and noise draws, so variants are compared seed by seed
// (a paired comparison). A run is scored by the sliced 1-Wasserstein distance between one-step samples of its
// EMA student and held-out points (lower is better); the energy distance and two-step figures are recorded too.
//
// The verdict of one alternative against the choice the paper favours: the paired differences
// (alternative − favoured) over the seeds give a mean and a 95% t-interval; the interval above 0 → "agrees"
// (the paper's choice is better here too), below 0 → "disagrees", containing 0 → "inconclusive". A difference
// smaller than MIN_EFFECT of the favoured score is "inconclusive" whatever its interval: two untrained networks
// differ by 1e-4 with a tight interval, and that says nothing about the choice.
import { ConsistencyModel } from "./consistency_model.ts";
import { loadDataset } from "./data/index.ts";
import { disposeParams } from "./nn/params.ts";
import type { Dataset } from "./data/dataset.ts";
import { energyDistance, slicedWasserstein } from "./metrics/distances.ts";
import { type Figure, figure, line } from "./plot.ts";
import { sampleAll, samplingSchedule } from "./sampling.ts";
import { preset, type TrainConfig, validateConfig } from "./train/config.ts";
import { Trainer } from "./train/trainer.ts";

export const FIGURES = ["1", "2a", "2b", "2c", "3", "4", "5"] as const;
export type FigureId = typeof FIGURES[number];

/** One setting of a group: a name and what it changes in the iCT toy config. */
export interface Variant {
  name: string;
  /** The settings it changes, as `--flag value` would (shown in tables and written to the JSON). */
  changes: Record<string, string | number | boolean>;
}

export interface Group {
  /** What is varied, e.g. "weighting λ". */
  name: string;
  /** The paper's section and figure. */
  paper: string;
  /** What the paper reports (its direction), in words. */
  paperDirection: string;
  /** The variant the paper favours (iCT's choice); the others are judged against it. */
  favoured: string;
  variants: Variant[];
}

export interface FigureSpec {
  figure: FigureId;
  title: string;
  groups: Group[];
}

const v = (name: string, changes: Variant["changes"] = {}): Variant => ({ name, changes });

/** The ablations, one entry per figure of the paper (Section 3). */
export const ABLATIONS: Record<FigureId, FigureSpec> = {
  "1": {
    figure: "1",
    title: "Fig. 1 analogue: weighting, noise embedding, dropout (Sec. 3.1)",
    groups: [
      {
        name: "weighting λ",
        paper: "Sec. 3.1, Fig. 1",
        paperDirection: "λ(σ_i) = 1/(σ_{i+1} − σ_i) improves FID over λ = 1",
        favoured: "λ = 1/Δσ (iCT)",
        variants: [v("λ = 1/Δσ (iCT)"), v("λ = 1 (CT)", { weighting: "uniform" })],
      },
      {
        name: "Fourier scale",
        paper: "Sec. 3.1, Fig. 1",
        paperDirection: "scale 0.02 is better than CM's 16 (16 makes continuous-time CT diverge)",
        favoured: "scale 0.02 (iCT)",
        variants: [v("scale 0.02 (iCT)"), v("scale 16 (CM)", { "model.fourierScale": 16 })],
      },
      {
        name: "dropout and the shared mask",
        paper: "Sec. 3.1, Fig. 1",
        paperDirection:
          "dropout (0.3 on CIFAR-10) with the student's mask shared by the teacher improves FID",
        favoured: "dropout 0.1, shared mask",
        variants: [
          v("dropout 0.1, shared mask", { "model.dropout": 0.1 }),
          v("dropout 0.1, independent masks", { "model.dropout": 0.1, sharedDropout: false }),
          v("no dropout (toy2d preset)"),
        ],
      },
    ],
  },
  "2a": {
    figure: "2a",
    title: "Fig. 2a analogue: the teacher's EMA (Sec. 3.2)",
    groups: [{
      name: "teacher",
      paper: "Sec. 3.2, Fig. 2a",
      paperDirection: "θ⁻ = stopgrad(θ) (μ = 0) is much better than CT's EMA teacher",
      favoured: "stopgrad(θ) (iCT)",
      variants: [v("stopgrad(θ) (iCT)"), v("EMA teacher, μ0 = 0.9 (CT)", { teacher: "ema" })],
    }],
  },
  "2b": {
    figure: "2b",
    title: "Fig. 2b analogue: Pseudo-Huber vs squared ℓ2 (Sec. 3.3)",
    groups: [{
      name: "metric d",
      paper: "Sec. 3.3, Fig. 2b",
      paperDirection: "Pseudo-Huber beats squared ℓ2",
      favoured: "Pseudo-Huber (iCT)",
      variants: [v("Pseudo-Huber (iCT)"), v("squared ℓ2", { metric: "l2" })],
    }],
  },
  "2c": {
    figure: "2c",
    title: "Sec. 3.3: the Pseudo-Huber constant c (iCT: 0.00054·√d; here d = 2, c ≈ 0.00076)",
    groups: [{
      name: "Pseudo-Huber c",
      paper: "Sec. 3.3",
      paperDirection:
        "iCT sets c = 0.00054·√d [U: SETTINGS.md records no sweep]; a c far above the typical distance makes " +
        "Pseudo-Huber a scaled squared ℓ2, which Fig. 2b finds worse",
      favoured: "c = 0.00054·√d (iCT)",
      variants: [
        v("c = 0.00054·√d (iCT)"),
        v("c = 0.0076 (10×)", { pseudoHuberC: 0.0076 }),
        v("c = 0.076 (100×)", { pseudoHuberC: 0.076 }),
        v("c = 0.76 (1000×)", { pseudoHuberC: 0.76 }),
      ],
    }],
  },
  "3": {
    figure: "3",
    title: "Fig. 3 analogue: Pseudo-Huber vs squared ℓ2 with a coarse fixed grid (Sec. 3.3)",
    groups: [{
      name: "metric d at fixed N = 11",
      paper: "Sec. 3.3, Figs. 2b–3",
      paperDirection: "Pseudo-Huber beats squared ℓ2 also without the curriculum (fixed N)",
      favoured: "Pseudo-Huber, N = 11",
      variants: [
        v("Pseudo-Huber, N = 11", { s0: 10, s1: 10 }),
        v("squared ℓ2, N = 11", { s0: 10, s1: 10, metric: "l2" }),
      ],
    }],
  },
  "4": {
    figure: "4",
    title: "Fig. 4 analogue: the curriculum N(k) (Sec. 3.4)",
    groups: [
      {
        name: "s1 (exponential)",
        paper: "Sec. 3.4, Fig. 4",
        paperDirection: "a larger final N (s1 = 1280) is better than a small one",
        favoured: "s1 = 1280 (iCT)",
        variants: [v("s1 = 1280 (iCT)"), v("s1 = 160", { s1: 160 }), v("s1 = 20", { s1: 20 })],
      },
      {
        name: "growth of N(k)",
        paper: "Sec. 3.4, Fig. 4",
        paperDirection: "exponential growth (doubling) is better than the square root",
        favoured: "exponential, s0 = 10, s1 = 1280 (iCT)",
        variants: [
          v("exponential, s0 = 10, s1 = 1280 (iCT)"),
          v("square root, s0 = 10, s1 = 1280", { curriculum: "sqrt" }),
          v("square root, s0 = 2, s1 = 150 (CT)", { curriculum: "sqrt", s0: 2, s1: 150 }),
        ],
      },
    ],
  },
  "5": {
    figure: "5",
    title: "Fig. 5 analogue: which noise levels are trained (Sec. 3.5)",
    groups: [{
      name: "noise sampling",
      paper: "Sec. 3.5, Fig. 5",
      paperDirection: "the discrete lognormal p(σ_i) is better than i ~ U⟦1, N−1⟧",
      favoured: "lognormal (iCT)",
      variants: [v("lognormal (iCT)"), v("uniform (CT)", { noise: "uniform" })],
    }],
  },
};

export interface AblationSettings {
  /** Seeds 0 … seeds−1. */
  seeds: number;
  /** Training steps per run; the curriculum's K is set to the same number, so it runs its whole course. */
  steps: number;
  /** Samples compared with as many held-out points. */
  evalN: number;
}

export const DEFAULT_SETTINGS: AblationSettings = { seeds: 3, steps: 1000, evalN: 2000 };

/** The toy config of one variant and seed. */
export function variantConfig(variant: Variant, seed: number, steps: number): TrainConfig {
  const c = preset("toy2d");
  Object.assign(c, {
    seed,
    totalIters: steps,
    maxSteps: steps,
    logEvery: steps,
    checkpointEvery: steps,
    sampleEvery: 0,
  });
  for (const [key, value] of Object.entries(variant.changes)) {
    const parts = key.split(".");
    let parent = c as unknown as Record<string, unknown>;
    for (const p of parts.slice(0, -1)) parent = parent[p] as Record<string, unknown>;
    const last = parts[parts.length - 1];
    if (!(last in parent)) throw new Error(`variant "${variant.name}": no setting ${key}`);
    if (typeof parent[last] !== typeof value) {
      throw new Error(`variant "${variant.name}": ${key} takes a ${typeof parent[last]}, got ${value}`);
    }
    parent[last] = value;
  }
  validateConfig(c);
  return c;
}

export interface RunScore {
  seed: number;
  /** Sliced W1 of one-step samples vs held-out points (the score the verdict uses). */
  oneStepW1: number;
  oneStepEnergy: number;
  twoStepW1: number;
  twoStepEnergy: number;
  /** Mean loss of the last 10% of steps. */
  finalLoss: number;
  /** [step, loss] every `steps/50` steps (mean over the window). */
  lossCurve: [number, number][];
  seconds: number;
}

export interface VariantResult extends Variant {
  runs: RunScore[];
  mean: number;
  std: number;
}

export interface Verdict {
  alternative: string;
  /** Mean over seeds of (alternative − favoured) one-step sliced W1: > 0 means the favoured choice is better. */
  meanDiff: number;
  /** 95% t-interval of the paired difference. */
  ci: [number, number];
  verdict: "agrees" | "disagrees" | "inconclusive";
}

export interface GroupResult extends Omit<Group, "variants"> {
  variants: VariantResult[];
  verdicts: Verdict[];
}

export interface FigureResult {
  figure: FigureId;
  title: string;
  groups: GroupResult[];
}

export interface AblationFile {
  /** The command that made the file, and when. */
  command: string;
  date: string;
  backend: string;
  settings: AblationSettings;
  /** The reference figures: sliced W1 of as many training points as samples (the floor of the score). */
  floor: { slicedW1: number; energy: number };
  figures: FigureResult[];
}

/** Two-sided 95% quantiles of Student's t for 1 … 10 degrees of freedom. */
const T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228];

/** Student's t 97.5% quantile for `df` degrees of freedom (normal 1.96 beyond 30; table to 10, then interpolated). */
export function tQuantile975(df: number): number {
  if (!Number.isInteger(df) || df < 1) throw new Error(`t quantile needs df >= 1, got ${df}`);
  if (df <= T975.length) return T975[df - 1];
  if (df >= 30) return 1.96 + 2.4 / df; // 2.042 at 30 (exact 2.042)
  return 2.228 + (df - 10) * (2.042 - 2.228) / 20;
}

export function meanStd(xs: number[]): { mean: number; std: number } {
  const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
  const std = xs.length > 1 ? Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / (xs.length - 1)) : 0;
  return { mean, std };
}

/** Differences below this fraction of the favoured variant's mean score are too small to judge. */
export const MIN_EFFECT = 0.02;

/**
 * The verdict of `alternative` against `favoured` from paired scores (lower is better; same seed order):
 * the 95% t-interval of alternative − favoured, and a difference of at least MIN_EFFECT of the favoured mean.
 */
export function pairedVerdict(favoured: number[], alternative: number[], name = "alternative"): Verdict {
  if (favoured.length !== alternative.length || favoured.length < 2) {
    throw new Error(
      `paired verdict needs two equal lists of >= 2 scores, got ${favoured.length}, ${alternative.length}`,
    );
  }
  const diffs = alternative.map((a, i) => a - favoured[i]);
  const { mean, std } = meanStd(diffs);
  const half = tQuantile975(diffs.length - 1) * std / Math.sqrt(diffs.length);
  const ci: [number, number] = [mean - half, mean + half];
  const small = Math.abs(mean) < MIN_EFFECT * Math.abs(meanStd(favoured).mean);
  const verdict = small ? "inconclusive" : ci[0] > 0 ? "agrees" : ci[1] < 0 ? "disagrees" : "inconclusive";
  return { alternative: name, meanDiff: mean, ci, verdict };
}

export interface AblationData {
  train: Dataset;
  /** Held-out points, the first evalN of the toy test split. */
  heldOut: Float32Array;
  /** As many training points: the floor of the scores. */
  trainSample: Float32Array;
}

export async function ablationData(evalN: number): Promise<AblationData> {
  const c = preset("toy2d");
  const train = await loadDataset(c.data, "train");
  const test = await loadDataset(c.data, "test");
  const first = (d: Dataset) => d.get(Array.from({ length: evalN }, (_, i) => i)).x as Float32Array;
  return { train, heldOut: first(test), trainSample: first(train) };
}

/** Train one variant with one seed and score its EMA student. */
export async function trainAndScore(
  config: TrainConfig,
  data: AblationData,
  evalN: number,
): Promise<RunScore> {
  const started = performance.now();
  const trainer = Trainer.create(config, data.train);
  const losses: number[] = [];
  try {
    const steps = config.maxSteps;
    for (let k = 0; k < steps; k++) losses.push((await trainer.trainStep()).loss);
    const score = async (taus: number[]) => {
      const x = await sampleAll(trainer.model, trainer.ema, evalN, { taus, batch: evalN, seed: 777 });
      return {
        w1: slicedWasserstein(x, data.heldOut, 2, { seed: 1 }),
        e: energyDistance(x, data.heldOut, 2),
      };
    };
    const one = await score(samplingSchedule(1));
    const two = await score(samplingSchedule(2, config.sigmaMid));
    const every = Math.max(1, Math.floor(steps / 50));
    const lossCurve: [number, number][] = [];
    for (let s = 0; s < steps; s += every) {
      const w = losses.slice(s, s + every);
      lossCurve.push([s + w.length, w.reduce((a, b) => a + b, 0) / w.length]);
    }
    const tail = losses.slice(Math.floor(steps * 0.9));
    return {
      seed: config.seed,
      oneStepW1: one.w1,
      oneStepEnergy: one.e,
      twoStepW1: two.w1,
      twoStepEnergy: two.e,
      finalLoss: tail.reduce((a, b) => a + b, 0) / tail.length,
      lossCurve,
      seconds: (performance.now() - started) / 1000,
    };
  } finally {
    trainer.dispose();
  }
}

/** The key under which a variant's runs are shared between groups and figures of one invocation. */
function runKey(changes: Variant["changes"]): string {
  return JSON.stringify(Object.entries(changes).sort(([a], [b]) => a.localeCompare(b)));
}

/** The score of the untrained network (seed `seed`'s initialization of the toy preset), for scale. */
export async function untrainedScore(data: AblationData, evalN: number, seed = 0): Promise<number> {
  const c = preset("toy2d");
  const model = ConsistencyModel.fromConfig(c.model, { sigmaData: c.sigmaData });
  const params = model.init(seed);
  try {
    const x = await sampleAll(model, params, evalN, { taus: samplingSchedule(1), batch: evalN, seed: 777 });
    return slicedWasserstein(x, data.heldOut, 2, { seed: 1 });
  } finally {
    disposeParams(params);
  }
}

/** Trains and scores every variant of the given figures; identical variants are trained once. */
export async function runAblations(
  figures: FigureId[],
  settings: AblationSettings,
  data: AblationData,
  progress: (line: string) => void = () => {},
): Promise<FigureResult[]> {
  if (!(settings.seeds >= 2)) {
    throw new Error(`an ablation needs >= 2 seeds for its spread, got ${settings.seeds}`);
  }
  const cache = new Map<string, RunScore[]>();
  const todo = new Set<string>();
  for (const f of figures) {
    for (const g of ABLATIONS[f].groups) for (const vr of g.variants) todo.add(runKey(vr.changes));
  }
  const total = todo.size * settings.seeds;
  let done = 0;
  const started = performance.now();
  const runsOf = async (vr: Variant): Promise<RunScore[]> => {
    const key = runKey(vr.changes);
    const hit = cache.get(key);
    if (hit) return hit;
    const runs: RunScore[] = [];
    for (let seed = 0; seed < settings.seeds; seed++) {
      const r = await trainAndScore(variantConfig(vr, seed, settings.steps), data, settings.evalN);
      runs.push(r);
      done++;
      const elapsed = (performance.now() - started) / 1000;
      progress(
        `run ${done}/${total}: ${vr.name}, seed ${seed}: one-step sliced W1 ${r.oneStepW1.toFixed(4)} ` +
          `(${r.seconds.toFixed(1)} s; ${elapsed.toFixed(0)} s so far, about ${
            (elapsed / done * (total - done)).toFixed(0)
          } s to go)`,
      );
    }
    cache.set(key, runs);
    return runs;
  };
  const out: FigureResult[] = [];
  for (const f of figures) {
    const spec = ABLATIONS[f];
    const groups: GroupResult[] = [];
    for (const g of spec.groups) {
      const variants: VariantResult[] = [];
      for (const vr of g.variants) {
        const runs = await runsOf(vr);
        variants.push({ ...vr, runs, ...meanStd(runs.map((r) => r.oneStepW1)) });
      }
      const fav = variants.find((x) => x.name === g.favoured)!;
      const verdicts = variants.filter((x) => x !== fav).map((x) =>
        pairedVerdict(fav.runs.map((r) => r.oneStepW1), x.runs.map((r) => r.oneStepW1), x.name)
      );
      const { variants: _, ...rest } = g;
      groups.push({ ...rest, variants, verdicts });
    }
    out.push({ figure: f, title: spec.title, groups });
  }
  return out;
}

/** Runs the figures and returns the file to write, with the command and date that made it. */
export async function ablationFile(
  figures: FigureId[],
  settings: AblationSettings,
  command: string,
  backend: string,
  progress?: (line: string) => void,
): Promise<AblationFile> {
  const data = await ablationData(settings.evalN);
  const results = await runAblations(figures, settings, data, progress);
  return {
    command,
    date: new Date().toISOString(),
    backend,
    settings,
    floor: {
      slicedW1: slicedWasserstein(data.trainSample, data.heldOut, 2, { seed: 1 }),
      energy: energyDistance(data.trainSample, data.heldOut, 2),
    },
    figures: results,
  };
}

/** The figures named by `--figure` (one id, a comma list, or "all"). */
export function parseFigures(arg: string): FigureId[] {
  if (arg === "all") return [...FIGURES];
  const ids = arg.split(",").map((s) => s.trim());
  for (const id of ids) {
    if (!(FIGURES as readonly string[]).includes(id)) {
      throw new Error(`--figure takes ${FIGURES.join(", ")}, a comma list of them, or all; got "${id}"`);
    }
  }
  return ids as FigureId[];
}

const fav = (g: GroupResult) => g.variants.find((x) => x.name === g.favoured)!;
/** Seeds for which `alt` scored worse (higher) than `favoured` with the same seed. */
const worseIn = (favoured: VariantResult, alt: VariantResult) =>
  alt.runs.filter((r, i) => r.oneStepW1 > favoured.runs[i].oneStepW1).length;

/** One row per variant: mean ± std of the one-step sliced W1 and the verdict against the favoured choice. */
export function summaryRows(figures: FigureResult[]): Record<string, string>[] {
  const rows: Record<string, string>[] = [];
  for (const f of figures) {
    for (const g of f.groups) {
      for (const vr of g.variants) {
        const verdict = g.verdicts.find((x) => x.alternative === vr.name);
        rows.push({
          figure: f.figure,
          group: g.name,
          variant: vr.name,
          "1-step sliced W1 (mean ± std)": `${vr.mean.toFixed(4)} ± ${vr.std.toFixed(4)}`,
          "vs favoured (95% CI)": verdict
            ? `${verdict.meanDiff >= 0 ? "+" : ""}${verdict.meanDiff.toFixed(4)} [${
              verdict.ci[0].toFixed(4)
            }, ${verdict.ci[1].toFixed(4)}]`
            : "(paper's choice)",
          "worse than favoured": verdict ? `${worseIn(fav(g), vr)} of ${vr.runs.length} seeds` : "",
          verdict: verdict ? verdict.verdict : "",
        });
      }
    }
  }
  return rows;
}

/**
 * One figure's results as a plot: per variant the mean one-step sliced W1 with ± one standard deviation over
 * the seeds, every seed as a small dot, one colour per group, and the training-data floor dotted.
 */
export function ablationFigure(result: FigureResult, floor: number): Figure {
  const traces: Record<string, unknown>[] = [];
  result.groups.forEach((g, j) => {
    const label = (vr: VariantResult) => `${vr.name}${vr.name === g.favoured ? " ★" : ""}`;
    traces.push({
      type: "scatter",
      mode: "markers",
      name: `${g.name} (mean ± std)`,
      x: g.variants.map(label),
      y: g.variants.map((vr) => vr.mean),
      error_y: { type: "data", array: g.variants.map((vr) => vr.std), visible: true },
      marker: { size: 11, color: PALETTE[j % PALETTE.length] },
    });
    traces.push({
      type: "scatter",
      mode: "markers",
      name: `${g.name}: each seed`,
      x: g.variants.flatMap((vr) => vr.runs.map(() => label(vr))),
      y: g.variants.flatMap((vr) => vr.runs.map((r) => r.oneStepW1)),
      marker: { size: 5, color: PALETTE[j % PALETTE.length], opacity: 0.45 },
      showlegend: j === 0,
    });
  });
  const names = result.groups.flatMap((g) =>
    g.variants.map((vr) => `${vr.name}${vr.name === g.favoured ? " ★" : ""}`)
  );
  traces.push({
    type: "scatter",
    mode: "lines",
    name: "floor: training points vs held-out",
    x: [names[0], names[names.length - 1]],
    y: [floor, floor],
    line: { dash: "dot", color: "gray" },
  });
  const fig = figure(traces, {
    title: result.title,
    y: "one-step sliced W1 to held-out data (lower is better)",
  });
  fig.layout!.legend = { orientation: "h", y: -0.45 };
  fig.layout!.height = 520;
  fig.layout!.xaxis = { ...(fig.layout!.xaxis as object), tickangle: -25, automargin: true };
  return fig;
}

/** Each variant's training loss (Eq. 5), the mean over its seeds, against the step. */
export function lossCurveFigure(group: GroupResult): Figure {
  const traces = group.variants.map((vr, j) => {
    const curves = vr.runs.map((r) => r.lossCurve);
    const steps = curves[0].map(([s]) => s);
    const mean = steps.map((_, i) => curves.reduce((a, c) => a + c[i][1], 0) / curves.length);
    return line(steps, mean, `${vr.name} (mean of ${curves.length} seeds)`, {
      line: { color: PALETTE[j % PALETTE.length] },
    });
  });
  const fig = figure(traces, {
    title: `Training loss, ${group.name}`,
    x: "step",
    y: "loss (Eq. 5)",
    log: "y",
  });
  fig.layout!.legend = { orientation: "h", y: -0.25 };
  (fig.layout!.yaxis as Record<string, unknown>).exponentformat = "power";
  return fig;
}

const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728"];
