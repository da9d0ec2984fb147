// deno task bench: the MNIST-FD classifier (lib/metrics/mnist_classifier.ts) — features of 500 digits, and one
// Adam training step of batch 128 (what `deno task data:mnist-classifier` repeats 938 times), on the chosen
// backend. Images/s = 500 / (time per features iteration), or 128 / (time per step).
import * as tf from "@tensorflow/tfjs";
import { initBackend } from "../lib/backend.ts";
import { loadDataset } from "../lib/data/index.ts";
import { firstSamples, MnistClassifier, trainClassifier } from "../lib/metrics/mnist_classifier.ts";
import { disposeParams, initParams } from "../lib/nn/params.ts";
import { wasmThreads } from "../lib/wasm_threads.ts";

await initBackend({ quiet: true });
const train = await loadDataset({ dataset: "mnist", flip: false }, "train");
const net = new MnistClassifier();
const params = initParams(net.specs, 0);
const digits = tf.tensor4d(train.get(Array.from({ length: 500 }, (_, i) => i)).x, [500, 28, 28, 1]);
const on = tf.getBackend() === "wasm" ? `wasm, ${wasmThreads()} thread(s)` : tf.getBackend();
const group = `MNIST-FD classifier, on ${on}`;

Deno.bench("features of 500 digits", { group, baseline: true, n: 10, warmup: 2 }, async () => {
  const { features, logits } = net.forward(params, digits);
  await features.data();
  tf.dispose([features, logits]);
});
const oneBatch = firstSamples(train, 128);
Deno.bench("one training step, batch 128 (Adam)", { group, n: 10, warmup: 1 }, async () => {
  const r = await trainClassifier(oneBatch, { epochs: 1, batch: 128 });
  disposeParams(r.params);
});
