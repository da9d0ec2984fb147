import { assert, assertEquals, assertThrows } from "@std/assert";
import {
  ctDiscretizationSteps,
  ctTeacherEmaDecay,
  ictDiscretizationSteps,
  ictWeighting,
  karrasSigmas,
  lognormalNoiseProbabilities,
  sampleLognormalIndices,
  sampleNoiseIndices,
  sampleUniformIndices,
  uniformWeighting,
} from "../lib/schedules.ts";
import { Rng } from "../lib/rng.ts";
import { assertClose } from "../lib/testing.ts";
import { REF } from "./reference.ts";

Deno.test("karrasSigmas: matches numpy and pins the endpoints exactly", async () => {
  const s = karrasSigmas(11);
  await assertClose(s, REF.karras11, { atol: 0, rtol: 1e-13 });
  assertEquals(s[0], 0.002); // numpy gives 0.0020000000000000013: the kit pins it
  assertEquals(s[10], 80);
  const big = karrasSigmas(1281);
  for (const [i, v] of Object.entries(REF.karras1281_probe)) {
    await assertClose(big[Number(i)], v as number, { atol: 0, rtol: 1e-13, message: `sigma[${i}]` });
  }
  assertEquals(big[0], 0.002);
  assertEquals(big[1280], 80);
  for (let i = 1; i < big.length; i++) assert(big[i] > big[i - 1], `ascending at ${i}`);
});

Deno.test("karrasSigmas: options and bad input", () => {
  const s = karrasSigmas(3, { sigmaMin: 1, sigmaMax: 4, rho: 1 });
  assertEquals([...s], [1, 2.5, 4]); // ρ = 1 is a linear grid
  assertThrows(() => karrasSigmas(1), Error, "n >= 2");
  assertThrows(() => karrasSigmas(10, { sigmaMin: 5, sigmaMax: 1 }), Error, "sigmaMin < sigmaMax");
});

Deno.test("ictDiscretizationSteps: the paper's CIFAR-10 run (K = 400,000) at every doubling point", () => {
  const K = 400_000; // K' = floor(400000 / (log2(128) + 1)) = 50,000
  const expected: [number, number][] = [
    [0, 11],
    [49_999, 11],
    [50_000, 21],
    [99_999, 21],
    [100_000, 41],
    [150_000, 81],
    [200_000, 161],
    [250_000, 321],
    [300_000, 641],
    [349_999, 641],
    [350_000, 1281],
    [399_999, 1281],
    [400_000, 1281],
  ];
  for (const [k, n] of expected) assertEquals(ictDiscretizationSteps(k, K), n, `N(${k})`);
  // s1/s0 = 155/10 = 15.5, neither a power of two nor a whole number, with K = 1000:
  //   K' = floor(1000 / (log2(floor(15.5)) + 1)) = floor(1000 / 4.90689) = 203   (the paper's formula)
  // and each near miss gives another K': log2(ceil(15.5)) → 200, log2(15.5) unfloored → 201,
  // floor(log2(15)) → 250, ceil(log2(15)) → 200. k = 200 … 203 and 250 tell them all apart.
  for (const [k, n] of [[199, 11], [200, 11], [201, 11], [202, 11], [203, 21], [249, 21], [250, 21]]) {
    assertEquals(ictDiscretizationSteps(k, 1000, 10, 155), n, `N(${k}) with s0 = 10, s1 = 155`);
  }
  assertEquals(ictDiscretizationSteps(405, 1000, 10, 155), 21);
  assertEquals(ictDiscretizationSteps(406, 1000, 10, 155), 41); // 2K'
  assertEquals(ictDiscretizationSteps(811, 1000, 10, 155), 81);
  assertEquals(ictDiscretizationSteps(812, 1000, 10, 155), 156); // 4K': s0·16 = 160 is capped at s1 + 1
  assertEquals(ictDiscretizationSteps(999, 1000, 10, 155), 156);
  // s1/s0 = 15, a whole number that is not a power of two: K' = floor(1000 / 4.90689) = 203 as well.
  assertEquals(ictDiscretizationSteps(202, 1000, 10, 150), 11);
  assertEquals(ictDiscretizationSteps(203, 1000, 10, 150), 21);
  assertEquals(ictDiscretizationSteps(999, 1000, 10, 150), 151); // capped at s1 + 1
  assertThrows(() => ictDiscretizationSteps(-1, K), Error, "k must be an integer");
  assertThrows(() => ictDiscretizationSteps(0, 5), Error, "too small");
});

