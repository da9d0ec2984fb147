// Zero-shot editing (CM Algorithm 4) against a replay of the algorithm, and on Gaussian-mixture data with the
// exact consistency function f* of lib/pf_ode.ts, where the edit's generated coordinates can be compared
// with the true conditional distribution of the data given the kept ones.
import { assert, assertEquals, assertThrows } from "@std/assert";
import * as tf from "@tensorflow/tfjs";
import {
  blockMeans,
  colorize,
  colorMask,
  colorTransform,
  editAlgorithm4,
  editGrid,
  householder,
  identityTransform,
  inpaint,
  inpaintMask,
  interpolate,
  type LinearTransform,
  LUMA,
  patchMask,
  patchTransform,
  slerp,
  superres,
} from "../lib/editing.ts";
import { exactConsistencyFnHost, type GaussianMixture, sampleMixture } from "../lib/pf_ode.ts";
import { Rng } from "../lib/rng.ts";
import { assertClose } from "../lib/testing.ts";
import type { SampleBatch, SigmaBatch } from "../lib/types.ts";
import { runTaskScript } from "./task_runner.ts";

await tf.setBackend("cpu");

const EPS = 0.002;

/** A non-linear stand-in for f_θ that depends on x and σ, recording each call's input and σ's. */
function recorder() {
  const calls: { x: Float32Array; sigmas: number[] }[] = [];
  const net = (x: tf.Tensor, s: number) => tf.tidy(() => tf.add(tf.mul(tf.tanh(x), 0.7), 0.05 * Math.log(s)));
  const f = (x: SampleBatch, sigmas: SigmaBatch) => {
    calls.push({ x: x.dataSync() as Float32Array, sigmas: [...sigmas] });
    return net(x, sigmas[0]);
  };
  return { f, calls, net };
}

Deno.test("householder: orthogonal, symmetric, and its first row is the unit direction", () => {
  for (const u of [[...LUMA], [1, 1, 1, 1], [0.3, -2, 0.5, 1, 4]]) {
    const k = u.length;
    const h = householder(u);
    const norm = Math.hypot(...u);
    for (let j = 0; j < k; j++) assert(Math.abs(h[j] - u[j] / norm) < 1e-12, `row 0 of H is u/|u| (${u})`);
    for (let i = 0; i < k; i++) {
      for (let j = 0; j < k; j++) {
        let dot = 0;
        for (let l = 0; l < k; l++) dot += h[i * k + l] * h[j * k + l];
        assert(Math.abs(dot - (i === j ? 1 : 0)) < 1e-12, `HHᵀ = I at (${i}, ${j}) for u = ${u}`);
        assert(h[i * k + j] === h[j * k + i], "H symmetric");
      }
    }
  }
  assertThrows(() => householder([0, 0, 0]), Error, "non-zero");
});

Deno.test("the editing transforms are orthogonal (A⁻¹A = I, |Ax| = |x|) and their first axes are luminance / patch means", async () => {
  const x = tf.randomNormal([3, 8, 8, 3], 0, 1, "float32", 5);
  for (const t of [identityTransform(), colorTransform(), patchTransform(2), patchTransform(4)]) {
    const ax = t.forward(x);
    await assertClose(t.inverse(ax), x, { atol: 2e-6, rtol: 0, message: `${t.name}: A⁻¹A = I` });
    await assertClose(tf.norm(ax), tf.norm(x), { atol: 0, rtol: 1e-6, message: `${t.name}: |Ax| = |x|` });
  }
  // colour: coordinate 0 = ⟨LUMA, rgb⟩/|LUMA|; grey pixels have no chroma
  const luma = Math.hypot(...LUMA);
  const cx = (await colorTransform().forward(x).data()) as Float32Array;
  const xs = (await x.data()) as Float32Array;
  for (let p = 0; p < xs.length / 3; p++) {
    const l = (LUMA[0] * xs[3 * p] + LUMA[1] * xs[3 * p + 1] + LUMA[2] * xs[3 * p + 2]) / luma;
    assert(Math.abs(cx[3 * p] - l) < 1e-5, `luminance coordinate of pixel ${p}`);
  }
  // a colour along LUMA has no chroma (grey does: (1, 1, 1) is not parallel to LUMA)
  const along = tf.mul(tf.tensor(LUMA.slice(), [1, 1, 1, 3]), tf.tensor([0.5, -1], [2, 1, 1, 1]));
  const chroma = (await colorTransform().forward(along).data()) as Float32Array;
  for (let p = 0; p < 2; p++) {
    assert(Math.abs(chroma[3 * p + 1]) < 1e-6 && Math.abs(chroma[3 * p + 2]) < 1e-6, "LUMA has no chroma");
  }
  // patch: the top-left coordinate of each block is p·mean, and a block-constant image has no detail
  const p = 4;
  const px = (await patchTransform(p).forward(x).data()) as Float32Array;
  const means = (await blockMeans(x, p).data()) as Float32Array;
  const keep = patchMask(8, 8, 3, p);
  for (let i = 0; i < px.length; i++) {
    if (keep[i] === 0) assert(Math.abs(px[i] - p * means[i]) < 1e-5, `p·mean at ${i}`);
  }
  const flat = (await patchTransform(p).forward(blockMeans(x, p)).data()) as Float32Array;
  for (let i = 0; i < flat.length; i++) {
    if (keep[i] === 1) assert(Math.abs(flat[i]) < 1e-5, `no detail at ${i}`);
  }
});

