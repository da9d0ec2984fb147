import { assert, assertEquals, assertThrows } from "@std/assert";
import * as tf from "@tensorflow/tfjs";
import { Rng } from "../lib/rng.ts";
import { sample, samplingSchedule, TWO_STEP_SIGMA } from "../lib/sampling.ts";
import { karrasSigmas } from "../lib/schedules.ts";
import { assertClose } from "../lib/testing.ts";
import type { SampleBatch, SigmaBatch } from "../lib/types.ts";

await tf.setBackend("cpu");

/**
 * A stand-in consistency function that is NOT zero and depends on its input and on each sample's σ:
 * f(x, σ) = 0.5·x + 0.1·σ + 0.3 (elementwise). It records every call's exact input and σ's.
 */
function recorder() {
  const calls: { x: Float32Array; sigmas: number[] }[] = [];
  const f = (x: SampleBatch, sigmas: SigmaBatch) => {
    calls.push({ x: x.dataSync() as Float32Array, sigmas: [...sigmas] });
    return network(x, sigmas);
  };
  return { f, calls };
}

function network(x: tf.Tensor, sigmas: ArrayLike<number>): tf.Tensor {
  return tf.tidy(() => {
    const s = tf.tensor(Float32Array.from(sigmas), [sigmas.length, ...new Array(x.rank - 1).fill(1)]);
    return tf.add(tf.add(tf.mul(x, 0.5), tf.mul(s, 0.1)), 0.3);
  });
}

/**
 * CM Algorithm 1 replayed in the test, from the same Rng: x ← f(τ_1·z), then for each later τ,
 * x ← f(x + √(τ² − σ_min²)·z) with a fresh z ~ N(0, I) each time (drawn as the sampler draws it: one
 * rng.seed() per network call). Returns each call's expected input.
 */
function replay(shape: number[], taus: number[], seed: number, sigmaMin = 0.002): Float32Array[] {
  const rng = Rng.seeded(seed);
  const inputs: Float32Array[] = [];
  let x: tf.Tensor | undefined;
  for (const [i, tau] of taus.entries()) {
    const z = tf.randomNormal(shape, 0, 1, "float32", rng.seed());
    const std = i === 0 ? tau : Math.sqrt(tau * tau - sigmaMin * sigmaMin);
    const input = x ? tf.add(x, tf.mul(z, std)) : tf.mul(z, std);
    inputs.push(input.dataSync() as Float32Array);
    x = network(input, new Array(shape[0]).fill(tau));
  }
  return inputs;
}

/** Every call's input equals the replay's to float32 round-off, with every sample at the call's τ. */
async function checkCalls(calls: { x: Float32Array; sigmas: number[] }[], shape: number[], taus: number[]) {
  const expected = replay(shape, taus, 7);
  assertEquals(calls.length, taus.length, "one network call per noise level");
  for (const [i, call] of calls.entries()) {
    assert(call.sigmas.length === shape[0] && call.sigmas.every((s) => s === taus[i]), `σ's of call ${i}`);
    await assertClose(call.x, expected[i], {
      atol: 1e-7,
      rtol: 2e-7,
      message: `input of call ${i} (τ ${taus[i]})`,
    });
  }
}

Deno.test("sample: one step feeds σ_max·z at σ_max and returns f's output", async () => {
  const { f, calls } = recorder();
  const out = sample(f, [64, 2], samplingSchedule(1), Rng.seeded(7));
  assertEquals(out.shape, [64, 2]);
  await checkCalls(calls, [64, 2], [80]);
  await assertClose(out, network(tf.tensor(calls[0].x, [64, 2]), new Array(64).fill(80)), {
    atol: 0,
    rtol: 0,
  });
});

Deno.test("sample: multistep replays CM Algorithm 1 exactly with a non-zero network (previous x + √(τ² − σ_min²)·z)", async () => {
  // The paper's two-step schedule, then levels near σ_min, where √(τ² − σ_min²) is far from τ (8% at 0.005).
  for (const taus of [samplingSchedule(2, TWO_STEP_SIGMA.imagenet64), [80, 1.526, 0.05, 0.01, 0.005]]) {
    const { f, calls } = recorder();
    const shape = [16, 3, 3, 2];
    const out = sample(f, shape, taus, Rng.seeded(7));
    await checkCalls(calls, shape, taus);
    const last = calls.at(-1)!;
    await assertClose(out, network(tf.tensor(last.x, shape), last.sigmas), { atol: 0, rtol: 0 });
  }
});

Deno.test("sample: the re-noising std is √(τ² − σ_min²), also with another σ_min", () => {
  // f returns zeros here, so each later call's input is pure noise: check its std against the formula (300k
  // values: the estimate is within 0.4% at 3 standard errors, and √(τ² − σ_min²) is 6% below τ at τ = 0.03).
  const calls: Float32Array[] = [];
  const zero = (x: SampleBatch) => {
    calls.push(x.dataSync() as Float32Array);
    return tf.zerosLike(x);
  };
  sample(zero, [100_000, 3], [80, 0.03], Rng.seeded(3), 0.01);
  const v = calls[1];
  const std = Math.sqrt(v.reduce((a, b) => a + b * b, 0) / v.length);
  const expected = Math.sqrt(0.03 ** 2 - 0.01 ** 2);
  assert(Math.abs(std / expected - 1) < 0.01, `re-noise std ${std}, expected ${expected} (τ would be 0.03)`);
});

Deno.test("sample: reproducible from the seed; bad schedules refused", async () => {
  const identity = (x: SampleBatch) => tf.clone(x);
  const a = await sample(identity, [3, 2], [80, 0.821], Rng.seeded(5)).data();
  const b = await sample(identity, [3, 2], [80, 0.821], Rng.seeded(5)).data();
  assertEquals(a, b);
  assertThrows(() => sample(identity, [1, 2], [80, 90], Rng.seeded(1)), Error, "must descend");
  assertThrows(() => sample(identity, [1, 2], [], Rng.seeded(1)), Error, "at least one");
  assertEquals(samplingSchedule(3), Array.from(karrasSigmas(4)).reverse().slice(0, 3));
  assertThrows(() => samplingSchedule(0), Error, "integer >= 1");
});
