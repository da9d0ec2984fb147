// The networks: the paper configs' sizes (counted from shapes, nothing allocated), output shapes, the
// boundary condition of the consistency model, shared dropout masks, input errors.
import { assert, assertEquals, assertMatch, assertNotEquals, assertThrows } from "@std/assert";
import * as tf from "@tensorflow/tfjs";
import { ConsistencyModel } from "../lib/consistency_model.ts";
import { ADM_IMAGENET64, buildNetwork, modelConfig, MODELS } from "../lib/models/index.ts";
import { oneHotLabels } from "../lib/models/network.ts";
import { countParams, EVAL, initParams } from "../lib/nn/params.ts";
import { SIGMA_MIN } from "../lib/schedules.ts";
import { assertClose } from "../lib/testing.ts";
import { TINY_ADM, TINY_NCSNPP } from "./reference/tiny_networks.ts";

await tf.setBackend("cpu");

/** Add N(0, std²) noise to every parameter: zero-initialized layers would hide the paths under test. */
function perturb(p: Map<string, tf.Tensor>, std: number, seed: number): void {
  for (const [k, v] of p) p.set(k, tf.add(v, tf.randomNormal(v.shape, 0, std, "float32", seed)));
}

// SETTINGS.md, "Networks": EDM's reference networks, FLOPs = 2 × MACs at batch 1.
const PAPER: [string, number, number][] = [
  ["ncsnpp-cifar10", 56.40e6, 42.8e9],
  ["ncsnpp-cifar10-deep", 97.6e6, 76.7e9],
  ["adm-imagenet64", 295.9e6, 219.3e9],
  ["adm-imagenet64-deep", 495.4e6, 362.9e9],
];
for (const [name, params, flops] of PAPER) {
  Deno.test(`${name}: ${params / 1e6}M parameters and ${flops / 1e9} GFLOP per image, within 0.1%`, () => {
    const net = buildNetwork(modelConfig(name));
    const n = countParams(net.specs);
    assert(Math.abs(n / params - 1) < 1e-3, `${name}: ${n} parameters, paper ${params}`);
    assert(Math.abs(net.cost.flops / flops - 1) < 1e-3, `${name}: ${net.cost.flops} FLOP, paper ${flops}`);
  });
}

Deno.test("exact parameter counts (a regression guard for the architectures)", () => {
  const counts = Object.fromEntries(
    PAPER.map(([name]) => [name, countParams(buildNetwork(modelConfig(name)).specs)]),
  );
  assertEquals(counts, {
    "ncsnpp-cifar10": 56_395_523,
    "ncsnpp-cifar10-deep": 97_610_499,
    "adm-imagenet64": 295_899_267,
    "adm-imagenet64-deep": 495_357_699,
  });
});

Deno.test("small configs stay small (≤ 2M parameters)", () => {
  for (const name of ["ncsnpp-small-32", "ncsnpp-small-28", "mlp-2d"]) {
    const n = countParams(buildNetwork(modelConfig(name)).specs);
    assert(n <= 2e6, `${name} has ${n} parameters`);
  }
});

Deno.test("ADM without scale-shift: each block's affine layer loses the shift half", () => {
  const withSS = buildNetwork(ADM_IMAGENET64).specs;
  const without = countParams(buildNetwork({ ...ADM_IMAGENET64, scaleShift: false }).specs);
  // affine.weight [emb, 2·out] and affine.bias [2·out] → [emb, out] and [out].
  const shifts = withSS.filter((s) => s.name.endsWith("affine.weight")).reduce(
    (n, s) => n + (s.shape[0] + 1) * s.shape[1] / 2,
    0,
  );
  assertEquals(countParams(withSS) - without, shifts);
});

Deno.test("every model maps [B, …sample] to the same shape; noise and labels change the output", () => {
  for (const config of [modelConfig("ncsnpp-small-28"), modelConfig("mlp-2d"), TINY_NCSNPP, TINY_ADM]) {
    const net = buildNetwork(config);
    const p = initParams(net.specs, 3);
    perturb(p, 0.1, 1);
    const x = tf.randomNormal([2, ...net.sampleShape], 0, 1, "float32", 2);
    const labels = net.labelDim ? oneHotLabels([1, 2], net.labelDim) : undefined;
    const cNoise = net.embedding === "positional" ? [100, 100] : [0.5, 0.5];
    const y = net.apply(p, x, tf.tensor1d(cNoise), EVAL, labels);
    assertEquals(y.shape, x.shape, config.family);
    if (config === TINY_ADM || config === TINY_NCSNPP || config.family === "mlp") {
      const other = net.apply(p, x, tf.tensor1d([cNoise[0], -3 * cNoise[1]]), EVAL, labels);
      assert(
        (tf.max(tf.abs(tf.sub(y, other))).arraySync() as number) > 1e-4,
        `${config.family}: c_noise has no effect`,
      );
    }
    if (labels) {
      const other = net.apply(p, x, tf.tensor1d(cNoise), EVAL, oneHotLabels([1, 3], net.labelDim));
      assert((tf.max(tf.abs(tf.sub(y, other))).arraySync() as number) > 1e-4, "labels have no effect");
    }
  }
});

