// lib/ablation.ts: the verdict rule, the t quantiles, and that each variant changes exactly what it says.
import { assert, assertAlmostEquals, assertEquals, assertThrows } from "@std/assert";
import {
  ABLATIONS,
  FIGURES,
  meanStd,
  pairedVerdict,
  parseFigures,
  tQuantile975,
  variantConfig,
} from "../lib/ablation.ts";
import { preset } from "../lib/train/config.ts";

Deno.test("t quantiles: table values and the normal limit", () => {
  assertAlmostEquals(tQuantile975(1), 12.706, 1e-3);
  assertAlmostEquals(tQuantile975(2), 4.303, 1e-3);
  assertAlmostEquals(tQuantile975(4), 2.776, 1e-3);
  assertAlmostEquals(tQuantile975(30), 2.04, 5e-3);
  assertThrows(() => tQuantile975(0));
});

Deno.test("meanStd: sample standard deviation (n − 1)", () => {
  const { mean, std } = meanStd([1, 2, 3, 4]);
  assertEquals(mean, 2.5);
  assertAlmostEquals(std, Math.sqrt(5 / 3), 1e-12);
});

Deno.test("pairedVerdict: interval by hand, and each of the three outcomes", () => {
  // differences 0.1, 0.2, 0.3: mean 0.2, sd 0.1, half-width 4.303·0.1/√3 = 0.248: the interval holds 0
  const wide = pairedVerdict([1, 1, 1], [1.1, 1.2, 1.3], "alt");
  assertAlmostEquals(wide.meanDiff, 0.2, 1e-12);
  assertAlmostEquals(wide.ci[0], 0.2 - 4.303 * 0.1 / Math.sqrt(3), 1e-6);
  assertAlmostEquals(wide.ci[1], 0.2 + 4.303 * 0.1 / Math.sqrt(3), 1e-6);
  assertEquals(wide.verdict, "inconclusive");
  // differences 0.2, 0.21, 0.22: half-width 4.303·0.01/√3 = 0.025, the interval lies above 0
  const v = pairedVerdict([1, 1, 1], [1.2, 1.21, 1.22], "alt");
  assertEquals(v.alternative, "alt");
  assertEquals(v.verdict, "agrees"); // the alternative scores worse (higher): the paper's choice wins
  assertEquals(pairedVerdict([1.2, 1.21, 1.22], [1, 1, 1]).verdict, "disagrees");
  // a tight interval but a difference far below 2% of the score: too small to judge
  assertEquals(pairedVerdict([0.447, 0.447, 0.447], [0.4471, 0.44711, 0.44709]).verdict, "inconclusive");
  assertThrows(() => pairedVerdict([1], [2]));
});

Deno.test("variantConfig: one change on top of the iCT toy preset, the curriculum fitted to the steps", () => {
  const base = variantConfig({ name: "base", changes: {} }, 3, 500);
  const ref = preset("toy2d");
  assertEquals(base.seed, 3);
  assertEquals(base.totalIters, 500);
  assertEquals(base.maxSteps, 500);
  for (
    const k of ["teacher", "metric", "curriculum", "s0", "s1", "noise", "weighting", "sharedDropout"] as const
  ) {
    assertEquals(base[k], ref[k], k);
  }
  const ema = variantConfig({ name: "ema", changes: { teacher: "ema" } }, 0, 500);
  assertEquals(ema.teacher, "ema");
  assertEquals(ema.metric, ref.metric);
  const scale = variantConfig({ name: "16", changes: { "model.fourierScale": 16 } }, 0, 500);
  assertEquals((scale.model as { fourierScale: number }).fourierScale, 16);
  assertThrows(() => variantConfig({ name: "bad", changes: { nosuch: 1 } }, 0, 10), Error, "no setting");
  assertThrows(() => variantConfig({ name: "bad", changes: { s1: "x" } }, 0, 10), Error, "takes a number");
});

Deno.test("every ablation: the favoured variant exists, names are unique, every change is a real setting", () => {
  for (const f of FIGURES) {
    for (const g of ABLATIONS[f].groups) {
      const names = g.variants.map((x) => x.name);
      assertEquals(new Set(names).size, names.length, `${f}/${g.name}: duplicate names`);
      assert(names.includes(g.favoured), `${f}/${g.name}: favoured "${g.favoured}" is not a variant`);
      assert(g.variants.length >= 2, `${f}/${g.name}: nothing to compare`);
      for (const vr of g.variants) variantConfig(vr, 0, 100); // throws on an unknown or mistyped setting
      const configs = g.variants.map((vr) => JSON.stringify(variantConfig(vr, 0, 100)));
      assertEquals(
        new Set(configs).size,
        configs.length,
        `${f}/${g.name}: two variants train the same config`,
      );
    }
  }
});

Deno.test("parseFigures: ids, lists, all; anything else is refused", () => {
  assertEquals(parseFigures("2a"), ["2a"]);
  assertEquals(parseFigures("1,5"), ["1", "5"]);
  assertEquals(parseFigures("all"), [...FIGURES]);
  assertThrows(() => parseFigures("2"), Error, "--figure takes");
});
