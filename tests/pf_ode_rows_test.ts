// lib/pf_ode.ts: the ODE solved for all rows in one pass gives each row exactly what solving it alone gives.
import { assert, assertEquals, assertThrows } from "@std/assert";
import * as tf from "@tensorflow/tfjs";
import {
  exactConsistencyFn,
  exactConsistencyFnHost,
  exactConsistencyPerRow,
  type GaussianMixture,
  solvePfOde,
} from "../lib/pf_ode.ts";
import { SIGMA_MIN } from "../lib/schedules.ts";

const mix2d: GaussianMixture = {
  dim: 2,
  means: [[-0.5, 0.2], [0.6, -0.3]],
  stds: [0.05, 0.15],
  weights: [0.4, 0.6],
};

Deno.test("exactConsistencyPerRow: each row equals its own solvePfOde, bit for bit", () => {
  const sigmas = [3, 0.5, 3, 80, SIGMA_MIN, 0.5, 3];
  const x = Float64Array.from({ length: sigmas.length * 2 }, (_, i) => Math.sin(1.7 * i) * 2);
  const got = exactConsistencyPerRow(mix2d, x, sigmas, SIGMA_MIN, 50);
  for (let b = 0; b < sigmas.length; b++) {
    const alone = solvePfOde(mix2d, x.slice(2 * b, 2 * b + 2), sigmas[b], SIGMA_MIN, 50);
    assertEquals(
      Array.from(got.subarray(2 * b, 2 * b + 2)),
      Array.from(alone),
      `row ${b} (σ = ${sigmas[b]})`,
    );
  }
  assertEquals(Array.from(got.subarray(8, 10)), Array.from(x.subarray(8, 10))); // σ_min: f*(x, σ_min) = x
  assertEquals(Array.from(x.subarray(0, 2)), [0, Math.sin(1.7) * 2]); // the input is not changed
  assertThrows(() => exactConsistencyPerRow(mix2d, x, sigmas.slice(1)), Error, "points for");
});

Deno.test("exactConsistencyFnHost agrees with the tensor solver exactConsistencyFn (float32)", async () => {
  await tf.setBackend("cpu");
  const sigmas = Float64Array.of(80, 2, 2, 0.1, SIGMA_MIN, 0.1);
  const x = tf.tensor2d(Float32Array.from({ length: 12 }, (_, i) => Math.cos(i) * (i < 2 ? 60 : 1)), [6, 2]);
  const a = await exactConsistencyFnHost(mix2d, SIGMA_MIN, 100)(x, sigmas).data();
  const b = await exactConsistencyFn(mix2d, SIGMA_MIN, 100)(x, sigmas).data();
  for (let i = 0; i < a.length; i++) assert(Math.abs(a[i] - b[i]) < 1e-4, `element ${i}: ${a[i]} vs ${b[i]}`);
  x.dispose();
});
