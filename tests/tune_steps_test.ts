// The greedy ternary search of the intermediate σ's (lib/two_step_search.ts) against a brute-force grid, on an
// analytic unimodal function and on toy data, where the "model" is the exact consistency function f* of a
// Gaussian mixture (lib/pf_ode.ts) shrunk towards 0 by 1/(1 + σ/5): a model that undershoots at high noise,
// whose two-step samples are best at one intermediate σ (≈ 1) and worse on both sides.
import { assert, assertEquals, assertRejects } from "@std/assert";
import * as tf from "@tensorflow/tfjs";
import { exactConsistencyFnHost, type GaussianMixture, sampleMixture } from "../lib/pf_ode.ts";
import { Rng } from "../lib/rng.ts";
import { sample } from "../lib/sampling.ts";
import { SIGMA_MAX, SIGMA_MIN } from "../lib/schedules.ts";
import {
  greedyStepSearch,
  pointDistances,
  searchSigmaMid,
  sigmaMidGrid,
  ternarySearchLog,
} from "../lib/two_step_search.ts";
import type { SampleBatch, SigmaBatch } from "../lib/types.ts";
import { runTaskScript } from "./task_runner.ts";

await tf.setBackend("cpu");

Deno.test("ternarySearchLog finds the minimum of a unimodal function of ln σ to its last bracket", async () => {
  for (const target of [0.013, 0.821, 7.5, 55]) {
    const calls: number[] = [];
    const r = await ternarySearchLog(
      async (s) => {
        calls.push(s);
        return await Promise.resolve(Math.abs(Math.log(s / target)) ** 1.5);
      },
      0.0021,
      80,
      20,
    );
    assertEquals(calls.length, 41, "two scores per iteration, then the centre");
    assert(
      r.bracket[0] <= target && target <= r.bracket[1],
      `target ${target} in the last bracket [${r.bracket}]`,
    );
    const width = Math.log(r.bracket[1] / r.bracket[0]);
    assert(
      Math.abs(width - Math.log(80 / 0.0021) * (2 / 3) ** 20) < 1e-9,
      `bracket shrinks by 2/3 per iteration`,
    );
    assert(Math.abs(Math.log(r.sigma / target)) <= width / 2, `σ ${r.sigma} vs ${target}`);
    assert(calls.every((s) => s > 0.0021 && s < 80), "scores only inside the open interval");
  }
  await assertRejects(() => ternarySearchLog(() => Promise.resolve(0), 1, 1), Error, "0 < lo < hi");
  await assertRejects(() => ternarySearchLog(() => Promise.resolve(NaN), 1, 2, 1), Error, "NaN");
});

const MIX: GaussianMixture = {
  dim: 2,
  means: [[1, 1], [-1, 1], [1, -1], [-1, -1]],
  stds: [0.2, 0.2, 0.2, 0.2],
  weights: [0.25, 0.25, 0.25, 0.25],
};

/** f* of MIX shrunk by 1/(1 + σ/5): right at small σ, too close to 0 at large σ. */
function undershootingModel() {
  const exact = exactConsistencyFnHost(MIX, SIGMA_MIN, 40);
  return (x: SampleBatch, sigmas: SigmaBatch) =>
    tf.tidy(() => tf.mul(exact(x, sigmas), 1 / (1 + sigmas[0] / 5)));
}

function toyScorer(n = 600) {
  const rng = Rng.seeded(5);
  const reference = Float32Array.from(sampleMixture(MIX, n, () => rng.normal(), () => rng.uniform()));
  const f = undershootingModel();
  let calls = 0;
  const draw = (taus: number[]) => {
    calls++;
    const x = sample(f, [n, 2], taus, Rng.seeded(1)); // the same noise for every schedule
    const data = x.dataSync() as Float32Array;
    x.dispose();
    return data;
  };
  const score = (taus: number[]) => Promise.resolve(pointDistances(draw(taus), reference, 2).energy);
  return { score, draw, reference, calls: () => calls };
}

/** Indices of the interior local minima of a curve. */
function localMinima(ys: number[]): number[] {
  return ys.flatMap((y, i) => (i > 0 && i < ys.length - 1 && y < ys[i - 1] && y < ys[i + 1] ? [i] : []));
}

