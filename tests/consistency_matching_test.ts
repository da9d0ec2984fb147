// lib/consistency_matching.ts: the posterior of a Gaussian, Tweedie's identity E[x̌ | x_σ] = x̆, and §3.2's
// scaled gradients (μ = 0: CT ≈ CM and f* is stationary; a lagging teacher: a gradient that grows with N).
import { assert, assertAlmostEquals } from "@std/assert";
import { ctTargets, eulerTarget, posteriorSamples, scaledGradients } from "../lib/consistency_matching.ts";
import type { GaussianMixture } from "../lib/pf_ode.ts";
import { Rng } from "../lib/rng.ts";

const toy: GaussianMixture = { dim: 1, means: [[-0.5], [0.6]], stds: [0.05, 0.15], weights: [0.4, 0.6] };
const mean = (v: Float64Array) => v.reduce((a, b) => a + b, 0) / v.length;

Deno.test("posteriorSamples: one Gaussian N(m, s²) observed with noise σ has the closed-form posterior", () => {
  const g: GaussianMixture = { dim: 1, means: [[1]], stds: [0.5], weights: [1] };
  const x = posteriorSamples(g, [3], 1, 40_000, Rng.seeded(1)); // mean (0.25·3 + 1)/1.25 = 1.4, var 0.2
  assertAlmostEquals(mean(x), 1.4, 0.01);
  assertAlmostEquals(mean(x.map((v) => (v - 1.4) ** 2)), 0.2, 0.01);
});

Deno.test("ctTargets average to the Euler target of Eq. 3 (Tweedie), not to the exact ODE step", () => {
  for (const [xHi, sHi, sLo] of [[0.1, 0.6, 0.5], [-0.4, 2, 1.5], [5, 20, 15]]) {
    const t = ctTargets(toy, [xHi], sHi, sLo, 40_000, Rng.seeded(2));
    const m = mean(t);
    const sd = Math.sqrt(mean(t.map((v) => (v - m) ** 2)));
    const euler = eulerTarget(toy, Float64Array.of(xHi), [sHi], [sLo])[0];
    assert(Math.abs(m - euler) < 4 * sd / Math.sqrt(t.length), `x = ${xHi}: ${m} vs ${euler}`);
  }
});

Deno.test("scaledGradients: μ = 0 CT tracks CM; f* is stationary; a lagging teacher's gradient grows with N", () => {
  const at = (n: number, a: number, lag: number) =>
    scaledGradients(toy, { n, a, lag, batch: 1500, rng: Rng.seeded(3), steps: 40 });
  const g = at(41, 0.3, 0.05);
  assert(Math.abs(g.ct - g.cm) < 0.05 * Math.abs(g.cm), `CT ${g.ct} vs CM ${g.cm}`);
  assert(g.cm > 0, "the gradient points back toward a = 0");
  const still = at(41, 0, 0);
  assert(Math.abs(still.cm) < 0.02 * Math.abs(g.cm), `f* is not stationary under CM: ${still.cm}`);
  const [small, large] = [at(11, 0, 0.05), at(81, 0, 0.05)];
  assert(small.ctEma < 0 && large.ctEma < 0, "a teacher with larger a pulls the student's a up");
  assert(large.ctEma < 3 * small.ctEma, `(N − 1)·gradient should grow: ${small.ctEma} → ${large.ctEma}`);
});
