// Every layer type: its gradient against central finite differences (on tiny sizes, cpu backend), and the FIR
// resampling against the depthwise (transposed) convolution that defines it.
import { assert, assertEquals, assertNotEquals, assertThrows } from "@std/assert";
import * as tf from "@tensorflow/tfjs";
import { ResBlock, type ResBlockOptions } from "../lib/nn/blocks.ts";
import {
  Conv2d,
  Dense,
  Dropout,
  dropoutMask,
  firDownsample,
  firUpsample,
  GroupNorm,
  type InitMode,
  SelfAttention,
} from "../lib/nn/layers.ts";
import { type ForwardContext, initParams, numel, type Params, Scope } from "../lib/nn/params.ts";
import { Rng } from "../lib/rng.ts";
import { assertClose } from "../lib/testing.ts";

await tf.setBackend("cpu");
const INIT: InitMode = { mode: "xavier_uniform", weight: 1, bias: 0 };

function randn(shape: number[], rng: Rng, std = 1): tf.Tensor {
  return tf.tensor(Float32Array.from({ length: numel(shape) }, () => rng.normal() * std), shape);
}

/** Random non-degenerate parameters (zero-initialized layers and unit norms would hide mistakes). */
function randomParams(scope: Scope, rng: Rng): Map<string, tf.Tensor> {
  const p = initParams(scope.specs, 1);
  for (const [k, v] of p) p.set(k, tf.add(v, randn(v.shape, rng, 0.3)));
  return p;
}

/**
 * Checks d/dε L(inputs + ε·v) at ε = 0 for L = Σ f(inputs)·R, against the autodiff gradient, for a random
 * direction v over the input AND every parameter at once, and for each tensor alone.
 */
async function gradCheck(
  name: string,
  f: (x: tf.Tensor, p: Params) => tf.Tensor,
  x: tf.Tensor,
  p: Params,
  seed: number,
): Promise<void> {
  const rng = Rng.seeded(seed);
  const names = [...p.keys()];
  const y0 = f(x, p);
  const r = randn(y0.shape, rng);
  const loss = (...ts: tf.Tensor[]) =>
    tf.sum(tf.mul(f(ts[0], new Map(names.map((k, i) => [k, ts[i + 1]]))), r));
  const all = [x, ...names.map((k) => p.get(k)!)];
  const grads = tf.grads(loss)(all);
  const dirs = all.map((t) => randn(t.shape, rng));
  // Central differences at ε and 2ε, Richardson-extrapolated: the O(ε²) error cancels.
  const central = async (v: tf.Tensor[], eps: number) => {
    const plus = loss(...all.map((t, i) => tf.add(t, tf.mul(v[i], eps))));
    const minus = loss(...all.map((t, i) => tf.sub(t, tf.mul(v[i], eps))));
    return ((await plus.data())[0] - (await minus.data())[0]) / (2 * eps);
  };
  // One tensor at a time (index i), then all together (-1).
  for (const only of [-1, ...all.keys()]) {
    const v = dirs.map((d, i) => (only < 0 || i === only ? d : tf.zerosLike(d)));
    const numeric = (4 * (await central(v, 1e-2)) - (await central(v, 2e-2))) / 3;
    let analytic = 0;
    for (let i = 0; i < all.length; i++) analytic += (await tf.sum(tf.mul(grads[i], v[i])).data())[0];
    const what = only < 0 ? "all inputs" : only === 0 ? "x" : names[only - 1];
    const tol = 2e-3 * Math.max(1, Math.abs(numeric));
    assert(
      Math.abs(numeric - analytic) <= tol,
      `${name}, direction over ${what}: autodiff ${analytic} vs finite difference ${numeric}`,
    );
  }
}

Deno.test("Dense: gradient = finite differences", async () => {
  const s = Scope.root();
  const layer = new Dense(s.child("d"), 5, 4, INIT);
  const rng = Rng.seeded(1);
  await gradCheck(
    "dense",
    (x, p) => layer.apply(p, x as tf.Tensor2D),
    randn([3, 5], rng),
    randomParams(s, rng),
    2,
  );
});

