// The gradient of one training step checked against Eq. 5 itself, with dropout on:
//   L(θ') = mean_b λ(σ_i) · d( f_θ'(x + σ_{i+1} z, σ_{i+1}; mask), f_θ(x + σ_i z, σ_i; mask) )
// The student's parameters θ' move, the teacher stays frozen at θ (stop-gradient), and both passes use the
// same dropout masks. The test writes L from the public forward API only (model.fn with the plan's dropout
// seed, the batch as one micro-batch), so it does not depend on how masks are made, and compares
// `lossAndGrads`' gradient with central finite differences of L along random directions, one per parameter
// tensor. A gradient with the student and teacher σ swapped, a teacher with other masks or without dropout,
// or a teacher that gradients flow through, each gives a different derivative.
import { assert, assertEquals } from "@std/assert";
import * as tf from "@tensorflow/tfjs";
import { ConsistencyModel } from "../lib/consistency_model.ts";
import type { MlpConfig } from "../lib/models/mlp.ts";
import type { NcsnppConfig } from "../lib/models/ncsnpp.ts";
import { ICT_FOURIER_SCALE } from "../lib/embeddings.ts";
import { type Params, trainableParams } from "../lib/nn/params.ts";
import { Rng } from "../lib/rng.ts";
import { assertClose } from "../lib/testing.ts";
import { preset, type TrainConfig } from "../lib/train/config.ts";
import { copyParams, lossAndGrads, planStep, type StepPlan } from "../lib/train/step.ts";

await tf.setBackend("cpu"); // deterministic, float32

const MLP: MlpConfig = {
  family: "mlp",
  dim: 4,
  hidden: 24,
  depth: 2,
  noiseChannels: 8,
  fourierScale: 0.5,
  dropout: 0.3,
};

/** The smallest NCSN++ of the family: 8×8 RGB, one level, one block, dropout 0.3 as in the paper's CIFAR-10. */
const TINY_NCSNPP: NcsnppConfig = {
  family: "ncsnpp",
  resolution: 8,
  channels: 3,
  labelDim: 0,
  modelChannels: 8,
  channelMult: [1],
  channelMultEmb: 2,
  channelMultNoise: 1,
  numBlocks: 1,
  attnResolutions: [],
  dropout: 0.3,
  fourierScale: ICT_FOURIER_SCALE,
  resampleFilter: [1, 3, 3, 1],
};

/** iCT (stop-gradient teacher, shared masks, Pseudo-Huber, λ = 1/Δσ) at step k = 0 (N = 11), one micro-batch. */
function ictConfig(model: TrainConfig["model"], batch: number): TrainConfig {
  return { ...preset("toy2d"), model, totalIters: 400, batch, microBatch: batch };
}

/**
 * Parameters away from the initialization: the zero-initialized output layers would make F ≈ 0 and most
 * gradients vanish, so every trainable tensor gets N(0, scale²) added (fixed seed).
 */
function roughParams(model: ConsistencyModel, seed: number, scale: number): Map<string, tf.Tensor> {
  const p = model.init(seed);
  let s = seed;
  for (const t of trainableParams(p).values()) {
    tf.tidy(() => t.assign(tf.add(t, tf.randomNormal(t.shape, 0, scale, "float32", ++s))));
  }
  return p;
}

/** The noisy input x + σ·z of every sample, built on the host (float64) and uploaded. */
function noisy(x: Float32Array, z: Float32Array, sigmas: ArrayLike<number>, shape: number[]): tf.Tensor {
  const per = x.length / shape[0];
  return tf.tensor(Float32Array.from(x, (v, i) => v + sigmas[Math.floor(i / per)] * z[i]), shape);
}

/**
 * Eq. 5 written out: the student f_θ' at σ_{i+1} against the frozen teacher output `teacher` (f_θ at σ_i),
 * Pseudo-Huber with c = 0.00054·√d on each sample's whole vector, λ = 1/(σ_{i+1} − σ_i), mean over the batch,
 * summed on the host in float64.
 */