/** CM Algorithm 4 with A = I written out in the test, drawing z as the library does (one rng.seed() per step). */
function replayInpaint(
  net: (x: tf.Tensor, s: number) => tf.Tensor,
  y: tf.Tensor,
  mask: Float32Array,
  ts: number[],
  seed: number,
) {
  const rng = Rng.seeded(seed);
  const keep = tf.tensor(Float32Array.from(mask, (m) => 1 - m), [1, ...y.shape.slice(1)]);
  const gen = tf.tensor(mask, [1, ...y.shape.slice(1)]);
  const yKept = tf.mul(y, keep);
  const inputs: Float32Array[] = [];
  let x: tf.Tensor = yKept;
  for (const [i, t] of ts.entries()) {
    const z = tf.randomNormal(y.shape, 0, 1, "float32", rng.seed());
    const input = tf.add(x, tf.mul(z, i === 0 ? t : Math.sqrt(t * t - EPS * EPS)));
    inputs.push(input.dataSync() as Float32Array);
    x = tf.add(yKept, tf.mul(net(input, t), gen));
  }
  return { inputs, x };
}

Deno.test("editAlgorithm4 replays CM Algorithm 4 (inpainting): y + t_1·z, then x + √(t_n² − ε²)·z, re-projected after every f", async () => {
  const shape = [5, 4, 4, 3];
  // The generated pixels of y hold 1000: they must never reach f (y's generated part is zeroed first).
  const mask = inpaintMask("center", 4, 4, 3);
  const yHost = Float32Array.from({ length: 5 * 48 }, (_, i) => (mask[i % 48] ? 1000 : Math.sin(i)));
  const y = tf.tensor(yHost, shape);
  // Times near ε, where √(t² − ε²) is far from t (25% at 0.003).
  const ts = [80, 1.2, 0.01, 0.003];
  const { f, calls, net } = recorder();
  const out = editAlgorithm4(f, y, identityTransform(), mask, ts, Rng.seeded(11), { sigmaMin: EPS });
  const expected = replayInpaint(net, y, mask, ts, 11);
  assertEquals(calls.length, ts.length, "one network call per time");
  for (const [i, call] of calls.entries()) {
    assert(call.sigmas.length === 5 && call.sigmas.every((s) => s === ts[i]), `σ's of call ${i}`);
    await assertClose(call.x, expected.inputs[i], { atol: 1e-5, rtol: 1e-6, message: `input of call ${i}` });
  }
  await assertClose(out, expected.x, { atol: 1e-6, rtol: 1e-6, message: "the edit" });
  // Kept pixels are y's exactly.
  const o = (await out.data()) as Float32Array;
  for (let i = 0; i < o.length; i++) if (!mask[i % 48]) assertEquals(o[i], yHost[i], `kept pixel ${i}`);
});

Deno.test("editing: the callback sees every step's projected x and f's output", () => {
  const seen: { i: number; sigma: number }[] = [];
  const { f } = recorder();
  const y = tf.zeros([2, 4, 4, 3]);
  editAlgorithm4(f, y, colorTransform(), colorMask(4, 4), [10, 1], Rng.seeded(1), {
    callback: ({ x, i, sigma, denoised }) => {
      assertEquals(x.shape, [2, 4, 4, 3]);
      assertEquals(denoised.shape, [2, 4, 4, 3]);
      seen.push({ i, sigma });
    },
  });
  assertEquals(seen, [{ i: 0, sigma: 10 }, { i: 1, sigma: 1 }]);
});

