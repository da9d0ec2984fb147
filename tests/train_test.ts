// The training step, its ablation switches, gradient accumulation, the EMAs, exact resume, interrupted
// checkpoint writes and the NaN guard, on tiny networks on the cpu backend.
import { assert, assertEquals, assertMatch, assertNotEquals, assertRejects, assertThrows } from "@std/assert";
import * as tf from "@tensorflow/tfjs";
import { loadCheckpoint } from "../lib/io/checkpoint.ts";
import { ConsistencyModel } from "../lib/consistency_model.ts";
import type { Dataset } from "../lib/data/dataset.ts";
import { pseudoHuber, squaredL2 } from "../lib/losses.ts";
import { EVAL, trainableParams } from "../lib/nn/params.ts";
import { Rng } from "../lib/rng.ts";
import {
  ctDiscretizationSteps,
  ctTeacherEmaDecay,
  ictDiscretizationSteps,
  karrasSigmas,
} from "../lib/schedules.ts";
import { assertClose } from "../lib/testing.ts";
import { TINY_NCSNPP } from "./reference/tiny_networks.ts";
import { TOY_MLP, toyPoints, toyTrainConfig } from "./toy_data.ts";
import { parseFlags } from "../lib/cli.ts";
import { applyOverrides, checkResumeFlags, preset, validateConfig } from "../lib/train/config.ts";
import { listCheckpoints, runTraining, writeSamples } from "../lib/train/run.ts";
import { emaUpdate, lossAndGrads, metricOf, planStep } from "../lib/train/step.ts";
import { NonFiniteLossError, Trainer } from "../lib/train/trainer.ts";

await tf.setBackend("cpu");

const toyConfig = toyTrainConfig;

async function tempDir() {
  return await Deno.makeTempDir({ prefix: "ict-train-test-" });
}

Deno.test("presets carry the paper's values", () => {
  const c = preset("cifar10");
  assertEquals(c.optimizer.kind, "radam");
  assertEquals(c.optimizer.lr, 1e-4);
  assertEquals(c.batch, 1024);
  assertEquals(c.totalIters, 400_000);
  assertEquals(c.emaDecay, 0.99993);
  assertEquals(c.model.family === "ncsnpp" && c.model.dropout, 0.3);
  assertEquals([
    c.teacher,
    c.metric,
    c.curriculum,
    c.s0,
    c.s1,
    c.noise,
    c.pMean,
    c.pStd,
    c.weighting,
    c.sharedDropout,
  ], ["stopgrad", "pseudo-huber", "exponential", 10, 1280, "lognormal", -1.1, 2.0, "ict", true]);
  assertEquals(c.sigmaMid, 0.821);
  const i = preset("imagenet64");
  assertEquals(i.batch, 4096);
  assertEquals(i.totalIters, 800_000);
  assertEquals(i.sigmaMid, 1.526);
  assertEquals(i.model.family === "adm" && i.model.labelDim, 1000);
  assertEquals(
    preset("cifar10-deep").model.family === "ncsnpp" &&
      (preset("cifar10-deep").model as { numBlocks: number }).numBlocks,
    8,
  );
});