async function eq5(
  model: ConsistencyModel,
  student: Params,
  teacher: Float32Array,
  plan: StepPlan,
  x: Float32Array,
  z: Float32Array,
  shape: number[],
): Promise<number> {
  const b = shape[0];
  const sigmaHi = Float64Array.from(plan.indices, (j) => plan.sigmas[j + 1]);
  const f = tf.tidy(() =>
    model.fn(student, { training: true, dropoutSeed: plan.studentDropoutSeed })(
      noisy(x, z, sigmaHi, shape),
      sigmaHi,
    )
  );
  const fs = await f.data();
  f.dispose();
  const dim = x.length / b;
  const c = 0.00054 * Math.sqrt(dim);
  let loss = 0;
  for (let s = 0; s < b; s++) {
    let sq = 0;
    for (let i = s * dim; i < (s + 1) * dim; i++) sq += (fs[i] - teacher[i]) ** 2;
    const j = plan.indices[s];
    const lambda = 1 / (plan.sigmas[j + 1] - plan.sigmas[j]);
    loss += (lambda * (Math.sqrt(sq + c * c) - c)) / b;
  }
  return loss;
}

/** The teacher's side of Eq. 5, f_θ⁻(x + σ_i z, σ_i), with the student's dropout seed (shared masks). */
async function teacherSide(
  model: ConsistencyModel,
  teacher: Params,
  plan: StepPlan,
  x: Float32Array,
  z: Float32Array,
  shape: number[],
): Promise<Float32Array> {
  const sigmaLo = Float64Array.from(plan.indices, (j) => plan.sigmas[j]);
  const out = tf.tidy(() =>
    model.fn(teacher, { training: true, dropoutSeed: plan.studentDropoutSeed })(
      noisy(x, z, sigmaLo, shape),
      sigmaLo,
    )
  );
  const data = (await out.data()) as Float32Array;
  out.dispose();
  return data;
}

/** `params` with each trainable tensor named in `v` moved by eps·v (the others are the same tensors). */
function moved(params: Params, v: Map<string, tf.Tensor>, eps: number): Map<string, tf.Tensor> {
  const out = new Map(params);
  for (const [name, d] of v) out.set(name, tf.tidy(() => tf.add(params.get(name)!, tf.mul(d, eps))));
  return out;
}

/**
 * Directional derivatives of L along random directions v (N(0, 1) scaled to each tensor's RMS): one per
 * trainable tensor picked by `pick` (every tensor by default), and one that moves every tensor at once. Each
 * is computed from lossAndGrads' gradient, Σ g·v, and by central differences of `eq5` with Richardson
 * extrapolation (error O(ε⁴)), summed in float64 over float32 forward passes.
 */