Deno.test("editing refuses bad inputs with a message that says what to give", () => {
  const { f } = recorder();
  const y = tf.zeros([2, 4, 4, 3]);
  const rng = Rng.seeded(0);
  assertThrows(() => inpaint(f, y, new Float32Array(10), [80, 1], rng), Error, "the mask has 10 values");
  assertThrows(
    () => inpaint(f, y, new Float32Array(48).fill(0.5), [80, 1], rng),
    Error,
    "only 0 (keep) and 1",
  );
  assertThrows(
    () => inpaint(f, y, inpaintMask("center", 4, 4, 3), [1, 80], rng),
    Error,
    "must decrease strictly",
  );
  assertThrows(
    () => inpaint(f, y, inpaintMask("center", 4, 4, 3), [80, 1, 1], rng),
    Error,
    "must decrease strictly",
  );
  assertThrows(() => inpaint(f, y, inpaintMask("center", 4, 4, 3), [80, 0.001], rng), Error, "above ε");
  assertThrows(() => inpaint(f, y, inpaintMask("center", 4, 4, 3), [], rng), Error, "at least one time");
  assertThrows(() => colorize(f, tf.zeros([2, 4, 4, 1]), [80], rng), Error, "RGB");
  assertThrows(() => superres(f, tf.zeros([1, 6, 6, 3]), 4, [80], rng), Error, "whole number of 4×4 patches");
  assertThrows(() => inpaintMask("circle" as "center", 4, 4, 3), Error, "center, bottom, right, checker");
  assertThrows(() => slerp(tf.zeros([2, 3]), tf.zeros([2, 4]), 0.5), Error, "differ");
});

Deno.test("slerp: the endpoints are the two noises, norms are kept between orthogonal noises, and equal noises do not give NaN", async () => {
  const z0 = tf.randomNormal([4, 8, 8, 3], 0, 1, "float32", 1);
  const z1 = tf.randomNormal([4, 8, 8, 3], 0, 1, "float32", 2);
  await assertClose(slerp(z0, z1, 0), z0, { atol: 1e-5, rtol: 1e-5, message: "alpha 0" });
  await assertClose(slerp(z0, z1, 1), z1, { atol: 1e-5, rtol: 1e-5, message: "alpha 1" });
  await assertClose(slerp(z0, z0, 0.3), z0, { atol: 1e-5, rtol: 1e-5, message: "θ = 0" });
  const a = tf.tensor2d([[1, 0, 0], [0, 2, 0]]);
  const b = tf.tensor2d([[0, 1, 0], [0, 0, 2]]);
  await assertClose(
    slerp(a, b, 0.5),
    tf.tensor2d([[Math.SQRT1_2, Math.SQRT1_2, 0], [0, Math.SQRT2, Math.SQRT2]]),
    {
      atol: 1e-6,
      rtol: 0,
      message: "the midpoint of two orthogonal noises of equal norm lies on their circle",
    },
  );
  // interpolate: row b holds pair b's path; its ends are the one-step samples of z0[b] and z1[b].
  const { f } = recorder();
  const path = interpolate(f, z0, z1, [0, 0.5, 1], 80);
  assertEquals(path.shape, [12, 8, 8, 3]);
  const ends = tf.stack([tf.gather(path, [0, 3, 6, 9]), tf.gather(path, [2, 5, 8, 11])]);
  const direct = tf.stack([
    f(tf.mul(z0, 80), new Float64Array(4).fill(80)),
    f(tf.mul(z1, 80), new Float64Array(4).fill(80)),
  ]);
  await assertClose(ends, direct, { atol: 1e-5, rtol: 1e-5, message: "interpolation endpoints" });
});

// ---- on data with a known conditional --------------------------------------------------------------------

/**
 * A mixture of isotropic Gaussians (std s) whose means, in A's coordinates, are far apart in the kept
 * coordinates (each kept coordinate = 5·(k − 1), k = 0, 1, 2) and close in the generated ones (uniform in
 * [−0.5, 0.5]): the kept coordinates of a sample name its component k, and since A is orthogonal the true
 * conditional of the generated coordinates given the kept ones is then N((A·mean_k)_generated, s² I).
 */