Deno.test("flags override any value, typed; bad flags say what is valid", () => {
  const c = preset("cifar10");
  applyOverrides(
    c,
    parseFlags([
      "--max-steps",
      "2",
      "--batch=2",
      "--optimizer.lr",
      "2e-4",
      "--model.dropout",
      "0.1",
      "--shared-dropout",
      "false",
    ]),
  );
  assertEquals(c.maxSteps, 2);
  assertEquals(c.batch, 2);
  assertEquals(c.optimizer.lr, 2e-4);
  assertEquals((c.model as { dropout: number }).dropout, 0.1);
  assertEquals(c.sharedDropout, false);
  applyOverrides(c, parseFlags(["--recipe", "ct"]));
  assertEquals([c.teacher, c.metric, c.curriculum, c.noise, c.weighting], [
    "ema",
    "l2",
    "sqrt",
    "uniform",
    "uniform",
  ]);
  assertMatch(
    assertThrows(() => applyOverrides(preset("cifar10"), parseFlags(["--optimizer.lrr", "1"])), Error)
      .message,
    /unknown setting --optimizer.lrr.*optimizer\.lr/,
  );
  assertThrows(
    () => applyOverrides(preset("cifar10"), parseFlags(["--batch", "many"])),
    Error,
    "--batch takes a number",
  );
  assertThrows(
    () => applyOverrides(preset("cifar10"), parseFlags(["--batch", "10", "--micro-batch", "3"])),
    Error,
    "multiple of microBatch",
  );
  assertThrows(() => preset("cifar100"), Error, "cifar10, cifar10-deep");
  checkResumeFlags(parseFlags(["--max-steps", "9", "--checkpoint-every", "3"]));
  assertMatch(
    assertThrows(() => checkResumeFlags(parseFlags(["--batch", "9"])), Error).message,
    /only maxSteps.*Drop --batch/,
  );
});

Deno.test("one step's loss equals a hand computation of Eq. 5", async () => {
  const c = toyConfig({ batch: 4 });
  const model = new ConsistencyModel(ConsistencyModel.fromConfig(TOY_MLP).network);
  const params = model.init(3);
  const x = tf.tensor2d([[0.3, -0.2], [1.1, 0.4], [-0.7, 0.9], [0.05, -1.2]]);
  const plan = planStep(c, 123, Rng.seeded(9));
  const { loss, grads } = await lossAndGrads(model, params, params, c, plan, { x });
  // By hand: f(x, σ) = c_skip x + c_out F(c_in x, c_noise) with the paper's scalings, d = Pseudo-Huber on
  // each sample's ℓ2 distance, λ = 1/(σ_{i+1} − σ_i), mean over the batch.
  const z = await tf.randomNormal([4, 2], 0, 1, "float32", plan.zSeed).array() as number[][];
  const xs = await x.array() as number[][];
  const f = async (sigma: number, b: number) => {
    const sd = 0.5, smin = 0.002;
    const cSkip = sd ** 2 / ((sigma - smin) ** 2 + sd ** 2);
    const cOut = (sd * (sigma - smin)) / Math.sqrt(sigma ** 2 + sd ** 2);
    const cIn = 1 / Math.sqrt(sigma ** 2 + sd ** 2);
    const noisy = xs[b].map((v, d) => v + sigma * z[b][d]);
    const F = await model.network.apply(
      params,
      tf.tensor2d([noisy.map((v) => v * cIn)]),
      tf.tensor1d([0.25 * Math.log(sigma)]),
      EVAL,
    ).array() as number[][];
    return noisy.map((v, d) => cSkip * v + cOut * F[0][d]);
  };
  const cHuber = 0.00054 * Math.sqrt(2);
  let expected = 0;
  for (let b = 0; b < 4; b++) {
    const hi = plan.sigmas[plan.indices[b] + 1];
    const lo = plan.sigmas[plan.indices[b]];
    const a = await f(hi, b);
    const t = await f(lo, b);
    const sq = (a[0] - t[0]) ** 2 + (a[1] - t[1]) ** 2;
    expected += (1 / (hi - lo)) * (Math.sqrt(sq + cHuber ** 2) - cHuber) / 4;
  }
  await assertClose(loss, expected, { rtol: 2e-5, atol: 1e-7, message: "loss" });
  assertEquals(plan.n, ictDiscretizationSteps(123, c.totalIters));
  assertEquals(grads.size, [...params.values()].filter((t) => t instanceof tf.Variable).length);
});