async function checkGradient(
  model: ConsistencyModel,
  params: Params,
  teacherParams: Params,
  c: TrainConfig,
  plan: StepPlan,
  x: tf.Tensor,
  opts: { eps: number; rtol: number; label: string; pick?: (i: number) => boolean },
) {
  const shape = x.shape;
  const xs = (await x.data()) as Float32Array;
  // The z of the step: lossAndGrads draws z ~ N(0, I) for the whole batch from plan.zSeed.
  const zt = tf.randomNormal(shape, 0, 1, "float32", plan.zSeed);
  const zs = (await zt.data()) as Float32Array;
  zt.dispose();
  const result = await lossAndGrads(model, params, teacherParams, c, plan, { x });
  // The teacher is evaluated once, at the unmoved parameters: frozen (stop-gradient).
  const teacher = await teacherSide(model, teacherParams, plan, xs, zs, shape);
  const l0 = await eq5(model, params, teacher, plan, xs, zs, shape);
  await assertClose(result.loss, l0, { rtol: 1e-5, atol: 0, message: `${opts.label}: loss of Eq. 5` });

  const rng = Rng.seeded(11);
  const all = new Map<string, tf.Tensor>();
  const directions: [string, Map<string, tf.Tensor>][] = [];
  let i = 0;
  for (const [name, p] of trainableParams(params)) {
    assert(result.grads.has(name), `${opts.label}: no gradient for ${name}`);
    const rms = Math.sqrt((await tf.mean(tf.square(p)).data())[0]) || 1;
    const v = tf.tidy(() => tf.mul(tf.randomNormal(p.shape, 0, 1, "float32", rng.seed()), rms));
    all.set(name, v);
    if (opts.pick?.(i++) ?? true) directions.push([name, new Map([[name, v]])]);
  }
  assertEquals(result.grads.size, all.size, `${opts.label}: one gradient per trainable tensor`);
  directions.push(["all tensors at once", all]);
  const rows: { name: string; analytic: number; fd: number }[] = [];
  for (const [name, v] of directions) {
    let analytic = 0;
    for (const [n, d] of v) analytic += (await tf.sum(tf.mul(result.grads.get(n)!, d)).data())[0];
    const moveBy = async (e: number) => {
      const q = moved(params, v, e);
      const l = await eq5(model, q, teacher, plan, xs, zs, shape);
      for (const n of v.keys()) q.get(n)!.dispose();
      return l;
    };
    const at = async (eps: number) => ((await moveBy(eps)) - (await moveBy(-eps))) / (2 * eps);
    const d1 = await at(opts.eps);
    const d2 = await at(opts.eps / 2);
    rows.push({ name, analytic, fd: (4 * d2 - d1) / 3 });
  }
  // Each derivative within rtol of itself plus rtol of 5% of the largest one: derivatives near 0 cannot be
  // checked relatively in float32.
  const scale = Math.max(...rows.map((r) => Math.abs(r.fd)));
  if (Deno.env.get("GRAD_DEBUG")) {
    console.table(
      rows.map((r) => ({ ...r, rel: Math.abs(r.analytic - r.fd) / (Math.abs(r.fd) + 0.05 * scale) })),
    );
  }
  for (const { name, analytic, fd } of rows) {
    const err = Math.abs(analytic - fd);
    assert(
      err <= opts.rtol * (Math.abs(fd) + 0.05 * scale),
      `${opts.label}: d/dε L(θ + ε·v) along ${name}: lossAndGrads gives ${analytic}, finite differences ` +
        `of Eq. 5 give ${fd} (|diff| ${err.toExponential(2)}, largest ${scale.toExponential(2)})`,
    );
  }
  for (const v of all.values()) v.dispose();
  for (const g of result.grads.values()) g.dispose();
  return rows;
}

Deno.test("lossAndGrads' gradient = finite differences of Eq. 5 (MLP, dropout 0.3, teacher frozen, shared masks)", async () => {
  const b = 8;
  const c = ictConfig({ ...MLP }, b);
  const model = ConsistencyModel.fromConfig(c.model);
  const params = roughParams(model, 3, 0.3);
  const plan = planStep(c, 0, Rng.seeded(5));
  assertEquals(plan.n, 11);
  assertEquals(plan.teacherDropoutSeed, plan.studentDropoutSeed, "iCT shares the dropout masks");
  assert(new Set(plan.indices).size > 2, `pairs ${plan.indices}`);
  const rng = Rng.seeded(7);
  const x = tf.tensor2d(Float32Array.from({ length: b * MLP.dim }, () => rng.normal() * 0.5), [b, MLP.dim]);
  const rows = await checkGradient(model, params, params, c, plan, x, {
    eps: 1e-2,
    rtol: 2e-3,
    label: "mlp",
  });
  assert(rows.every((r) => Number.isFinite(r.fd)));
  assert(rows.filter((r) => Math.abs(r.fd) > 1e-3).length >= rows.length - 1, "non-trivial gradients");
  // Dropout matters here: the same step without dropout has another loss.
  const withDropout = await lossAndGrads(model, params, params, c, plan, { x });
  const plain = ConsistencyModel.fromConfig({ ...MLP, dropout: 0 });
  const noDropout = await lossAndGrads(plain, params, params, ictConfig({ ...MLP, dropout: 0 }, b), plan, {
    x,
  });
  assert(
    Math.abs(noDropout.loss - withDropout.loss) > 1e-2 * withDropout.loss,
    `dropout 0.3 changes the loss (${withDropout.loss} vs ${noDropout.loss})`,
  );
});