const convCases: [
  string,
  { kernel: number; up?: boolean; down?: boolean; fusedDown?: boolean; filter?: number[] },
][] = [
  ["3×3", { kernel: 3 }],
  ["1×1", { kernel: 1 }],
  ["3×3 with FIR [1,3,3,1] up", { kernel: 3, up: true, filter: [1, 3, 3, 1] }],
  ["3×3 with FIR [1,3,3,1] down", { kernel: 3, down: true, filter: [1, 3, 3, 1] }],
  ["3×3 fused FIR down (NCSN++ aux)", { kernel: 3, down: true, fusedDown: true, filter: [1, 3, 3, 1] }],
  ["1×1 with nearest up", { kernel: 1, up: true, filter: [1, 1] }],
  ["0 kernel, average-pool down", { kernel: 0, down: true, filter: [1, 1] }],
];
for (const [label, o] of convCases) {
  Deno.test(`Conv2d ${label}: gradient = finite differences, output size`, async () => {
    const s = Scope.root();
    const cout = o.kernel === 0 ? 3 : 2;
    const layer = new Conv2d(s.child("c"), 3, cout, [6, 6], { ...o, init: INIT, resampleFilter: o.filter });
    const rng = Rng.seeded(3);
    const x = randn([2, 6, 6, 3], rng);
    const p = randomParams(s, rng);
    const y = layer.apply(p, x as tf.Tensor4D);
    assertEquals(y.shape, [2, ...layer.outResolution, cout]);
    assertEquals(layer.outResolution, o.up ? [12, 12] : o.down ? [3, 3] : [6, 6]);
    await gradCheck(`conv ${label}`, (xx, pp) => layer.apply(pp, xx as tf.Tensor4D), x, p, 4);
  });
}

Deno.test("GroupNorm: gradient = finite differences; normalizes each group", async () => {
  const s = Scope.root();
  const layer = new GroupNorm(s.child("n"), 8, [4, 4], 1e-5);
  assertEquals(layer.groups, 2); // min(32, 8/4)
  const rng = Rng.seeded(5);
  const x = tf.add(tf.mul(randn([2, 4, 4, 8], rng), 3), 1);
  const plain = layer.apply(initParams(s.specs, 0), x as tf.Tensor4D).reshape([2, 16, 2, 4]);
  const { mean, variance } = tf.moments(plain, [1, 3]);
  await assertClose(mean, tf.zeros([2, 2]), { atol: 1e-5 });
  await assertClose(variance, tf.ones([2, 2]), { atol: 1e-3 });
  await gradCheck("groupnorm", (xx, p) => layer.apply(p, xx as tf.Tensor4D), x, randomParams(s, rng), 6);
});

Deno.test("SelfAttention (2 heads): gradient = finite differences", async () => {
  const s = Scope.root();
  const layer = new SelfAttention(s, 8, 2, [3, 3], { eps: 1e-6, init: INIT, initZero: INIT });
  const rng = Rng.seeded(7);
  await gradCheck(
    "attention",
    (x, p) => layer.apply(p, x as tf.Tensor4D),
    randn([2, 3, 3, 8], rng),
    randomParams(s, rng),
    8,
  );
});

Deno.test("SelfAttention attends across positions: one position's change moves every output", () => {
  const s = Scope.root();
  const layer = new SelfAttention(s, 8, 2, [3, 3], { eps: 1e-6, init: INIT, initZero: INIT });
  const rng = Rng.seeded(9);
  const p = randomParams(s, rng);
  const x = randn([1, 3, 3, 8], rng);
  const bump = tf.mul(tf.oneHot(tf.tensor1d([0], "int32"), 9).reshape([1, 3, 3, 1]), 5);
  const d = tf.abs(tf.sub(layer.apply(p, tf.add(x, bump) as tf.Tensor4D), layer.apply(p, x as tf.Tensor4D)));
  const perPosition = tf.max(d.reshape([9, 8]), 1).arraySync() as number[];
  assert(perPosition.every((v) => v > 1e-4), `positions not affected: ${perPosition}`);
});

const BLOCK: ResBlockOptions = {
  embChannels: 6,
  dropout: 0,
  skipScale: Math.SQRT1_2,
  eps: 1e-6,
  resampleFilter: [1, 3, 3, 1],
  resampleProj: true,
  scaleShift: false,
  init: INIT,
  initZero: INIT,
  initAttn: INIT,
  heads: 1,
};
const blockCases: [string, Partial<ResBlockOptions>, number][] = [
  ["NCSN++ BigGAN block, up, attention", { up: true, attention: true }, 4],
  ["NCSN++ BigGAN block, down", { down: true }, 8],
  ["ADM block, scale-shift, down (box filter, no skip conv)", {
    down: true,
    scaleShift: true,
    skipScale: 1,
    resampleFilter: [1, 1],
    resampleProj: false,
  }, 4],
  ["ADM block, scale-shift, channel change, 2 heads", {
    scaleShift: true,
    skipScale: 1,
    attention: true,
    heads: undefined,
    channelsPerHead: 4,
  }, 8],
];
for (const [label, o, cout] of blockCases) {
  Deno.test(`ResBlock ${label}: gradient = finite differences, nothing but its output left`, async () => {
    const s = Scope.root();
    const block = new ResBlock(s.child("b"), 4, cout, [4, 4], { ...BLOCK, ...o });
    const rng = Rng.seeded(11);
    const emb = randn([2, 6], rng) as tf.Tensor2D;
    const x = randn([2, 4, 4, 4], rng);
    const p = randomParams(s, rng);
    const before = tf.memory().numTensors;
    const y = block.apply(p, x as tf.Tensor4D, emb, { training: false });
    assertEquals(y.shape, [2, ...block.outResolution, cout]);
    // Its intermediates are freed when it returns (the full-size ADM's filled wasm's 4 GiB heap otherwise).
    assertEquals(tf.memory().numTensors - before, 1, "tensors left by one block: its output only");
    await gradCheck(
      `block ${label}`,
      (xx, pp) => block.apply(pp, xx as tf.Tensor4D, emb, { training: false }),
      x,
      p,
      12,
    );
  });
}