Deno.test("each ablation switch changes exactly what it says", () => {
  const base = toyConfig();
  const k = 250;
  const ict = planStep(base, k, Rng.seeded(4), 4096);
  const same = (a: ReturnType<typeof planStep>, b: ReturnType<typeof planStep>, keys: (keyof typeof a)[]) => {
    for (const key of keys) assertEquals(a[key], b[key], `${String(key)} should not change`);
  };
  // Weighting: only λ changes (1/Δσ → 1).
  const uw = planStep({ ...base, weighting: "uniform" }, k, Rng.seeded(4), 4096);
  same(ict, uw, ["n", "sigmas", "indices", "sigmaLo", "sigmaHi", "zSeed", "studentDropoutSeed", "mu"]);
  assert(uw.lambda.every((v) => v === 1));
  ict.lambda.forEach((v, b) => assertEquals(v, 1 / (ict.sigmaHi[b] - ict.sigmaLo[b])));
  // Curriculum: only N(k) and the grid it implies.
  const sq = planStep({ ...base, curriculum: "sqrt" }, k, Rng.seeded(4), 4096);
  assertEquals(ict.n, ictDiscretizationSteps(k, base.totalIters, 10, 1280));
  assertEquals(sq.n, ctDiscretizationSteps(k, base.totalIters, 10, 1280));
  assertNotEquals(sq.n, ict.n);
  assertEquals(sq.sigmas, karrasSigmas(sq.n));
  // Noise sampling: lognormal puts most pairs near σ ≈ e^−1.1; uniform spreads them evenly over pairs.
  const un = planStep({ ...base, noise: "uniform" }, k, Rng.seeded(4), 4096);
  same(ict, un, ["n", "sigmas"]);
  const share = (p: ReturnType<typeof planStep>, j: number) => p.indices.filter((i) => i === j).length / 4096;
  const last = ict.n - 2;
  assert(share(ict, last) < 0.01, `lognormal draws the top pair rarely (${share(ict, last)})`);
  assert(Math.abs(share(un, last) - 1 / (ict.n - 1)) < 0.02, `uniform draws it 1/(N−1) of the time`);
  // Dropout masks: shared → the teacher's seed is the student's; off → a different one.
  assertEquals(ict.teacherDropoutSeed, ict.studentDropoutSeed);
  const indep = planStep({ ...base, sharedDropout: false }, k, Rng.seeded(4), 4096);
  assertNotEquals(indep.teacherDropoutSeed, indep.studentDropoutSeed);
  same(ict, indep, ["n", "indices", "lambda", "zSeed", "studentDropoutSeed"]);
  // Teacher: stopgrad → μ = 0 (θ⁻ = θ); EMA → CT's μ(k).
  assertEquals(ict.mu, 0);
  const ema = planStep({ ...base, teacher: "ema" }, k, Rng.seeded(4), 4096);
  assertEquals(ema.mu, ctTeacherEmaDecay(k, base.totalIters, 0.9, 10, 1280));
  same(ict, ema, ["n", "indices", "lambda", "zSeed"]);
});

Deno.test("the metric switch: Pseudo-Huber with c = 0.00054·√d, or squared ℓ2", async () => {
  const a = tf.tensor2d([[0, 0, 0], [1, 2, 2]]);
  const b = tf.tensor2d([[0.01, 0, 0], [0, 0, 0]]);
  await assertClose(metricOf(toyConfig({ metric: "l2" }), 3)(a, b), squaredL2(a, b));
  await assertClose(metricOf(toyConfig(), 3)(a, b), pseudoHuber(a, b, 0.00054 * Math.sqrt(3)));
  await assertClose(metricOf(toyConfig(), 3)(a, b), [
    Math.sqrt(1e-4 + 0.00054 ** 2 * 3) - 0.00054 * Math.sqrt(3),
    Math.sqrt(9 + 0.00054 ** 2 * 3) - 0.00054 * Math.sqrt(3),
  ], { rtol: 1e-5 });
  // --pseudo-huber-c sets c itself (the Sec. 3.3 sweep); 0 keeps iCT's.
  await assertClose(metricOf(toyConfig({ pseudoHuberC: 0.5 }), 3)(a, b), pseudoHuber(a, b, 0.5));
  await assertClose(
    metricOf(toyConfig({ pseudoHuberC: 0 }), 3)(a, b),
    pseudoHuber(a, b, 0.00054 * Math.sqrt(3)),
  );
  const flagged = toyConfig();
  applyOverrides(flagged, [["pseudo-huber-c", "0.25"]]);
  assertEquals(flagged.pseudoHuberC, 0.25);
  assertThrows(() => validateConfig(toyConfig({ pseudoHuberC: -1 })), Error, "pseudoHuberC must be >= 0");
});

