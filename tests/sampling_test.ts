import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { Rng } from "../lib/rng.ts";
import { sample, samplingSchedule, TWO_STEP_SIGMA } from "../lib/sampling.ts";
import { karrasSigmas } from "../lib/schedules.ts";
import type { SampleBatch, SigmaBatch } from "../lib/types.ts";

await tf.setBackend("cpu");

/** A stand-in consistency function that returns zeros and records what it was called with. */
function recorder() {
  const calls: { std: number; sigmas: number[] }[] = [];
  const f = (x: SampleBatch, sigmas: SigmaBatch) => {
    const v = Array.from(x.dataSync());
    const std = Math.sqrt(v.reduce((a, b) => a + b * b, 0) / v.length);
    calls.push({ std, sigmas: [...sigmas] });
    return tf.zerosLike(x);
  };
  return { f, calls };
}

Deno.test("sample: one step feeds σ_max·z at σ_max", () => {
  const { f, calls } = recorder();
  const out = sample(f, [4000, 2], samplingSchedule(1), Rng.seeded(1));
  assert.deepEqual(out.shape, [4000, 2]);
  assert.equal(calls.length, 1);
  assert.ok(Math.abs(calls[0].std / 80 - 1) < 0.03, `input std ${calls[0].std}`);
  assert.ok(calls[0].sigmas.every((s) => s === 80));
});

Deno.test("sample: two steps re-noise with √(τ² − σ_min²)·z at σ_mid (CM Algorithm 1)", () => {
  const { f, calls } = recorder();
  sample(f, [4000, 2], samplingSchedule(2, TWO_STEP_SIGMA.imagenet64), Rng.seeded(2));
  assert.equal(calls.length, 2);
  const expected = Math.sqrt(1.526 ** 2 - 0.002 ** 2);
  assert.ok(Math.abs(calls[1].std / expected - 1) < 0.03, `second input std ${calls[1].std} vs ${expected}`);
  assert.ok(calls[1].sigmas.every((s) => s === 1.526));
});

Deno.test("sample: reproducible from the seed; bad schedules refused", async () => {
  const identity = (x: SampleBatch) => tf.clone(x);
  const a = await sample(identity, [3, 2], [80, 0.821], Rng.seeded(5)).data();
  const b = await sample(identity, [3, 2], [80, 0.821], Rng.seeded(5)).data();
  assert.deepEqual(a, b);
  assert.throws(() => sample(identity, [1, 2], [80, 90], Rng.seeded(1)), /must descend/);
  assert.throws(() => sample(identity, [1, 2], [], Rng.seeded(1)), /at least one/);
  assert.deepEqual(samplingSchedule(3), Array.from(karrasSigmas(4)).reverse().slice(0, 3));
  assert.throws(() => samplingSchedule(0), /integer >= 1/);
});