Deno.test("Dropout: the same seed gives the same mask, a gradient through the kept units only", async () => {
  const s = Scope.root();
  const a = new Dropout(s, 0.3);
  const b = new Dropout(s, 0.3);
  const x = tf.ones([4, 64]);
  const ctx: ForwardContext = { training: true, dropoutSeed: 42 };
  const ya = await a.apply(x, ctx).data();
  assertEquals(await a.apply(x, ctx).data(), ya, "same step seed, same layer: same mask");
  assertNotEquals(await a.apply(x, { training: true, dropoutSeed: 43 }).data(), ya, "another step seed");
  assertNotEquals(await b.apply(x, ctx).data(), ya, "another layer in the same step");
  const kept = ya.filter((v) => v !== 0);
  assert(kept.every((v) => Math.abs(v - 1 / 0.7) < 1e-6), "kept units are scaled by 1/(1 − rate)");
  assert(
    Math.abs(1 - kept.length / ya.length - 0.3) < 0.1,
    `dropped fraction ${1 - kept.length / ya.length}`,
  );
  assertEquals(await a.apply(x, { training: false }).data(), await x.data(), "no dropout in evaluation");
  assertThrows(() => a.apply(x, { training: true }), Error, "dropoutSeed");
  const g = await tf.grad((xx: tf.Tensor) => tf.sum(a.apply(xx, ctx)))(x).data();
  assertEquals(g, ya, "gradient = mask");
  assertEquals(await dropoutMask([4, 64], 0.3, 5).data(), await dropoutMask([4, 64], 0.3, 5).data());
});

Deno.test("FIR [1,3,3,1] down/up equal EDM's depthwise (transposed) convolutions", async () => {
  const rng = Rng.seeded(13);
  const x = randn([2, 8, 8, 3], rng) as tf.Tensor4D;
  const f1 = [1, 3, 3, 1].map((v) => v / 8);
  const f2 = tf.tensor(f1.flatMap((a) => f1.map((b) => a * b)), [4, 4, 1, 1]);
  const depthwise = tf.tile(f2, [1, 1, 3, 1]) as tf.Tensor4D; // [4, 4, C, 1]
  const padded = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]]);
  await assertClose(firDownsample(x, [1, 3, 3, 1]), tf.depthwiseConv2d(padded, depthwise, 2, "valid"), {
    atol: 1e-6,
    message: "down",
  });
  // Transposed conv (stride 2, filter 4·f⊗f, padding 1) = the full transposed conv cropped by 1 on each side.
  const up4 = tf.mul(tf.tile(f2, [1, 1, 1, 1]), 4) as tf.Tensor4D; // [4, 4, 1, 1]
  const perChannel = tf.unstack(x, 3).map((c) => {
    const full = tf.conv2dTranspose(c.expandDims(3) as tf.Tensor4D, up4, [2, 18, 18, 1], 2, "valid");
    return tf.slice(full, [0, 1, 1, 0], [2, 16, 16, 1]);
  });
  await assertClose(firUpsample(x, [1, 3, 3, 1]), tf.concat(perChannel, 3), { atol: 1e-6, message: "up" });
  // The box filter: 2×2 average pooling and nearest-neighbour upsampling.
  await assertClose(firDownsample(x, [1, 1]), tf.avgPool(x, 2, 2, "valid"), {
    atol: 1e-6,
    message: "avg pool",
  });
  const nearest = tf.tile(x.reshape([2, 8, 1, 8, 1, 3]), [1, 1, 2, 1, 2, 1]).reshape([2, 16, 16, 3]);
  await assertClose(firUpsample(x, [1, 1]), nearest, { atol: 0, message: "nearest" });
});
