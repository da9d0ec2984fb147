// The library functions behind notebooks 00, 04, 05 and 06: the paper's transcribed numbers against SETTINGS.md,
// the preset comparison, the network table and block structure, a run directory read back, the compute
// estimate and the σ_mid grid search.
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { blockStructure, compareNetworks } from "../lib/model_report.ts";
import {
  checkTranscription,
  compareWithPaper,
  emaHorizon,
  flattenConfig,
  readSettings,
} from "../lib/paper.ts";
import { describeModules } from "../lib/notebooks.ts";
import { readFidRecords, readRun, runMetricFigure, spread, trainingCost } from "../lib/run_report.ts";
import { searchSigmaMid, sigmaMidGrid } from "../lib/two_step_search.ts";
import { preset, PRESETS } from "../lib/train/config.ts";
import { writePng } from "../lib/images.ts";
import {
  editReferences,
  findImportedRun,
  importedRunCandidates,
  ksUniform,
  mixtureConditional,
  OPENAI_CM_RUN_ENV,
} from "../lib/pretrained.ts";

Deno.test("the transcribed paper numbers are on their cited lines of SETTINGS.md", async (t) => {
  const text = await readSettings();
  if (text === null) {
    console.log("skipped: ../shared/paper/SETTINGS.md is not beside the repository");
    return;
  }
  assert.deepEqual(checkTranscription(text), []);
  await t.step("a changed value is reported", () => {
    const changed = text.replace("| iCT | 2.83 |", "| iCT | 2.93 |");
    assert.match(checkTranscription(changed).join("\n"), /FID iCT: line 59/);
  });
  await t.step("a [U] claim on a line without a [U] mark is reported", () => {
    const lines = text.split("\n");
    lines[62] = lines[62].replace("CT U]", "CT C]"); // line 63: the mark of the CT row (line 61)
    assert.match(
      checkTranscription(lines.join("\n")).join("\n"),
      /FID CT \(LPIPS\), prior work: marked \[U\]/,
    );
  });
});

Deno.test("compareWithPaper: agreements, a changed preset value, [U] assumptions, missing settings", () => {
  const rows = Object.fromEntries(compareWithPaper(PRESETS).map((r) => [r.key, r]));
  assert.equal(rows["optimizer.lr"].verdict.cifar10, "agrees");
  assert.equal(rows["optimizer.lr"].verdict.imagenet64, "[U] kit assumes 0.0001");
  assert.equal(rows["emaDecay"].verdict.imagenet64, "agrees [U]");
  assert.equal(rows["model.numBlocks"].verdict["cifar10-deep"], "agrees [U]");
  assert.equal(rows["model.dim"].verdict.cifar10, "—");
  assert.equal(rows["seed"].verdict.cifar10, "not in the paper");
  assert.equal(rows["pMean"].values.toy2d, -1.1);
  const changed = { ...PRESETS, cifar10: { ...preset("cifar10"), pMean: 1.1 } };
  const bad = compareWithPaper(changed).find((r) => r.key === "pMean")!;
  assert.equal(bad.verdict.cifar10, "DIFFERS (paper -1.1)");
  assert.equal(bad.verdict.imagenet64, "agrees");
});

Deno.test("flattenConfig writes nested settings as dotted paths and keeps arrays whole", () => {
  assert.deepEqual(flattenConfig({ a: 1, b: { c: [1, 2], d: { e: "x" } } }), {
    a: 1,
    "b.c": [1, 2],
    "b.d.e": "x",
  });
});

Deno.test("compareNetworks: the kit's four paper networks within 0.1% of the paper's counts", () => {
  const rows = compareNetworks();
  assert.equal(rows.length, 4);
  for (const r of rows) {
    assert.ok(Math.abs(r.paramsDiff) < 1e-3, `${r.model} params ${r.kitParams} vs ${r.paperParams}`);
    assert.ok(Math.abs(r.gflopsDiff) < 1e-3, `${r.model} GFLOP ${r.kitGflops} vs ${r.paperGflops}`);
  }
  assert.equal(rows[0].kitParams, 56_395_523);
});

