// Sliced Wasserstein and energy distance: against numpy/scipy values (tests/reference/distances_reference.py),
// closed forms, and their invariances.
import { assert, assertEquals, assertNotEquals, assertThrows } from "@std/assert";
import { energyDistance, slicedWasserstein, wasserstein1d } from "../lib/metrics/distances.ts";
import { Rng } from "../lib/rng.ts";
import { assertClose } from "../lib/testing.ts";

interface W1Case {
  kind: "w1";
  a: number[];
  b: number[];
  w1: number;
}
interface NdCase {
  kind: "nd";
  dim: number;
  a: number[];
  b: number[];
  directions: number[];
  energy_v: number;
  energy_u: number;
  sliced_w1: number;
}
const ref: { cases: (W1Case | NdCase)[] } = JSON.parse(
  await Deno.readTextFile(new URL("./fixtures/distances_reference.json", import.meta.url)),
);

function randn(n: number, seed: number): Float32Array {
  const r = Rng.seeded(seed);
  return Float32Array.from({ length: n }, () => r.normal());
}

Deno.test("1-D W1 matches scipy.stats.wasserstein_distance (equal and different sizes, ties)", async () => {
  const cases = ref.cases.filter((c): c is W1Case => c.kind === "w1");
  assertEquals(cases.length, 3);
  for (const c of cases) {
    const a = Float32Array.from(c.a), b = Float32Array.from(c.b);
    await assertClose(wasserstein1d(a, b), c.w1, {
      atol: 1e-12,
      rtol: 1e-12,
      message: `W1 ${a.length}/${b.length}`,
    });
    // dim = 1: every direction is ±1, so SW1 is W1 exactly.
    await assertClose(slicedWasserstein(a, b, 1, { projections: 8 }), c.w1, { atol: 1e-12, rtol: 1e-12 });
  }
});

Deno.test("energy distance (V and U) and fixed-direction SW1 match numpy/scipy in 2-D and 3-D", async () => {
  const cases = ref.cases.filter((c): c is NdCase => c.kind === "nd");
  assertEquals(cases.length, 3);
  for (const c of cases) {
    const a = Float32Array.from(c.a), b = Float32Array.from(c.b);
    const msg = `dim ${c.dim}, ${a.length / c.dim} vs ${b.length / c.dim} points`;
    const tol = { atol: 1e-12, rtol: 1e-12 };
    await assertClose(energyDistance(a, b, c.dim), c.energy_v, { ...tol, message: `energy V, ${msg}` });
    await assertClose(energyDistance(a, b, c.dim, "U"), c.energy_u, { ...tol, message: `energy U, ${msg}` });
    await assertClose(
      slicedWasserstein(a, b, c.dim, { directions: Float32Array.from(c.directions) }),
      c.sliced_w1,
      { ...tol, message: `SW1, ${msg}` },
    );
  }
});

Deno.test("SW1 of a translated copy is |t|·E|θ₁|: 2/π in 2-D, 1/2 in 3-D (Monte Carlo over directions)", async () => {
  const k = 4096; // standard error ≈ 0.8% (2-D), 0.9% (3-D) of the mean; seeded, so deterministic
  for (const [dim, factor] of [[2, 2 / Math.PI], [3, 0.5]] as const) {
    const t = dim === 2 ? [3, -4] : [1, 2, -2]; // |t| = 5 and 3
    const norm = Math.hypot(...t);
    const a = randn(300 * dim, dim);
    const b = a.map((v, i) => v + t[i % dim]);
    const sw = slicedWasserstein(a, b, dim, { projections: k, seed: 11 });
    await assertClose(sw, norm * factor, { atol: 0, rtol: 0.025, message: `SW1 of a translation, ${dim}-D` });
  }
});

Deno.test("SW1: zero for identical sets and for a set against its duplicate, symmetric, seeded", () => {
  const a = randn(2 * 200, 1), b = randn(2 * 150, 2).map((v) => 0.5 * v + 1);
  assertEquals(slicedWasserstein(a, a, 2, { seed: 3 }), 0);
  const twice = new Float32Array([...a, ...a]); // different size, same distribution: quantile matching
  assert(Math.abs(slicedWasserstein(a, twice, 2)) < 1e-12);
  const ab = slicedWasserstein(a, b, 2, { seed: 5 });
  assert(ab > 0.3, `SW1 of different sets is ${ab}`);
  assert(Math.abs(ab - slicedWasserstein(b, a, 2, { seed: 5 })) < 1e-12, "symmetry");
  assertEquals(slicedWasserstein(a, b, 2, { seed: 5 }), ab, "same seed, same value");
  assertNotEquals(slicedWasserstein(a, b, 2, { seed: 6 }), ab, "another seed, other directions");
  assert(Number.isNaN(slicedWasserstein(a, b.map((v, i) => i === 7 ? NaN : v), 2)));
  assertThrows(() => slicedWasserstein(a, b, 3), Error, "not a non-empty [N, 3]");
});

Deno.test("energy distance: zero for equal distributions, symmetric; U can go negative", () => {
  const a = randn(2 * 100, 21), b = randn(2 * 70, 22).map((v) => v + 0.8);
  assert(Math.abs(energyDistance(a, a, 2)) < 1e-12, "identical sets");
  const twice = new Float32Array([...a, ...a]);
  assert(Math.abs(energyDistance(a, twice, 2)) < 1e-12, "V-statistic sees distributions");
  const ab = energyDistance(a, b, 2);
  assert(ab > 0.1, `energy distance of shifted sets is ${ab}`);
  assert(Math.abs(ab - energyDistance(b, a, 2)) < 1e-12, "symmetry");
  // Identical sets, S = Σ|a_i − a_j|: U = 2S/n² − 2S/(n(n−1)) < 0, while V = 0.
  assert(energyDistance(a, a, 2, "U") < 0);
  // The generic dim path agrees with the unrolled 2-D one (embed in 3-D with a zero coordinate).
  const lift = (x: Float32Array) =>
    Float32Array.from({ length: (x.length / 2) * 3 }, (_, i) => i % 3 === 2 ? 0 : x[(i / 3 | 0) * 2 + i % 3]);
  assert(Math.abs(energyDistance(lift(a), lift(b), 3) - ab) < 1e-12, "3-D path");
  assert(Number.isNaN(energyDistance(a, b.map((v, i) => i === 3 ? Infinity : v), 2)));
});

Deno.test("energy distance of 4000 vs 4000 2-D points takes well under a few seconds", () => {
  const a = randn(2 * 4000, 31), b = randn(2 * 4000, 32);
  const t0 = performance.now();
  const d = energyDistance(a, b, 2);
  const ms = performance.now() - t0;
  assert(d >= 0 && d < 0.01, `two samples of one Gaussian: ${d}`);
  assert(ms < 5000, `${ms.toFixed(0)} ms`);
});