Deno.test("f_θ(x, σ_min) = x exactly; f_θ(x, σ) ≠ x above σ_min", async () => {
  for (const config of [TINY_NCSNPP, TINY_ADM, modelConfig("mlp-2d")]) {
    const model = ConsistencyModel.fromConfig(config);
    const p = model.init(4);
    perturb(p, 0.2, 5);
    const net = model.network;
    const x = tf.randomNormal([2, ...net.sampleShape], 0, 1, "float32", 6);
    const labels = net.labelDim ? oneHotLabels([0, 1], net.labelDim) : undefined;
    const f = model.apply(p, x, new Float64Array([SIGMA_MIN, SIGMA_MIN]), EVAL, labels);
    assertEquals(await f.data(), await x.data(), `${config.family}: boundary condition`);
    const g = model.apply(p, x, new Float64Array([1, 1]), EVAL, labels);
    assert((tf.max(tf.abs(tf.sub(g, x))).arraySync() as number) > 1e-3);
  }
});

Deno.test("student and teacher of a step share dropout masks (same seed), other steps differ", async () => {
  const model = ConsistencyModel.fromConfig(TINY_NCSNPP); // dropout 0.3 in every block
  const p = model.init(7);
  perturb(p, 0.2, 8);
  const x = tf.randomNormal([2, 16, 16, 3], 0, 1, "float32", 9);
  const sigmas = new Float64Array([0.7, 3]);
  const step = (seed: number) => model.apply(p, x, sigmas, { training: true, dropoutSeed: seed }).data();
  const a = await step(100);
  assertEquals(await step(100), a, "same step seed → same masks → same output");
  assertNotEquals(await step(101), a, "another step's masks");
  assertNotEquals(await model.apply(p, x, sigmas, EVAL).data(), a, "dropout is active in training");
});

Deno.test("bad inputs are refused with a message that says what was expected", () => {
  const net = buildNetwork(TINY_ADM);
  const p = initParams(net.specs, 0);
  const x = tf.zeros([2, 16, 16, 3]);
  assertThrows(() => net.apply(p, x, tf.zeros([2]), EVAL), Error, "class-conditional (10 classes)");
  assertThrows(() => net.apply(p, tf.zeros([2, 8, 8, 3]), tf.zeros([2]), EVAL), Error, "takes [16,16,3]");
  assertThrows(
    () => net.apply(p, x, tf.zeros([3]), EVAL, oneHotLabels([0, 1], 10)),
    Error,
    "2 samples but 3",
  );
  assertMatch(assertThrows(() => oneHotLabels([10], 10), Error).message, /not in 0..9/);
  assertThrows(() => modelConfig("ncsnpp"), Error, "use one of ncsnpp-cifar10");
  assertThrows(() => buildNetwork({ ...TINY_NCSNPP, resolution: 15 }), Error, "divisible by 2");
  const missing = new Map(p);
  missing.delete("map_layer0.weight");
  assertMatch(
    assertThrows(() => net.apply(missing, x, tf.zeros([2]), EVAL, oneHotLabels([0, 1], 10)), Error).message,
    /map_layer0.weight is missing/,
  );
});

Deno.test("initialization is deterministic per seed and follows EDM's modes", async () => {
  const net = buildNetwork(modelConfig("ncsnpp-small-28"));
  const a = initParams(net.specs, 1);
  const b = initParams(net.specs, 1);
  const c = initParams(net.specs, 2);
  const w = "enc.28x28_block0.conv0.weight";
  assertEquals(await a.get(w)!.data(), await b.get(w)!.data());
  assertNotEquals(await a.get(w)!.data(), await c.get(w)!.data());
  // xavier_uniform: bound √(6/(fan_in + fan_out)), fan = 32·9 each.
  const bound = Math.sqrt(6 / (2 * 32 * 9));
  const v = await a.get(w)!.data();
  assert(v.every((x) => Math.abs(x) <= bound) && Math.max(...v.map(Math.abs)) > 0.95 * bound);
  assert(
    Math.max(...(await a.get("dec.28x28_aux_conv.weight")!.data()).map(Math.abs)) < 1e-4,
    "init_zero: 1e-5 gain",
  );
  await assertClose(a.get("enc.28x28_block0.norm0.weight")!, tf.ones([32]), { atol: 0 });
  const freqs = await a.get("map_noise.freqs")!.data(); // N(0, 0.02²), not trained
  assert(freqs.every((f) => Math.abs(f) < 0.12) && !(a.get("map_noise.freqs") instanceof tf.Variable));
});

Deno.test("every model in the registry builds", () => {
  for (const name of Object.keys(MODELS)) assert(buildNetwork(modelConfig(name)).specs.length > 0, name);
});
