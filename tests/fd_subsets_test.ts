// lib/metrics/fd_subsets.ts: random subsets, distances of rows, the spread over draws, the 1/n extrapolation.
import { assert, assertAlmostEquals, assertEquals, assertThrows } from "@std/assert";
import { extrapolateInfinity, fdOverDraws, frechetOfRows, randomSubset } from "../lib/metrics/fd_subsets.ts";
import { Rng } from "../lib/rng.ts";

Deno.test("randomSubset: n distinct indices in range, different seeds differ, the same seed repeats", () => {
  const s = randomSubset(1000, 300, 1);
  assertEquals(new Set(s).size, 300);
  assert(s.every((i) => i < 1000));
  assertEquals(Array.from(randomSubset(1000, 300, 1)), Array.from(s));
  assert(Array.from(randomSubset(1000, 300, 2)).some((v, i) => v !== s[i]));
  assert(Math.max(...s) > 900, "a random subset is not the first n"); // the first 300 would stop at 299
  assertThrows(() => randomSubset(10, 11, 0));
});

Deno.test("extrapolateInfinity recovers FD_∞ and k of an exact a + k/n", () => {
  const ns = [500, 1000, 2500, 10_000];
  const { fdInf, slope } = extrapolateInfinity(ns, ns.map((n) => 1.5 + 800 / n));
  assertAlmostEquals(fdInf, 1.5, 1e-9);
  assertAlmostEquals(slope, 800, 1e-6);
});

Deno.test("frechetOfRows: shifted copies give ‖Δμ‖²; the bias of equal distributions falls like 1/n", () => {
  const dim = 3;
  const rng = Rng.seeded(4);
  const a = Float32Array.from({ length: 4000 * dim }, () => rng.normal());
  const shifted = a.map((v, i) => (i % dim === 0 ? v + 2 : v));
  const rows = Array.from({ length: 4000 }, (_, i) => i);
  assertAlmostEquals(frechetOfRows(a, rows, shifted, rows, dim), 4, 1e-3);
  const small = fdOverDraws(a, a, dim, 100, 8, 1, true);
  const large = fdOverDraws(a, a, dim, 1000, 8, 1, true);
  assertEquals(small.values.length, 8);
  assert(small.std > 0, "draws must differ");
  assert(large.mean < small.mean / 4, `bias should fall like 1/n: ${small.mean} → ${large.mean}`);
});