Deno.test("greedyStepSearch (2 steps) finds the brute-force grid's best σ_mid within the grid spacing on toy data", async () => {
  const { score, draw, reference } = toyScorer();
  const grid = sigmaMidGrid(0.01, 60, 41);
  const spacing = Math.log(grid[1] / grid[0]);
  const brute = await searchSigmaMid((s) => Promise.resolve(draw([SIGMA_MAX, s])), reference, 2, grid);
  const curve = brute.rows.map((r) => r.energy);
  assertEquals(
    localMinima(curve).length,
    1,
    `a unimodal case: one interior minimum, got curve ${curve.map((c) => c.toFixed(3))}`,
  );
  assert(
    brute.best.sigmaMid > 0.3 && brute.best.sigmaMid < 3,
    `the grid's best σ_mid is ${brute.best.sigmaMid}`,
  );
  const found = await greedyStepSearch(score, 2, { lo: 0.01, hi: 60, iterations: 14 });
  assertEquals(found.taus.length, 2);
  assertEquals(found.taus[0], SIGMA_MAX);
  const off = Math.abs(Math.log(found.taus[1] / brute.best.sigmaMid));
  assert(
    off <= spacing,
    `ternary σ_mid ${found.taus[1].toFixed(4)} vs grid ${brute.best.sigmaMid.toFixed(4)}: ${
      off.toFixed(3)
    } > ${spacing.toFixed(3)} in ln σ`,
  );
  assert(
    found.score <= brute.best.energy * 1.05,
    `score ${found.score} vs the grid's best ${brute.best.energy}`,
  );
  assertEquals(found.stages[0].evaluations.length, 2 * 14 + 1);
});

Deno.test("greedyStepSearch (3 steps) fixes τ_2, then finds the grid's best τ_3 in (σ_min, τ_2)", async () => {
  const { score, draw, reference } = toyScorer();
  const found = await greedyStepSearch(score, 3, { lo: 0.01, hi: 60, iterations: 12 });
  const [tau1, tau2, tau3] = found.taus;
  assertEquals(tau1, SIGMA_MAX);
  assert(tau3 < tau2, `descending: ${found.taus}`);
  assert(
    found.stages[1].hi === tau2 && found.stages[1].evaluations.every((e) => e.taus[1] === tau2),
    "τ_2 fixed in stage 2",
  );
  const grid = sigmaMidGrid(0.01, tau2 * 0.999, 31);
  const spacing = Math.log(grid[1] / grid[0]);
  const brute = await searchSigmaMid((s) => Promise.resolve(draw([SIGMA_MAX, tau2, s])), reference, 2, grid);
  const off = Math.abs(Math.log(tau3 / brute.best.sigmaMid));
  assert(
    off <= spacing,
    `τ_3 ${tau3.toFixed(4)} vs grid ${brute.best.sigmaMid.toFixed(4)}: ${off.toFixed(3)} > ${
      spacing.toFixed(3)
    }`,
  );
  assert(
    found.score <= found.stages[0].score * 1.05,
    `3 steps (${found.score}) no worse than 2 (${found.stages[0].score})`,
  );
});

Deno.test("greedyStepSearch refuses one step and an empty range", async () => {
  const s = () => Promise.resolve(0);
  await assertRejects(() => greedyStepSearch(s, 1), Error, "steps >= 2");
  await assertRejects(() => greedyStepSearch(s, 2, { lo: 0.001 }), Error, "σ_min");
  await assertRejects(() => greedyStepSearch(s, 2, { lo: 5, hi: 4 }), Error, "lo < hi");
});

// ---- the task ------------------------------------------------------------------------------------------------

const task = (script: string, args: string[]) => runTaskScript(script, args);

Deno.test("deno task tune:steps on a toy run: the τ's it prints are the record's, inside (σ_min, σ_max) and descending", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ict-tune-steps-test-" });
  const trained = await task("train.ts", [
    "--config",
    "toy2d",
    "--run",
    `${dir}/run`,
    "--max-steps",
    "30",
    "--sample-every",
    "0",
    "--backend",
    "cpu",
  ]);
  assertEquals(trained.code, 0, trained.text.slice(-2000));
  const args = ["--run", `${dir}/run`, "--n", "200", "--iterations", "2", "--backend", "cpu"];
  const r = await task("tune_steps.ts", [...args, "--steps", "3", "--out", `${dir}/tune.json`]);
  assertEquals(r.code, 0, r.text.slice(-2000));
  const record = JSON.parse(await Deno.readTextFile(`${dir}/tune.json`));
  assert(record.metric.startsWith("energy distance of 200 samples to 200 held-out points"), record.metric);
  assertEquals(record.taus.length, 3);
  assert(
    record.taus[0] === SIGMA_MAX && record.taus[1] < 80 && record.taus[2] < record.taus[1],
    `${record.taus}`,
  );
  assert(record.taus[2] > SIGMA_MIN, `${record.taus}`);
  assertEquals(record.stages.map((s: { evaluations: unknown[] }) => s.evaluations.length), [5, 5]);
  assert(r.text.includes(`--taus ${record.taus.join(",")}`), "prints the sample command with the τ's");
  assert(r.text.includes("default 3-step τ = [80,9.7232,0.46998]"), "prints the run's default schedule");
  const bad = await task("tune_steps.ts", [...args, "--metric", "fid"]);
  assertEquals(bad.code, 1);
  assert(bad.text.includes("--metric fid needs images"), bad.text);
  await Deno.remove(dir, { recursive: true });
});