Deno.test("shared dropout: student and teacher see the same mask only when asked", async () => {
  const model = ConsistencyModel.fromConfig({ ...TOY_MLP, dropout: 0.5 });
  const params = model.init(1);
  const x = tf.ones([2, 2]);
  const s = new Float64Array([1, 1]);
  const plan = (shared: boolean) => planStep(toyConfig({ sharedDropout: shared }), 0, Rng.seeded(2), 2);
  for (const shared of [true, false]) {
    const p = plan(shared);
    const student = await model.apply(params, x, s, { training: true, dropoutSeed: p.studentDropoutSeed })
      .data();
    const teacher = await model.apply(params, x, s, { training: true, dropoutSeed: p.teacherDropoutSeed })
      .data();
    assertEquals(Array.from(student).join() === Array.from(teacher).join(), shared);
  }
});

Deno.test("gradient accumulation over micro-batches equals one pass over the batch, dropout 0.3 included", async () => {
  const cases = [
    {
      name: "mlp",
      model: { ...TOY_MLP, dropout: 0.3 },
      x: tf.tensor2d(toyPoints(8, 1).get([0, 1, 2, 3, 4, 5, 6, 7]).x, [8, 2]),
    },
    { name: "tiny ncsnpp", model: TINY_NCSNPP, x: tf.randomUniform([4, 16, 16, 3], -1, 1, "float32", 3) },
  ];
  for (const { name, model: config, x } of cases) {
    const b = x.shape[0];
    const c = toyConfig({ batch: b, model: config as never });
    const model = ConsistencyModel.fromConfig(config);
    const params = model.init(5);
    // Off the zero init of EDM's output convolutions, so that every dropout mask reaches the loss.
    const r = Rng.seeded(9);
    for (const v of trainableParams(params).values()) {
      (v as tf.Variable).assign(
        tf.add(v, tf.tensor(Float32Array.from({ length: v.size }, () => 0.05 * r.normal()), v.shape)),
      );
    }
    const plan = planStep(c, 77, Rng.seeded(1));
    const full = await lossAndGrads(model, params, params, c, plan, { x });
    for (const m of [1, b / 2]) {
      const acc = await lossAndGrads(model, params, params, { ...c, microBatch: m }, plan, { x });
      await assertClose(acc.loss, full.loss, { rtol: 1e-5, message: `${name}, passes of ${m}: loss` });
      assertEquals(acc.grads.size, full.grads.size);
      for (const [p, g] of full.grads) {
        await assertClose(acc.grads.get(p)!, g, {
          rtol: 1e-4,
          atol: 1e-6,
          message: `${name}, passes of ${m}: ${p}`,
        });
      }
      await assertClose(acc.gradNorm, full.gradNorm, { rtol: 1e-5 });
    }
    // Dropout is on: other masks move the gradient (so the equality above is not the no-dropout case).
    const other = await lossAndGrads(model, params, params, c, {
      ...plan,
      studentDropoutSeed: 5,
      teacherDropoutSeed: 5,
    }, { x });
    assert(Math.abs(other.gradNorm - full.gradNorm) > 1e-4 * full.gradNorm, `${name}: dropout is active`);
  }
});

