import { assert, assertEquals } from "@std/assert";
import {
  exactConsistencyFunction,
  type GaussianMixture,
  mixtureScore,
  sampleMixture,
  solvePfOde,
} from "../lib/pf_ode.ts";
import { Rng } from "../lib/rng.ts";
import { assertClose } from "../lib/testing.ts";

const twoModes: GaussianMixture = {
  dim: 2,
  means: [[-1, 0.5], [1, -0.5]],
  stds: [0.1, 0.3],
  weights: [0.3, 0.7],
};

function logDensity(mix: GaussianMixture, x: number[], sigma: number): number {
  let total = 0;
  mix.means.forEach((m, k) => {
    const v = sigma ** 2 + mix.stds[k] ** 2;
    const sq = x.reduce((a, xi, d) => a + (xi - m[d]) ** 2, 0);
    total += mix.weights[k] * Math.exp(-sq / (2 * v)) / (2 * Math.PI * v) ** (mix.dim / 2);
  });
  return Math.log(total);
}

Deno.test("mixtureScore equals the finite-difference gradient of log p_σ", async () => {
  const pts = [[0.2, 0.1], [-0.9, 0.4], [3, -2]];
  for (const sigma of [0.05, 0.7, 5]) {
    const score = mixtureScore(twoModes, Float64Array.from(pts.flat()), sigma);
    const h = 1e-6;
    const fd = pts.flatMap((p) =>
      p.map((_, d) => {
        const up = [...p], dn = [...p];
        up[d] += h;
        dn[d] -= h;
        return (logDensity(twoModes, up, sigma) - logDensity(twoModes, dn, sigma)) / (2 * h);
      })
    );
    await assertClose(score, fd, { atol: 1e-5, rtol: 1e-5, message: `σ=${sigma}` });
  }
});

Deno.test("solvePfOde: one Gaussian has the closed form x(σ) = m + (x0 − m)·√(σ²+s²)/√(σ0²+s²)", async () => {
  const g: GaussianMixture = { dim: 1, means: [[0.3]], stds: [0.5], weights: [1] };
  const x0 = Float64Array.from([-40, 10, 75]);
  const end = solvePfOde(g, x0, 80, 0.002);
  const expected = [...x0].map((v) =>
    0.3 + (v - 0.3) * Math.sqrt(0.002 ** 2 + 0.25) / Math.sqrt(80 ** 2 + 0.25)
  );
  await assertClose(end, expected, { atol: 1e-6, rtol: 1e-6 });
  const seen: number[] = [];
  solvePfOde(g, x0, 80, 0.002, 8, (_x, s) => seen.push(s));
  assertEquals(seen.length, 9);
  assertEquals(seen[0], 80);
  assertEquals(seen[8], 0.002);
});

Deno.test("exactConsistencyFunction: f*(x, σ_min) = x; one-step from pure noise lands on the data", () => {
  const x = Float64Array.from([0.4, -0.2]);
  assertEquals(exactConsistencyFunction(twoModes, x, 0.002), x);
  const points: GaussianMixture = { dim: 1, means: [[-0.5], [0.5]], stds: [0, 0], weights: [1, 1] };
  const rng = Rng.seeded(3);
  const z = Float64Array.from({ length: 200 }, () => 80 * rng.normal());
  const out = exactConsistencyFunction(points, z, 80);
  let left = 0;
  for (const v of out) {
    assert(Math.abs(Math.abs(v) - 0.5) < 0.01, `sample ${v} is not on a data point`);
    if (v < 0) left++;
  }
  assert(left > 70 && left < 130, `both modes are hit evenly (${left}/200 left)`);
});

Deno.test("sampleMixture: weights and widths are honoured", () => {
  const rng = Rng.seeded(9);
  const pts = sampleMixture(twoModes, 20_000, () => rng.normal(), () => rng.uniform());
  let right = 0;
  for (let p = 0; p < 20_000; p++) if (pts[2 * p] > 0) right++;
  assert(Math.abs(right / 20_000 - 0.7) < 0.02, `right-mode share ${right / 20_000}`);
});
