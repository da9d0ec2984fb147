// deno task bench: the FID Inception-v3 (lib/metrics/inception.ts) — pool_3 features and logits of a batch of 8
// images, on the chosen backend (wasm on a CPU-only machine). Synthetic weights: the speed is the same as with
// the real ones. Images/s = 8 / (time per iteration).
import * as tf from "@tensorflow/tfjs";
import { initBackend } from "../lib/backend.ts";
import { wasmThreads } from "../lib/wasm_threads.ts";
import { FidInception, syntheticImages, syntheticInceptionStateDict } from "../lib/metrics/inception.ts";

await initBackend({ quiet: true });
const net = FidInception.fromStateDict(syntheticInceptionStateDict());
const batch = 8;
const at32 = tf.tensor4d(syntheticImages(batch, 32, 32, "bench32"), [batch, 32, 32, 3]);
const at299 = tf.tensor4d(syntheticImages(batch, 299, 299, "bench299"), [batch, 299, 299, 3]);
const on = tf.getBackend() === "wasm" ? `wasm, ${wasmThreads()} thread(s)` : tf.getBackend();
const group = `FID Inception-v3 (5.71 G multiply-adds per image), batch ${batch}, on ${on}`;

async function run(x: tf.Tensor4D) {
  const { pool3, logits } = net.features(x);
  await pool3.data();
  await logits.data();
  tf.dispose([pool3, logits]);
}
Deno.bench(
  "features, 32×32 inputs (resized to 299)",
  { group, baseline: true, n: 5, warmup: 1 },
  () => run(at32),
);
Deno.bench("features, 299×299 inputs", { group, n: 5, warmup: 1 }, () => run(at299));