Deno.test("the student EMA moves toward the student, and CT's teacher follows μ(k)", async () => {
  const target = new Map([["w", tf.variable(tf.tensor1d([0, 10]))]]);
  emaUpdate(target, new Map([["w", tf.tensor1d([1, 0])]]), 0.9);
  await assertClose(target.get("w")!, [0.1, 9]);

  const c = toyConfig({ teacher: "ema", emaDecay: 0.5 });
  const trainer = Trainer.create(c, toyPoints(64, 3));
  const before = await trainer.params.get("output.weight")!.data();
  await trainer.trainStep();
  const mu = ctTeacherEmaDecay(0, c.totalIters, c.teacherMu0, c.s0, c.s1);
  const after = await trainer.params.get("output.weight")!.data();
  const teacher = await trainer.teacher!.get("output.weight")!.data();
  const ema = await trainer.ema.get("output.weight")!.data();
  const mix = (d: number) => before.map((v, i) => d * v + (1 - d) * after[i]);
  await assertClose(teacher, mix(mu), { rtol: 1e-5, atol: 1e-7 });
  await assertClose(ema, mix(0.5), { rtol: 1e-5, atol: 1e-7 });
  assert(before.some((v, i) => v !== after[i]), "the step changed the student");
  trainer.dispose();
});

Deno.test("--micro-batch may change on resume: passes of 2, then of 4, take the steps of passes of 8", async () => {
  const c = toyConfig({ model: { ...TOY_MLP, dropout: 0.3 }, checkpointEvery: 100 });
  const data = toyPoints(50, 8);
  const opts = { dataset: data, quiet: true, signals: false };
  const whole = await runTraining({ ...c, microBatch: 8 }, {
    ...opts,
    runDir: await tempDir(),
    stopAfter: 12,
  });
  const b = await tempDir();
  const first = await runTraining({ ...c, microBatch: 2 }, { ...opts, runDir: b, stopAfter: 6 });
  const rest = await runTraining({ ...c, microBatch: 4 }, { ...opts, runDir: b, resume: true, stopAfter: 6 });
  assertEquals(
    JSON.parse(await Deno.readTextFile(`${b}/config.json`)).microBatch,
    4,
    "the resumed run's own",
  );
  const losses = [...first.history, ...rest.history].map((m) => m.loss);
  await assertClose(losses, whole.history.map((m) => m.loss), { rtol: 1e-5, message: "losses" });
});

Deno.test("sample grids are made in passes of the memory plan's micro-batch", async () => {
  const images: Dataset = {
    name: "noise-16",
    sampleShape: [16, 16, 3],
    size: 8,
    labelDim: 0,
    get: (idx) => ({ x: Float32Array.from({ length: idx.length * 768 }, (_, i) => Math.sin(i)) }),
  };
  const c = toyConfig({ model: TINY_NCSNPP as never, batch: 4, microBatch: 2, sampleCount: 5 });
  const trainer = Trainer.create(c, images);
  const seen: number[] = [];
  const net = trainer.model.network;
  const apply = net.apply.bind(net);
  net.apply = (p, x, s, ctx) => (seen.push(x.shape[0]), apply(p, x, s, ctx));
  const path = `${await tempDir()}/grid.png`;
  await writeSamples(trainer, path);
  assertEquals(seen, [2, 2, 1], "5 images in passes of 2");
  assert((await Deno.stat(path)).size > 0);
  trainer.dispose();
});