Deno.test("blockStructure: NCSN++ CIFAR-10 resolutions, blocks, attention, and every parameter counted", () => {
  const rows = blockStructure("ncsnpp-cifar10");
  const row = (part: string, res: string) => rows.find((r) => r.part === part && r.resolution === res)!;
  assert.equal(row("encoder", "32x32").layers, "conv, 4 × res block");
  assert.equal(row("encoder", "16x16").layers, "down, aux residual, 4 × res block (4 with attention)");
  assert.equal(row("decoder", "16x16").layers, "up, 5 × res block (1 with attention)");
  assert.equal(rows.reduce((n, r) => n + r.params, 0), 56_395_523);
  const deep = blockStructure("ncsnpp-cifar10-deep");
  assert.equal(
    deep.find((r) => r.part === "encoder" && r.resolution === "8x8")!.layers,
    "down, aux residual, 8 × res block",
  );
});

Deno.test("readRun reads config, metrics, sample grids and checkpoints of a run directory in step order", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.mkdir(`${dir}/samples`);
    await Deno.mkdir(`${dir}/checkpoints`);
    await Deno.writeTextFile(`${dir}/config.json`, JSON.stringify(preset("toy2d")));
    const line = (step: number, loss: number) =>
      JSON.stringify({ step, loss, n: 11 + step, lr: 1e-3, imagesPerSec: 5, gradNorm: 2, time: "t" }) + "\n";
    const evalLine = JSON.stringify({
      step: 20,
      eval: true,
      best: true,
      metric: "MNIST-FD",
      "1-step": 9,
      "2-step": 7,
    });
    const event = JSON.stringify({
      step: 15,
      event: "rollback",
      message: "loss not finite",
      time: "t",
      loss: NaN,
    });
    await Deno.writeTextFile(
      `${dir}/metrics.jsonl`,
      line(20, 0.5) + evalLine + "\n" + event + "\n" + line(10, 0.9) + "\n",
    );
    const img = { data: new Uint8Array(4 * 4), width: 4, height: 4, channels: 1 };
    for (const s of [200, 50]) await writePng(`${dir}/samples/step-${String(s).padStart(8, "0")}.png`, img);
    await Deno.writeTextFile(`${dir}/samples/notes.txt`, "not a grid");
    await Deno.writeTextFile(`${dir}/checkpoints/step-00000050.safetensors`, "");
    await Deno.writeTextFile(`${dir}/checkpoints/best.safetensors`, "");
    const run = await readRun(dir);
    assert.equal(run.config.preset, "toy2d");
    assert.deepEqual(run.metrics.map((m) => m.step), [10, 20]);
    assert.deepEqual(run.evals.map((e) => [e.step, e["2-step"]]), [[20, 7]]);
    assert.deepEqual(run.events.map((e) => e.event), ["rollback"]);
    assert.deepEqual(run.samples.map((s) => s.step), [50, 200]);
    assert.deepEqual(run.checkpoints.map((s) => s.step), [50]);
    const fig = runMetricFigure(run, "loss");
    assert.deepEqual(fig.data[0].y, [0.9, 0.5]);
    assert.deepEqual(fig.data[1].y, [21, 31]); // N(k) on the second axis
    assert.equal(runMetricFigure(run, "gradNorm").data[0].name, "gradNorm");
    await Deno.remove(`${dir}/config.json`);
    await assert.rejects(readRun(dir), /config\.json not found/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("spread keeps the first and the last and spaces the rest evenly", () => {
  assert.deepEqual(spread([1, 2, 3, 4, 5, 6, 7, 8, 9], 3), [1, 5, 9]);
  assert.deepEqual(spread([1, 2], 4), [1, 2]);
  assert.deepEqual(spread([1, 2, 3], 1), [3]);
});

Deno.test("trainingCost: the paper's CIFAR-10 run is ≈ 7e19 FLOP; time at a measured rate", () => {
  const gflopsPerStep = 4 * 42.8 * 1024; // four forward passes per image, batch 1024
  const c = trainingCost(gflopsPerStep, 400_000, 1024, 2);
  assert.ok(Math.abs(c.totalFlop / 7.01e19 - 1) < 0.01, `${c.totalFlop}`);
  assert.equal(c.seconds, 2 * 1024 * 400_000);
  assert.ok(Math.abs(c.flopPerSecond! - 4 * 42.8e9 / 2) < 1);
  assert.equal(trainingCost(1, 10, 1).seconds, undefined);
});

Deno.test("searchSigmaMid finds the σ_mid whose samples match the reference", async () => {
  const reference = new Float32Array(400).map((_, i) => Math.sin(i * 12.9898) * 0.5);
  // Samples shifted by |ln σ − ln 0.5|: the best σ on the grid is the one nearest 0.5.
  const sampler = (s: number) => Promise.resolve(reference.map((v) => v + Math.abs(Math.log(s / 0.5))));
  const grid = sigmaMidGrid(0.1, 5, 9);
  const nearest = grid.reduce((a, b) => (Math.abs(Math.log(b / 0.5)) < Math.abs(Math.log(a / 0.5)) ? b : a));
  let calls = 0;
  for (const criterion of ["energy", "slicedW1"] as const) {
    const r = await searchSigmaMid(sampler, reference, 2, grid, { criterion, onProgress: () => calls++ });
    assert.equal(r.best.sigmaMid, nearest);
    assert.equal(r.rows.length, 9);
  }
  assert.equal(calls, 18);
  assert.ok(Math.abs(grid[0] - 0.1) < 1e-12 && Math.abs(grid[8] - 5) < 1e-12);
  assert.throws(() => sigmaMidGrid(0.001, 5, 9), /σ_min < lo/);
});

Deno.test("emaHorizon: half-life and mean age of the student EMA", () => {
  const h = emaHorizon(0.5);
  assert.equal(h.halfLifeSteps, 1);
  assert.equal(h.meanAgeSteps, 1);
  assert.ok(Math.abs(emaHorizon(0.99993).halfLifeSteps - 9901.8) < 0.1);
  assert.throws(() => emaHorizon(1), /in \(0, 1\)/);
});

Deno.test("readFidRecords: only a real-weights FID of 50,000 samples is comparable with the paper", async () => {
  const dir = await Deno.makeTempDir();
  try {
    assert.deepEqual(await readFidRecords(`${dir}/absent`), []);
    const rec = (name: string, r: Record<string, unknown>) =>
      Deno.writeTextFile(`${dir}/${name}.json`, JSON.stringify({ samples: name, reference: "ref", ...r }));
    await rec("real", {
      metric: "FID",
      count: 50_000,
      value: 3.1,
      weights: "pt_inception sha256:1",
      date: "2026-02",
    });
    await rec("few", {
      metric: "FID",
      count: 10_000,
      value: 5,
      weights: "pt_inception sha256:1",
      date: "2026-01",
    });
    await rec("standin", {
      metric: "FID",
      count: 50_000,
      value: 9,
      weights: "STAND-IN synthetic",
      caveat: "not an FID",
      date: "2026-03",
      precisionRecall: { precision: 0.7, recall: 0.6, k: 3, realCount: 50_000, fakeCount: 50_000 },
    });
    await Deno.writeTextFile(`${dir}/notes.txt`, "not a record");
    // a run directory's other JSON files are not records
    await Deno.writeTextFile(`${dir}/config.json`, JSON.stringify({ preset: "openai-cm", model: {} }));
    await Deno.writeTextFile(`${dir}/import.json`, JSON.stringify({ sha256: "00", parameters: 1 }));
    const rs = await readFidRecords(dir);
    assert.deepEqual(rs.map((r) => [r.samples, r.comparable]), [["few", false], ["real", true], [
      "standin",
      false,
    ]]);
    assert.equal(rs[2].precisionRecall?.recall, 0.6);
    assert.equal(rs[0].precisionRecall, undefined);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("describeModules lists .ts files with their header comment, folders included", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.mkdir(`${dir}/sub`);
    await Deno.writeTextFile(`${dir}/b.ts`, "// Second module.\n// more\nexport {};\n");
    await Deno.writeTextFile(`${dir}/sub/a.ts`, "export {};\n");
    await Deno.writeTextFile(`${dir}/readme.md`, "# not code");
    assert.deepEqual(await describeModules(dir), [
      { file: "b.ts", summary: "Second module." },
      { file: "sub/a.ts", summary: "(no header comment)" },
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

// ---- notebook 06 (lib/pretrained.ts) ------------------------------------------------------------------------

Deno.test("findImportedRun: $ICT_OPENAI_CM_RUN alone when set, else runs/NAME of the released models", async () => {
  const env = (v?: string) => ({ get: (k: string) => (k === OPENAI_CM_RUN_ENV ? v : undefined) });
  assert.deepEqual(importedRunCandidates(env("/x/run")), ["/x/run"]);
  const defaults = importedRunCandidates(env());
  assert.ok(defaults.some((d) => d.endsWith("/runs/cd_imagenet64_lpips")), defaults.join());
  const dir = await Deno.makeTempDir();
  try {
    assert.equal(await findImportedRun([`${dir}/a`, `${dir}/b`], env()), undefined);
    await Deno.mkdir(`${dir}/b`);
    await Deno.writeTextFile(`${dir}/b/import.json`, JSON.stringify({ parameters: 7, sha256: "ab" }));
    const found = await findImportedRun([`${dir}/a`, `${dir}/b`], env());
    assert.equal(found?.runDir, `${dir}/b`);
    assert.equal(found?.record.parameters, 7);
    await assert.rejects(() => findImportedRun([`${dir}/a`], env(`${dir}/a`)), /holds no import\.json/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("mixtureConditional: the conditional of a 2-D mixture, its density and CDF", () => {
  const mix = {
    dim: 2,
    means: [[-1, 0.5], [-1, -0.5], [3, 0]],
    stds: [0.2, 0.2, 0.4],
    weights: [0.25, 0.25, 0.5],
  };
  const c = mixtureConditional(mix, 0, -1); // x1 = −1: the third component is 10 stds away
  assert.ok(Math.abs(c.weights[0] - 0.5) < 1e-12 && c.weights[2] < 1e-20, `${c.weights}`);
  // the density integrates to 1 and is the CDF's derivative
  let mass = 0;
  for (let x = -4; x < 4; x += 1e-3) mass += c.pdf(x + 5e-4) * 1e-3;
  assert.ok(Math.abs(mass - 1) < 1e-6, `mass ${mass}`);
  assert.ok(Math.abs((c.cdf(0.31) - c.cdf(0.29)) / 0.02 - c.pdf(0.3)) < 1e-3);
  assert.ok(Math.abs(c.cdf(0) - 0.5) < 1e-12, "symmetric about 0");
  const other = mixtureConditional(mix, 1, 0); // x2 = 0: x1's conditional, weights ∝ w_k N(0; m_k2, s_k²)/…
  const raw = [0.25 * Math.exp(-0.5 * 6.25) / 0.2, 0.25 * Math.exp(-0.5 * 6.25) / 0.2, 0.5 / 0.4];
  assert.ok(Math.abs(other.weights[2] - raw[2] / (raw[0] + raw[1] + raw[2])) < 1e-12);
  assert.throws(() => mixtureConditional({ ...mix, dim: 3 }, 0, 0), /2-D/);
});

Deno.test("ksUniform: 0-ish for an even grid, 1 − ε for a point mass", () => {
  const n = 1000;
  assert.ok(ksUniform(Float64Array.from({ length: n }, (_, i) => (i + 0.5) / n)) <= 0.5 / n + 1e-12);
  assert.ok(ksUniform(new Float64Array(n).fill(0.999)) > 0.99);
});

Deno.test("editReferences: n real images at the model's shape, in [−1, 1], classes for a conditional model", async () => {
  await tf.setBackend("cpu");
  const r = await editReferences(3, [16, 16, 3], 10);
  assert.equal(r.x.length, 3 * 16 * 16 * 3);
  assert.ok(r.x.every((v) => v >= -1 && v <= 1));
  assert.equal(r.classes?.length, 3);
  assert.match(r.source, /test images 0–2/);
  const grey = await editReferences(2, [28, 28, 1], 0);
  assert.equal(grey.classes, undefined);
  assert.equal(grey.x.length, 2 * 28 * 28);
});
