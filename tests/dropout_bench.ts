// deno task bench: dropout masks for [64, 32, 32, 256] (16.8M values; the paper's [1024, 32, 32, 256] is 16×)
// on the chosen backend. Before: tf.randomUniform, which fills a host buffer every pass (then uploaded to a
// GPU). After: the counter-based hash of lib/nn/dropout.ts, in a host loop on cpu/wasm and by tensor ops on a
// device, whose only upload is 16 bytes of keys per sample and layer.
import * as tf from "@tensorflow/tfjs";
import { initBackend } from "../lib/backend.ts";
import { dropoutMask, hashUniform } from "../lib/nn/dropout.ts";

await initBackend({ quiet: true });
const shape = [64, 32, 32, 256];
const group = `dropout mask [${shape}] at rate 0.3, on ${tf.getBackend()}`;
const run = async (f: () => tf.Tensor) => {
  const m = f();
  await m.data();
  m.dispose();
};
let seed = 0;
Deno.bench(
  "before: tf.randomUniform (a host buffer per pass)",
  { group, baseline: true, n: 5, warmup: 1 },
  () =>
    run(() =>
      tf.tidy(() =>
        tf.mul(
          tf.cast(tf.greaterEqual(tf.randomUniform(shape, 0, 1, "float32", ++seed), 0.3), "float32"),
          1 / 0.7,
        )
      )
    ),
);
Deno.bench(
  "after: counter hash, where this backend computes it",
  { group, n: 5, warmup: 1 },
  () => run(() => dropoutMask(shape, 0.3, ++seed, 3, 0)),
);
Deno.bench(
  "after: counter hash by tensor ops (the GPU path)",
  { group, n: 3, warmup: 1 },
  () => run(() => tf.tidy(() => tf.greaterEqual(hashUniform(shape, ++seed, 3, 0, "device"), 0.3))),
);
