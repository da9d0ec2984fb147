// The intermediate noise level σ_mid of two-step sampling (CM Algorithm 1 with τ = [σ_max, σ_mid]) found by a
// grid search: each candidate's two-step samples are compared with held-out data by the sliced 1-Wasserstein
// and energy distances (lib/metrics/distances.ts), and the best one by the chosen distance is kept. The paper
// reports σ_mid = 0.821 for CIFAR-10 (lib/sampling.ts TWO_STEP_SIGMA); this finds a model's own.
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
    const x = await sampleTwoStep(sigmaMid);
    rows.push({
      sigmaMid,
      slicedW1: slicedWasserstein(x, reference, dim, { seed: opts.seed ?? 1 }),
      energy: energyDistance(x, reference, dim),
    });
    opts.onProgress?.(i + 1, grid.length);
  }
  const best = rows.reduce((a, b) => (b[criterion] < a[criterion] ? b : a));
  return { rows, best, criterion };
}
