import { assert, assertEquals, assertThrows } from "@std/assert";
import * as tf from "@tensorflow/tfjs";
import {
  CM_FOURIER_SCALE,
  fourierFeatures,
  fourierFrequencies,
  ICT_FOURIER_SCALE,
  positionalEmbedding,
} from "../lib/embeddings.ts";
import { Rng } from "../lib/rng.ts";
import { assertClose } from "../lib/testing.ts";
import { REF } from "./reference.ts";

await tf.setBackend("cpu");

Deno.test("fourierFeatures: [sin(2π c W), cos(2π c W)] matches numpy", async () => {
  const feats = fourierFeatures(tf.tensor1d(REF.fourier_c_noise), Float32Array.from(REF.fourier_freqs));
  assertEquals(feats.shape, [4, 6]);
  await assertClose(feats, REF.fourier_features, { atol: 1e-6, rtol: 1e-5 });
});

Deno.test("fourierFrequencies: W ~ N(0, scale²), seeded; iCT's scale is 0.02, CM's 16", () => {
  assertEquals(ICT_FOURIER_SCALE, 0.02);
  assertEquals(CM_FOURIER_SCALE, 16);
  const w = fourierFrequencies(20_000, ICT_FOURIER_SCALE, Rng.seeded(5));
  const std = Math.sqrt(w.reduce((a, v) => a + v * v, 0) / w.length);
  assert(Math.abs(std - 0.02) < 0.0005, `std ${std}`);
  assertEquals(fourierFrequencies(8, 0.02, Rng.seeded(5)), w.slice(0, 8));
  assertThrows(() => fourierFrequencies(0, 1, Rng.seeded(1)), Error, ">= 1");
});

Deno.test("positionalEmbedding: ADM's [cos, sin] layout, odd dim zero-padded, matches numpy", async () => {
  const emb = positionalEmbedding(tf.tensor1d(REF.positional_input), REF.positional_dim);
  assertEquals(emb.shape, [3, 7]);
  // c_noise up to 1095 in float32: angles carry ~1e-4 absolute error, so compare at that level.
  await assertClose(emb, REF.positional_embedding, { atol: 2e-4, rtol: 0 });
  const zero = await positionalEmbedding(tf.tensor1d([0]), 4).data();
  assertEquals([...zero], [1, 1, 0, 0]);
});