Deno.test("a resumed run takes exactly the steps of an uninterrupted one (25 steps after the restart)", async () => {
  for (const extra of [{}, { teacher: "ema" as const, model: { ...TOY_MLP, dropout: 0.2 } }]) {
    const c = toyConfig({ ...extra, checkpointEvery: 7 });
    const data = toyPoints(50, 8); // 50 samples, batch 8: epochs turn over inside the run
    const a = await tempDir();
    const whole = await runTraining(c, {
      runDir: a,
      dataset: data,
      quiet: true,
      signals: false,
      stopAfter: 35,
    });
    const b = await tempDir();
    const first = await runTraining(c, {
      runDir: b,
      dataset: data,
      quiet: true,
      signals: false,
      stopAfter: 10,
    });
    assertEquals(first.step, 10);
    assertMatch(first.lastCheckpoint, /step-00000010/);
    const rest = await runTraining(c, {
      runDir: b,
      dataset: data,
      quiet: true,
      signals: false,
      resume: true,
      stopAfter: 25,
    });
    assertEquals(rest.step, 35);
    assertEquals(
      rest.history.map((m) => m.loss),
      whole.history.slice(10).map((m) => m.loss),
      "losses after the restart",
    );
    assertEquals(first.history.map((m) => m.loss), whole.history.slice(0, 10).map((m) => m.loss));
    // The metrics log of the resumed run equals the uninterrupted one, line for line (times aside).
    const strip = async (d: string) =>
      (await Deno.readTextFile(`${d}/metrics.jsonl`)).trim().split("\n").map((l) => {
        const { time: _t, imagesPerSec: _i, ...rest } = JSON.parse(l);
        return rest;
      });
    assertEquals(await strip(b), await strip(a));
    // keepCheckpoints = 2: only the two newest remain.
    assertEquals((await listCheckpoints(b)).map((x) => x.step), [35, 28]);
  }
});

Deno.test("a fresh run refuses a directory that holds checkpoints; --resume refuses an empty one", async () => {
  const dir = await tempDir();
  const c = toyConfig();
  await runTraining(c, { runDir: dir, dataset: toyPoints(16, 1), quiet: true, signals: false, stopAfter: 1 });
  await assertRejects(
    () => runTraining(c, { runDir: dir, dataset: toyPoints(16, 1), quiet: true, signals: false }),
    Error,
    "--resume",
  );
  await assertRejects(
    async () =>
      runTraining(c, {
        runDir: await tempDir(),
        dataset: toyPoints(16, 1),
        quiet: true,
        signals: false,
        resume: true,
      }),
    Error,
    "no checkpoint",
  );
});

Deno.test("a NaN loss stops the run, keeps the last good checkpoint and says so", async () => {
  const dir = await tempDir();
  const c = toyConfig({ checkpointEvery: 2, batch: 4 });
  // 12 samples, one poisoned: it shows up in the first epoch's batches at some step > 0.
  const data = toyPoints(12, 2, (i, v) => i === 7 && v.fill(NaN));
  const err = await runTraining(c, { runDir: dir, dataset: data, quiet: true, signals: false }).catch((e) =>
    e
  );
  assert(err instanceof NonFiniteLossError, String(err));
  assertMatch(err.message, /not finite at step \d+ .*not updated/);
  const kept = await listCheckpoints(dir);
  const bad = err.metrics.k;
  assert(
    kept.length > 0 && kept.every((k) => k.step <= bad),
    `checkpoints ${kept.map((k) => k.step)} vs bad step ${bad}`,
  );
  const ck = await loadCheckpoint(kept[0].path);
  for (const t of ck.groups.params.values()) assert((await t.data()).every(Number.isFinite));
});

Deno.test("killing the process in the middle of checkpoint writes leaves a loadable checkpoint", async () => {
  const dir = await tempDir();
  const path = `${dir}/ckpt.safetensors`;
  const script = new URL("./reference/checkpoint_writer.ts", import.meta.url).pathname;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", script, path],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  // Wait for the first complete write, then kill during the following ones.
  const reader = child.stdout.getReader();
  let seen = "";
  while (!seen.includes("wrote 3")) seen += new TextDecoder().decode((await reader.read()).value);
  await new Promise((r) => setTimeout(r, 37));
  child.kill("SIGKILL");
  await child.status;
  reader.releaseLock();
  await child.stdout.cancel().catch(() => {});
  const ck = await loadCheckpoint(path);
  const version = (ck.state as { version: number }).version;
  assert(version >= 3, `version ${version}`);
  const values = await ck.groups.params.get("w")!.data();
  assert(values.every((v) => v === version), "every value belongs to one complete write");
});
