// The intermediate noise levels of multistep sampling (CM Algorithm 1 with τ = [σ_max, τ_2, …]), found for a
// given model. Two searches: a grid over σ_mid for two steps (`searchSigmaMid`: every candidate's samples
// compared with held-out data by the sliced 1-Wasserstein and energy distances of lib/metrics/distances.ts, the
// best by the chosen one kept; notebook 05 plots its rows), and the CM paper's greedy ternary search over
// ln σ for any number of steps and any metric (`greedyStepSearch`, used by `deno task tune:steps`). The paper
// reports σ_mid = 0.821 for CIFAR-10 (lib/sampling.ts TWO_STEP_SIGMA); these find a model's own.
import { energyDistance, slicedWasserstein } from "./metrics/distances.ts";
import { SIGMA_MAX, SIGMA_MIN } from "./schedules.ts";

export interface SigmaMidRow {
  sigmaMid: number;
  slicedW1: number;
  energy: number;
}

export interface SigmaMidSearch {
  rows: SigmaMidRow[];
  /** The row with the smallest `criterion`. */
  best: SigmaMidRow;
  criterion: "energy" | "slicedW1";
}

/** Both distances of samples [N, dim] to `reference` [M, dim] (sliced W1 with directions from `seed`). */
export function pointDistances(
  x: Float32Array,
  reference: Float32Array,
  dim: number,
  seed = 1,
): { slicedW1: number; energy: number } {
  return {
    slicedW1: slicedWasserstein(x, reference, dim, { seed }),
    energy: energyDistance(x, reference, dim),
  };
}

/** `n` noise levels spaced evenly in ln σ over [lo, hi] (both included), inside (σ_min, σ_max). */
export function sigmaMidGrid(lo: number, hi: number, n: number): number[] {
  if (!(lo > SIGMA_MIN && hi < SIGMA_MAX && lo < hi) || !Number.isInteger(n) || n < 2) {
    throw new Error(`sigmaMidGrid: need σ_min < lo < hi < σ_max and n >= 2, got lo=${lo}, hi=${hi}, n=${n}`);
  }
  return Array.from({ length: n }, (_, i) => Math.exp(Math.log(lo) + (i / (n - 1)) * Math.log(hi / lo)));
}

/**
 * Scores two-step samples at every σ_mid of `grid` against `reference` ([M, dim] points). `sampleTwoStep(σ)`
 * must return [N, dim] samples; give it the same seed for every σ so that the candidates differ only by σ_mid.
 * `onProgress` is called after each candidate.
 */
export async function searchSigmaMid(
  sampleTwoStep: (sigmaMid: number) => Promise<Float32Array>,
  reference: Float32Array,
  dim: number,
  grid: number[],
  opts: {
    criterion?: "energy" | "slicedW1";
    seed?: number;
    onProgress?: (done: number, total: number) => void;
  } = {},
): Promise<SigmaMidSearch> {
  if (!grid.length) throw new Error("searchSigmaMid: empty grid");
  const criterion = opts.criterion ?? "energy";
  const rows: SigmaMidRow[] = [];
  for (const [i, sigmaMid] of grid.entries()) {
    rows.push({ sigmaMid, ...pointDistances(await sampleTwoStep(sigmaMid), reference, dim, opts.seed ?? 1) });
    opts.onProgress?.(i + 1, grid.length);
  }
  const best = rows.reduce((a, b) => (b[criterion] < a[criterion] ? b : a));
  return { rows, best, criterion };
}

// ---- the CM paper's search: greedy ternary search over the intermediate σ's -----------------------------------
// The CM paper picks its two-step σ by a ternary search that minimises FID (Sec. 6); for n steps the kit does it
// greedily: find τ_2 for two steps, fix it, then find τ_3 in (σ_min, τ_2) for three steps, and so on. Each
// search is over ln σ, where the metric of the toy and image runs is unimodal in practice (tests/tune_steps_test.ts
// checks it against a brute-force grid). Give the scorer the same noise seed for every schedule, so that
// candidates differ only by their σ's.

/** One scored schedule of the search. */
export interface StepEvaluation {
  taus: number[];
  score: number;
}

export interface TernaryResult {
  /** The centre (in ln σ) of the last bracket, and its score. */
  sigma: number;
  score: number;
  /** Every σ scored, in order. */
  evaluations: { sigma: number; score: number }[];
  /** The last bracket [lo, hi]. */
  bracket: [number, number];
}

/**
 * Ternary search for the minimum of a unimodal `score(σ)` over the open interval (lo, hi) in ln σ: each
 * iteration scores the two points at 1/3 and 2/3 of the bracket and drops the third beyond the worse one
 * (a tie keeps the middle third). The bracket shrinks to (2/3)^iterations of its log-width; the centre of the
 * last one is scored and returned.
 */