Deno.test("ctDiscretizationSteps and ctTeacherEmaDecay: CT's square-root curriculum", () => {
  const K = 800_000;
  assertEquals(ctDiscretizationSteps(0, K), 2); // ceil(sqrt(4) - 1) + 1
  assertEquals(ctDiscretizationSteps(K, K), 151); // ceil(sqrt(151²) - 1) + 1
  // k = K/2: sqrt(0.5·(22801 − 4) + 4) = sqrt(11402.5) = 106.782…, ceil(105.78) + 1 = 107
  assertEquals(ctDiscretizationSteps(K / 2, K), 107);
  // k = 1: sqrt(22797/800000 + 4) = 2.00712 → ceil(1.00712) + 1 = 3
  assertEquals(ctDiscretizationSteps(1, K), 3);
  // μ(0) = exp(2 ln 0.9 / 2) = 0.9; μ(K) = exp(2 ln 0.9 / 151) = 0.9^(2/151) = 0.99860546974…
  assert(Math.abs(ctTeacherEmaDecay(0, K) - 0.9) < 1e-15);
  assert(Math.abs(ctTeacherEmaDecay(K, K) - 0.9986054697436) < 1e-12);
  // ImageNet 64's CT constants: μ0 = 0.95, s1 = 200 → N(K) = 201, μ(K) = 0.95^(2/201)
  assert(Math.abs(ctTeacherEmaDecay(K, K, 0.95, 2, 200) - 0.95 ** (2 / 201)) < 1e-15);
});

Deno.test("lognormalNoiseProbabilities: matches scipy, sums to 1, P_mean sign matters", async () => {
  const p11 = lognormalNoiseProbabilities(karrasSigmas(11));
  assertEquals(p11.length, 10);
  await assertClose(p11, REF.lognormal11, { atol: 1e-15, rtol: 1e-12 });
  const p = lognormalNoiseProbabilities(karrasSigmas(1281));
  assertEquals(p.length, 1280);
  assert(Math.abs(p.reduce((a, b) => a + b, 0) - 1) < 1e-12);
  for (const [i, v] of Object.entries(REF.lognormal1281_probe)) {
    await assertClose(p[Number(i)], v as number, { atol: 1e-18, rtol: 1e-10, message: `p[${i}]` });
  }
  assertEquals(p.indexOf(Math.max(...p)), REF.lognormal1281_argmax);
  // The known public mistake, P_mean = +1.1, gives a visibly different distribution:
  const wrong = lognormalNoiseProbabilities(karrasSigmas(11), 1.1);
  await assertClose(wrong, REF.lognormal11_shifted_pmean_plus, { atol: 1e-15, rtol: 1e-12 });
  assert(Math.abs(wrong[0] - p11[0]) > 0.05);
});

Deno.test("ictWeighting: λ(σ_i) = 1/(σ_{i+1} − σ_i), decreasing; uniform weighting is all ones", async () => {
  const s = karrasSigmas(11);
  const w = ictWeighting(s);
  assertEquals(w.length, 10);
  await assertClose(w, REF.ict_weighting11, { atol: 0, rtol: 1e-12 });
  for (let i = 1; i < w.length; i++) assert(w[i] < w[i - 1]);
  assertEquals([...uniformWeighting(s)], new Array(10).fill(1));
});

Deno.test("noise index samplers: seeded, in range, follow their distributions", () => {
  const sigmas = karrasSigmas(11);
  const p = lognormalNoiseProbabilities(sigmas);
  const n = 200_000;
  const idx = sampleLognormalIndices(sigmas, n, Rng.seeded(1));
  assertEquals(idx.slice(0, 50), sampleLognormalIndices(sigmas, 50, Rng.seeded(1)));
  const counts = new Array(10).fill(0);
  for (const j of idx) counts[j]++;
  for (let j = 0; j < 10; j++) {
    const sd = Math.sqrt(n * p[j] * (1 - p[j]));
    assert(Math.abs(counts[j] - n * p[j]) < 5 * sd + 1, `lognormal bin ${j}: ${counts[j]} vs ${n * p[j]}`);
  }
  const uni = sampleUniformIndices(sigmas, n, Rng.seeded(2));
  const ucounts = new Array(10).fill(0);
  for (const j of uni) ucounts[j]++;
  for (let j = 0; j < 10; j++) {
    assert(Math.abs(ucounts[j] - n / 10) < 5 * Math.sqrt(n * 0.09), `uniform bin ${j}`);
  }
  // Degenerate distributions hit exactly their support, including the last pair.
  assertEquals([...sampleNoiseIndices(new Float64Array([0, 0, 1]), 5, Rng.seeded(3))], [2, 2, 2, 2, 2]);
  assertEquals([...sampleNoiseIndices(new Float64Array([1, 0, 0]), 5, Rng.seeded(3))], [0, 0, 0, 0, 0]);
});