async function mixtureFor(transform: LinearTransform, mask: Float32Array, shape: number[], s: number) {
  const dim = mask.length;
  const rng = Rng.seeded(3);
  const meansA = [0, 1, 2].map((k) => Array.from(mask, (m) => (m ? rng.uniform() - 0.5 : 5 * (k - 1))));
  const pixel = transform.inverse(tf.tensor(meansA.flat(), [3, ...shape]));
  const flat = (await pixel.data()) as Float32Array;
  const mix: GaussianMixture = {
    dim,
    means: [0, 1, 2].map((k) => Array.from(flat.subarray(k * dim, (k + 1) * dim))),
    stds: [s, s, s],
    weights: [0.3, 0.3, 0.4],
  };
  return { mix, meansA };
}

/**
 * Edits n references drawn from the mixture with f* and checks: the kept coordinates of A·edit equal A·y's (to
 * float32 round-off), and the generated ones, standardised by their component's conditional, have mean 0 and
 * variance 1 within 5 standard errors of n samples (pooled over the generated coordinates for the variance).
 */
async function checkConditional(
  name: string,
  transform: LinearTransform,
  mask: Float32Array,
  shape: number[],
  edit: (
    f: (x: SampleBatch, s: SigmaBatch) => SampleBatch,
    y: tf.Tensor,
    ts: number[],
    rng: Rng,
  ) => tf.Tensor,
) {
  const n = 1500, s = 0.25, dim = mask.length;
  const { mix, meansA } = await mixtureFor(transform, mask, shape, s);
  const rng = Rng.seeded(9);
  const y = tf.tensor(Float32Array.from(sampleMixture(mix, n, () => rng.normal(), () => rng.uniform())), [
    n,
    ...shape,
  ]);
  const ts = [80, 10, 3, 1, 0.4];
  const out = edit(exactConsistencyFnHost(mix, EPS, 60), y, ts, Rng.seeded(4));
  const [ay, ax] = [
    (await transform.forward(y).data()) as Float32Array,
    (await transform.forward(out).data()) as Float32Array,
  ];
  const generated = Array.from(mask.keys()).filter((i) => mask[i] === 1);
  const kept = Array.from(mask.keys()).filter((i) => mask[i] === 0);
  let maxKeptError = 0, sumSq = 0;
  const sums = new Float64Array(dim);
  for (let p = 0; p < n; p++) {
    const row = p * dim;
    for (const i of kept) maxKeptError = Math.max(maxKeptError, Math.abs(ax[row + i] - ay[row + i]));
    const k = Math.round(ay[row + kept[0]] / 5) + 1; // the component the kept coordinates name
    for (const i of generated) {
      const r = (ax[row + i] - meansA[k][i]) / s;
      sums[i] += r;
      sumSq += r * r;
    }
  }
  assert(maxKeptError < 2e-5, `${name}: kept coordinates moved by ${maxKeptError}`);
  for (const i of generated) {
    const mean = sums[i] / n;
    assert(
      Math.abs(mean) < 5 / Math.sqrt(n),
      `${name}: generated coordinate ${i} has standardised mean ${mean.toFixed(3)}`,
    );
  }
  const variance = sumSq / (n * generated.length);
  const tol = 5 * Math.sqrt(2 / (n * generated.length));
  assert(
    Math.abs(variance - 1) < tol,
    `${name}: standardised variance ${variance.toFixed(3)}, want 1 ± ${tol.toFixed(3)}`,
  );
}

Deno.test("inpaint with f*: kept pixels are y's, filled pixels follow the mixture's conditional", async () => {
  const mask = Float32Array.from([0, 1, 1, 0, 1, 1]); // 2×1×3 "images": two kept values, four filled
  await checkConditional(
    "inpaint",
    identityTransform(),
    mask,
    [2, 1, 3],
    (f, y, ts, rng) => inpaint(f, y, mask, ts, rng),
  );
});

Deno.test("colorize with f*: luminance is y's, chroma follows the mixture's conditional", async () => {
  await checkConditional(
    "colorize",
    colorTransform(),
    colorMask(2, 2),
    [2, 2, 3],
    (f, y, ts, rng) => colorize(f, y, ts, rng),
  );
});

Deno.test("superres with f*: 2×2 block means are y's, detail follows the mixture's conditional", async () => {
  await checkConditional(
    "superres",
    patchTransform(2),
    patchMask(4, 2, 1, 2),
    [4, 2, 1],
    (f, y, ts, rng) => superres(f, y, 2, ts, rng),
  );
});

