// The MNIST-FD proxy (lib/metrics/mnist_classifier.ts + evaluate.ts): the classifier learns (test accuracy far
// above chance after a short training), training is deterministic, the cache round-trips and refuses what is
// not a classifier, and the distance orders what it should: same images 0 < other real digits < noisy digits
// < noise. On single-threaded wasm with the kit's training kernels, on the first few thousand images.
import { assert, assertEquals, assertMatch, assertNotEquals, assertRejects, assertThrows } from "@std/assert";
import * as tf from "@tensorflow/tfjs";
import "@tensorflow/tfjs-backend-wasm";
import { type Dataset, loadDataset } from "../lib/data/index.ts";
import {
  arraySource,
  computeFeatures,
  datasetSource,
  frechetBetween,
  loadProxy,
} from "../lib/metrics/evaluate.ts";
import {
  classifierPath,
  ensureClassifier,
  evaluateClassifier,
  firstSamples,
  loadClassifier,
  MnistClassifier,
  trainClassifier,
} from "../lib/metrics/mnist_classifier.ts";
import { writeSafetensors } from "../lib/io/checkpoint.ts";
import { disposeParams, initParams } from "../lib/nn/params.ts";
import { Rng } from "../lib/rng.ts";
import { assertClose } from "../lib/testing.ts";
import { registerWasmTrainingKernels } from "../lib/wasm_kernels.ts";

registerWasmTrainingKernels();
const useWasm = async () => assert(await tf.setBackend("wasm"));

const mnist = { dataset: "mnist" as const, flip: false };
const train = await loadDataset(mnist, "train");
const test = await loadDataset(mnist, "test");
const dir = await Deno.makeTempDir({ prefix: "ict-mnist-fd-" });
const path = `${dir}/mnist-classifier.safetensors`;

/** The classifier every test below shares: 2 epochs on 3,000 images (≈ 47 steps). */
async function sharedClassifier() {
  return await ensureClassifier("mnist", { path, limit: 3000, epochs: 2 });
}

Deno.test("a short training learns: test accuracy far above chance, and the file says what it is", async () => {
  await useWasm();
  const untrained = new MnistClassifier();
  const p0 = initParams(untrained.specs, 0);
  const before = await evaluateClassifier(p0, firstSamples(test, 1000));
  disposeParams(p0);
  const r = await sharedClassifier();
  assertEquals(r.trained, true);
  assertEquals({ ...r.info, testAccuracy: 0 }, {
    dataset: "mnist",
    testAccuracy: 0,
    epochs: 2,
    trainImages: 3000,
    seed: 0,
  });
  assert(before.accuracy < 0.3, `untrained accuracy ${before.accuracy}`);
  assert(r.info.testAccuracy > 0.8, `trained test accuracy ${r.info.testAccuracy} (10,000 test images)`);
  const again = await ensureClassifier("mnist", { path });
  assertEquals(again.trained, false, "a cached classifier is not trained again");
  assertEquals(again.info.testAccuracy, r.info.testAccuracy);
});

Deno.test("training is deterministic: the same seed gives bit-identical weights", async () => {
  await useWasm();
  const small = firstSamples(train, 256);
  const a = await trainClassifier(small, { epochs: 1, batch: 64, seed: 3 });
  const b = await trainClassifier(small, { epochs: 1, batch: 64, seed: 3 });
  const c = await trainClassifier(small, { epochs: 1, batch: 64, seed: 4 });
  assertEquals(a.steps, 4);
  for (const [name, t] of a.params) {
    assertEquals(t.dataSync(), b.params.get(name)!.dataSync(), name);
  }
  assertNotEquals(a.params.get("hidden.weight")!.dataSync(), c.params.get("hidden.weight")!.dataSync());
  [a, b, c].forEach((r) => disposeParams(r.params));
});

Deno.test("MNIST-FD orders images: same 0 < other digits < noisy digits < noise; labelled not comparable to FID", async () => {
  await useWasm();
  await sharedClassifier();
  const net = await loadProxy("mnist", path);
  assertEquals(net.metric, "MNIST-FD");
  assertMatch(net.caveat!, /NOT comparable to FID/);
  assertMatch(net.weights, /^mnist classifier sha256:[0-9a-f]{16} \(test accuracy \d+\.\d\d%\)$/);
  const n = 500;
  const digits = (data: Dataset, offset: number) =>
    data.get(Array.from({ length: n }, (_, i) => offset + i)).x;
  const real = digits(test, 0);
  const rng = Rng.seeded(9);
  const noisy = digits(train, 0).map((v) => Math.max(-1, Math.min(1, v + 0.6 * rng.normal())));
  const noise = real.map(() => rng.uniform() * 2 - 1);
  const shape = [28, 28, 1];
  const fd = async (x: Float32Array) =>
    await frechetBetween(net, arraySource("real", real, shape), arraySource("other", x, shape));
  const same = await fd(real);
  const other = await fd(digits(train, 0));
  const blurred = await fd(noisy);
  const random = await fd(noise);
  await assertClose(same, 0, { atol: 1e-6, message: "the same images" });
  assert(other > 1e-3 && other < blurred && blurred < random, `0 < ${other} < ${blurred} < ${random}`);
  net.dispose();
});

Deno.test("features: a dataset source and an array source of the same images agree; wrong sizes are refused", async () => {
  await useWasm();
  await sharedClassifier();
  const net = await loadProxy("mnist", path);
  const fromData = await computeFeatures(net, await datasetSource(mnist, "test", 64), { batch: 25 });
  const x = test.get(Array.from({ length: 64 }, (_, i) => i)).x;
  const fromArray = await computeFeatures(net, arraySource("array", x, [28, 28, 1]), { batch: 64 });
  assertEquals(fromData.count, 64);
  await assertClose(fromArray.stats.mean(), fromData.stats.mean(), { atol: 1e-9 });
  await assertClose(fromArray.stats.covariance(), fromData.stats.covariance(), { atol: 1e-9 });
  const cifarLike = tf.zeros([2, 32, 32, 3]) as tf.Tensor4D;
  assertMatch(assertThrows(() => net.features(cifarLike), Error).message, /28×28 grayscale .*use FID/);
  cifarLike.dispose();
  net.dispose();
});

Deno.test("the cache: missing names the task, a file of another kind or dataset is refused", async () => {
  assertMatch(
    (await assertRejects(() => loadClassifier("mnist", `${dir}/none.safetensors`), Error)).message,
    /no mnist classifier .*deno task data:mnist-classifier --data mnist/,
  );
  await assertRejects(() => loadProxy("fashion-mnist", path), Error, "not a fashion-mnist classifier");
  const other = `${dir}/other.safetensors`;
  await writeSafetensors(other, new Map([["x", { dtype: "F32", shape: [1], data: new Float32Array(1) }]]));
  assertMatch(
    (await assertRejects(() => loadClassifier("mnist", other), Error)).message,
    /not a mnist classifier .*deno task data:mnist-classifier/,
  );
  assertMatch(classifierPath("fashion-mnist"), /data\/classifiers\/fashion-mnist-classifier\.safetensors$/);
  assertThrows(() => firstSamples(train, 0), Error, "whole number");
});