export async function ternarySearchLog(
  score: (sigma: number) => Promise<number>,
  lo: number,
  hi: number,
  iterations = 12,
): Promise<TernaryResult> {
  if (!(lo > 0 && hi > lo) || !Number.isInteger(iterations) || iterations < 1) {
    throw new Error(
      `ternarySearchLog: need 0 < lo < hi and an integer number of iterations >= 1, got lo=${lo}, hi=${hi}, ` +
        `iterations=${iterations}`,
    );
  }
  const evaluations: { sigma: number; score: number }[] = [];
  const at = async (u: number) => {
    const sigma = Math.exp(u);
    const s = await score(sigma);
    if (Number.isNaN(s)) throw new Error(`the metric is NaN at σ = ${sigma}: the samples are not finite`);
    evaluations.push({ sigma, score: s });
    return s;
  };
  let [a, b] = [Math.log(lo), Math.log(hi)];
  for (let i = 0; i < iterations; i++) {
    const m1 = a + (b - a) / 3, m2 = b - (b - a) / 3;
    const [s1, s2] = [await at(m1), await at(m2)];
    if (s1 < s2) b = m2;
    else if (s2 < s1) a = m1;
    else [a, b] = [m1, m2];
  }
  const mid = (a + b) / 2;
  const s = await at(mid);
  return { sigma: Math.exp(mid), score: s, evaluations, bracket: [Math.exp(a), Math.exp(b)] };
}

export interface StepSearchOptions {
  /** Where sampling starts (τ_1). */
  sigmaMax?: number;
  /** The lower end of every search (default: σ_min·1.01, just inside (σ_min, σ_max)). */
  lo?: number;
  /** The upper end of the first search (default σ_max). */
  hi?: number;
  /** Ternary iterations per σ. */
  iterations?: number;
  /** Called after every scored schedule. */
  onEvaluate?: (e: StepEvaluation, stage: number) => void;
}

export interface StepSearch {
  /** The schedule found: [σ_max, τ_2, …, τ_steps]. */
  taus: number[];
  /** Its score (the last stage's). */
  score: number;
  /** One per searched σ: the steps it was searched for, its bracket and result, every schedule scored. */
  stages: {
    steps: number;
    lo: number;
    hi: number;
    sigma: number;
    score: number;
    evaluations: StepEvaluation[];
  }[];
}

/**
 * The greedy search of an n-step schedule (CM Algorithm 1's τ's): τ_1 = σ_max; for k = 2 … steps, τ_k minimises
 * `score([τ_1, …, τ_{k−1}, τ_k])` by `ternarySearchLog` over (lo, τ_{k−1}) (the first over (lo, hi)), the earlier
 * τ's fixed. `score` gets the whole schedule, descending.
 */
export async function greedyStepSearch(
  score: (taus: number[]) => Promise<number>,
  steps: number,
  opts: StepSearchOptions = {},
): Promise<StepSearch> {
  if (!Number.isInteger(steps) || steps < 2) {
    throw new Error(`the step search needs steps >= 2 (one step has no intermediate σ), got ${steps}`);
  }
  const sigmaMax = opts.sigmaMax ?? SIGMA_MAX;
  const lo = opts.lo ?? SIGMA_MIN * 1.01;
  const hi = Math.min(opts.hi ?? sigmaMax, sigmaMax);
  if (!(lo > SIGMA_MIN && lo < hi)) {
    throw new Error(`the step search needs σ_min = ${SIGMA_MIN} < lo < hi <= σ_max, got lo=${lo}, hi=${hi}`);
  }
  const taus = [sigmaMax];
  const stages: StepSearch["stages"] = [];
  for (let k = 2; k <= steps; k++) {
    const upper = k === 2 ? hi : taus[taus.length - 1];
    if (!(upper > lo)) {
      throw new Error(
        `the step search for ${k} steps has an empty range: τ_${k - 1} = ${upper} <= lo = ${lo}`,
      );
    }
    const evaluations: StepEvaluation[] = [];
    const r = await ternarySearchLog(
      async (sigma) => {
        const e = { taus: [...taus, sigma], score: await score([...taus, sigma]) };
        evaluations.push(e);
        opts.onEvaluate?.(e, k);
        return e.score;
      },
      lo,
      upper,
      opts.iterations ?? 12,
    );
    taus.push(r.sigma);
    stages.push({ steps: k, lo, hi: upper, sigma: r.sigma, score: r.score, evaluations });
  }
  return { taus, score: stages[stages.length - 1].score, stages };
}