Deno.test("lossAndGrads with an EMA teacher θ⁻ ≠ θ: the teacher runs on θ⁻, gradient = finite differences", async () => {
  const b = 8;
  const c = { ...ictConfig({ ...MLP }, b), teacher: "ema" as const };
  const model = ConsistencyModel.fromConfig(c.model);
  const params = roughParams(model, 4, 0.3);
  const teacherParams = roughParams(model, 40, 0.3);
  const plan = planStep(c, 0, Rng.seeded(6));
  const rng = Rng.seeded(8);
  const x = tf.tensor2d(Float32Array.from({ length: b * MLP.dim }, () => rng.normal() * 0.5), [b, MLP.dim]);
  await checkGradient(model, params, teacherParams, c, plan, x, { eps: 1e-2, rtol: 2e-3, label: "ema" });
});

Deno.test("lossAndGrads' gradient = finite differences of Eq. 5 (tiny NCSN++, dropout 0.3)", async () => {
  const b = 4;
  const c = ictConfig({ ...TINY_NCSNPP }, b);
  const model = ConsistencyModel.fromConfig(c.model);
  const params = roughParams(model, 9, 0.1);
  const plan = planStep(c, 0, Rng.seeded(12));
  const rng = Rng.seeded(13);
  const x = tf.tensor4d(Float32Array.from({ length: b * 8 * 8 * 3 }, () => rng.normal() * 0.5), [b, 8, 8, 3]);
  await checkGradient(model, params, params, c, plan, x, {
    eps: 1e-2,
    rtol: 5e-3,
    label: "ncsnpp",
    pick: (i) => i % 5 === 0,
  });
});

Deno.test("the teacher runs outside the gradient tape; the student inside it", async () => {
  const b = 4;
  const c = ictConfig({ ...MLP }, b);
  const model = ConsistencyModel.fromConfig(c.model);
  const params = roughParams(model, 3, 0.3);
  // θ⁻ = θ by value but another map, so that the network can tell which side calls it.
  const teacherParams = copyParams(params);
  const calls: { teacher: boolean; tape: boolean }[] = [];
  const network = model.network;
  const apply = network.apply.bind(network);
  network.apply = (p, ...rest) => {
    assert(p === params || p === teacherParams, "called with the step's parameters");
    calls.push({ teacher: p === teacherParams, tape: tf.engine().isTapeOn() });
    return apply(p, ...rest);
  };
  const plan = planStep(c, 0, Rng.seeded(5));
  const x = tf.randomNormal([b, MLP.dim], 0, 0.5, "float32", 1);
  const viaCopy = await lossAndGrads(model, params, teacherParams, c, plan, { x });
  const teacherCalls = calls.filter((k) => k.teacher);
  const studentCalls = calls.filter((k) => !k.teacher);
  assert(teacherCalls.length >= 1 && studentCalls.length >= 1, JSON.stringify(calls));
  assert(teacherCalls.every((k) => !k.tape), "the teacher's forward pass is not recorded for backprop");
  assert(studentCalls.every((k) => k.tape), "the student's forward pass is recorded");
  // The same step with θ⁻ the very same map as θ (iCT) gives the same loss and gradient.
  const same = await lossAndGrads(model, params, params, c, plan, { x });
  await assertClose(same.loss, viaCopy.loss, { atol: 0, rtol: 1e-7 });
  for (const [name, g] of same.grads) await assertClose(g, viaCopy.grads.get(name)!, { message: name });
});