Deno.test("editGrid: panels as rows (or columns) of n images", () => {
  const a = new Float32Array(2 * 2 * 2 * 3).fill(-1);
  const b = new Float32Array(2 * 2 * 2 * 3).fill(1);
  const rows = editGrid([a, b], [2, 2, 3], false, 0);
  assertEquals([rows.width, rows.height], [4, 4]);
  assertEquals(rows.data[0], 0); // row 0: panel a (black)
  assertEquals(rows.data[(2 * 4) * 3], 255); // row 2: panel b (white)
  const cols = editGrid([a, b], [2, 2, 3], true, 0);
  assertEquals([cols.width, cols.height], [4, 4]);
  assertEquals(cols.data[2 * 3], 255); // column 2: panel b
  assertThrows(() => editGrid([a, b.subarray(12)], [2, 2, 3]), Error, "same number");
});

// ---- the task ------------------------------------------------------------------------------------------------

const root = new URL("..", import.meta.url).pathname;
const SUBSET = `${root}../shared/data/cifar10-subset`;

const task = (script: string, args: string[]) => runTaskScript(script, args);

const hasSubset = (() => {
  try {
    return Deno.statSync(`${SUBSET}/test_batch_first1000.bin`).isFile;
  } catch {
    return false;
  }
})();

Deno.test({
  name: "deno task edit on a (1-step) CIFAR-10 run: the kept pixels of the saved edits are the dataset's",
  ignore: !hasSubset,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "ict-edit-test-" });
    const tiny = ["--model", "ncsnpp-small-32", "--model.model-channels", "8", "--model.num-blocks", "1"];
    const trained = await task("train.ts", [
      "--config",
      "cifar10",
      "--run",
      `${dir}/run`,
      ...tiny,
      "--model.attn-resolutions",
      "",
      "--data.dir",
      SUBSET,
      "--batch",
      "2",
      "--max-steps",
      "1",
      "--sample-every",
      "0",
      "--backend",
      "cpu",
    ]);
    assertEquals(trained.code, 0, trained.text.slice(-2000));
    const common = ["--run", `${dir}/run`, "--n", "3", "--first", "5", "--ts", "80,2", "--backend", "cpu"];
    const r = await task("edit.ts", [
      ...common,
      "--task",
      "inpaint",
      "--mask",
      "bottom",
      "--out",
      `${dir}/inpaint`,
    ]);
    assertEquals(r.code, 0, r.text.slice(-2000));
    const report = JSON.parse(await Deno.readTextFile(`${dir}/inpaint/report.json`));
    assertEquals([report.task, report.data, report.keptMaxAbsError, report.ts], [
      "inpaint",
      "cifar10-subset-test",
      0,
      [80, 2],
    ]);
    const { readNpz } = await import("../lib/io/npz.ts");
    const { loadCifar10 } = await import("../lib/data/cifar10.ts");
    const { quantize } = await import("../lib/images.ts");
    const edited = readNpz(`${dir}/inpaint/edited.npz`).get("arr_0")!;
    assertEquals(edited.shape, [3, 32, 32, 3]);
    const refs = quantize((await loadCifar10(SUBSET, "test")).get([5, 6, 7]).x);
    const mask = inpaintMask("bottom", 32, 32, 3);
    let kept = 0, changed = 0;
    for (let i = 0; i < refs.length; i++) {
      if (mask[i % mask.length] === 0) kept += edited.data[i] === refs[i] ? 1 : 0;
      else changed += edited.data[i] !== refs[i] ? 1 : 0;
    }
    assertEquals(kept, refs.length / 2, "every kept (top-half) byte equals the dataset's");
    assert(changed > refs.length / 4, `the filled half is generated (${changed} bytes differ)`);
    for (const t of ["colorize", "superres", "interpolate"]) {
      const e = await task("edit.ts", [...common, "--task", t, "--out", `${dir}/${t}`]);
      assertEquals(e.code, 0, e.text.slice(-2000));
      const rep = JSON.parse(await Deno.readTextFile(`${dir}/${t}/report.json`));
      if (t !== "interpolate") {
        assert(rep.keptMaxAbsError < 1e-5, `${t}: kept coordinates moved by ${rep.keptMaxAbsError}`);
      }
    }
    const bad = await task("edit.ts", [...common, "--task", "deblur"]);
    assertEquals(bad.code, 1);
    assert(bad.text.includes("--task takes one of inpaint, colorize, superres, interpolate"), bad.text);
    await Deno.remove(dir, { recursive: true });
  },
});
