// Starting a new run from another run's weights (`deno task train --init RUN|FILE`): a toy run's checkpoint and
// OpenAI's tiny imported network (a run with only the `ema` group). The student, its EMA and CT's teacher start
// from the source's weights, the optimizer is fresh and the step 0; another network is refused by name.
import { assert, assertEquals, assertMatch, assertNotEquals, assertRejects, assertThrows } from "@std/assert";
import * as tf from "@tensorflow/tfjs";
import { type Dataset, epochPermutation } from "../lib/data/dataset.ts";
import { loadCheckpoint } from "../lib/io/checkpoint.ts";
import type { AdmConfig } from "../lib/models/adm.ts";
import { importOpenAiCheckpoint, TINY_OPENAI_CM_FIXTURE } from "../lib/openai_cm.ts";
import { preset, type TrainConfig } from "../lib/train/config.ts";
import { checkpointPath, listCheckpoints, runTraining } from "../lib/train/run.ts";
import { checkInitNetwork, loadInitWeights, Trainer } from "../lib/train/trainer.ts";
import { Rng } from "../lib/rng.ts";
import { TOY_MLP, toyPoints, toyTrainConfig } from "./toy_data.ts";

await tf.setBackend("cpu");

const toyConfig = toyTrainConfig;

const tempDir = () => Deno.makeTempDir({ prefix: "ict-init-test-" });
const values = async (m: Map<string, tf.Tensor>) =>
  Object.fromEntries(await Promise.all([...m].map(async ([k, t]) => [k, [...await t.data()]] as const)));
/** The names whose values differ between two parameter maps (a short failure message, even for big networks). */
async function differing(a: Map<string, tf.Tensor>, b: Map<string, tf.Tensor>): Promise<string[]> {
  const [x, y] = [await values(a), await values(b)];
  const names = [...new Set([...Object.keys(x), ...Object.keys(y)])];
  return names.filter((k) =>
    !x[k] || !y[k] || x[k].length !== y[k].length || x[k].some((v, i) => v !== y[k][i])
  );
}

/** A toy run of 5 steps: its checkpoint's student and EMA differ (EMA decay 0.9). */
async function toySource(dir: string) {
  const run = `${dir}/source`;
  await runTraining(toyConfig({ maxSteps: 5 }), { runDir: run, dataset: toyPoints(64, 1), quiet: true });
  return { run, checkpoint: await loadCheckpoint(checkpointPath(run, 5)) };
}

Deno.test("--init from a toy run: student, EMA and CT's teacher start at the source's EMA; fresh optimizer, step 0", async () => {
  const dir = await tempDir();
  const { run, checkpoint: src } = await toySource(dir);
  const ema = await values(src.groups.ema);
  assertNotEquals(ema, await values(src.groups.params), "the source's student and EMA differ");
  // Another seed, dropout and CT's EMA teacher: none of them changes the network's weights.
  const config = toyConfig({ seed: 9, teacher: "ema", model: { ...TOY_MLP, dropout: 0.1 } });
  const data = toyPoints(64, 2);
  const w = await loadInitWeights(checkpointPath(run, 5), config);
  assertEquals([w.weights, w.step], ["ema", 5]);
  const t = Trainer.create(structuredClone(config), data, undefined, undefined, w.params);
  assertEquals(t.step, 0);
  assertEquals(await values(t.params), ema, "the student before its first update");
  assertEquals(await values(t.ema), ema);
  assertEquals(await values(t.teacher!), ema);
  // The first step is that of a fresh run (same seed: same plan, data and RNG) whose weights were the source's:
  // a fresh optimizer, step 0.
  const ref = Trainer.create(structuredClone(config), data);
  for (const g of [ref.params, ref.ema, ref.teacher!]) {
    for (const [k, v] of [...g]) {
      const s = src.groups.ema.get(k)!;
      if (v instanceof tf.Variable) v.assign(s);
      else (g.set(k, s.clone()), v.dispose());
    }
  }
  const [a, b] = [await t.trainStep(), await ref.trainStep()];
  assertEquals([a.loss, a.n, a.gradNorm], [b.loss, b.n, b.gradNorm]);
  assertEquals(await values(t.params), await values(ref.params));
  assertNotEquals(await values(t.params), ema, "the step moved the student");

  // --init-weights params: the source's student instead.
  const p = await loadInitWeights(checkpointPath(run, 5), config, "params");
  assertEquals(await values(p.params), await values(src.groups.params));

  // The same through runTraining, from the run directory (its newest checkpoint): step 1 is that step.
  const fine = `${dir}/fine`;
  const r = await runTraining(structuredClone({ ...config, maxSteps: 1 }), {
    runDir: fine,
    init: { from: run },
    dataset: data,
    quiet: true,
  });
  assertEquals(r.step, 1);
  assertEquals(r.history[0].loss, a.loss);
  const saved = await loadCheckpoint(checkpointPath(fine, 1));
  assertEquals(await values(saved.groups.params), await values(t.params));
  const record = JSON.parse(await Deno.readTextFile(`${fine}/init.json`));
  assertEquals([record.checkpoint, record.weights, record.sourceStep], [checkpointPath(run, 5), "ema", 5]);
  assertMatch(await Deno.readTextFile(`${fine}/train.log`), /started from .*step-00000005.* step 0/);
  // The new run resumes as any other, without --init.
  const resumed = await runTraining(structuredClone({ ...config, maxSteps: 2 }), {
    runDir: fine,
    resume: true,
    dataset: data,
    quiet: true,
  });
  assertEquals(resumed.step, 2);
});

Deno.test("a rollback before the first checkpoint of an --init run goes back to the --init weights", async () => {
  const dir = await tempDir();
  const { run } = await toySource(dir);
  const config = toyConfig({ seed: 4, maxSteps: 1 });
  const nan = epochPermutation(64, config.seed + 2, 0)[0]; // in step 0's batch (the loader's seed: seed + 2)
  const data = toyPoints(64, 2, (i, v) => i === nan && v.fill(NaN));
  const fine = `${dir}/fine`;
  const r = await runTraining(structuredClone(config), {
    runDir: fine,
    init: { from: run },
    dataset: data,
    quiet: true,
  });
  assertEquals(r.step, 1);
  assertMatch(await Deno.readTextFile(`${fine}/metrics.jsonl`), /"event":"rollback"/);
  // Step 0 again from the --init weights, with the refused batch skipped.
  const ref = Trainer.create(
    structuredClone(config),
    data,
    undefined,
    undefined,
    (await loadInitWeights(checkpointPath(run, 5), config)).params,
  );
  ref.skip.set(0, 1);
  await ref.trainStep();
  assertEquals(
    await values((await loadCheckpoint(checkpointPath(fine, 1))).groups.params),
    await values(ref.params),
  );
});

Deno.test("--init refuses another network by name (shapes or not), --resume with it, and a run that has checkpoints", async () => {
  const dir = await tempDir();
  const { run } = await toySource(dir);
  const ck = checkpointPath(run, 5);
  const data = toyPoints(64, 2);
  const refused = (config: TrainConfig, pattern: RegExp) =>
    assertRejects(() => loadInitWeights(ck, config), Error).then((e) => assertMatch(e.message, pattern));
  await refused(toyConfig({ model: { ...TOY_MLP, hidden: 32 } }), /model\.hidden: 32 here, 16 in the source/);
  // Same shapes, other function: only the config says so.
  await refused(
    toyConfig({ model: { ...TOY_MLP, fourierScale: 16 } }),
    /model\.fourierScale: 16 here, 0\.02/,
  );
  await refused(
    toyConfig({ sigmaData: 0.25 }),
    /sigmaData: 0\.25 here, 0\.5 in the source.*--sigma-data 0\.5/,
  );
  // runTraining checks the network from the source's header before it reads any data (none is here).
  await assertRejects(
    () =>
      runTraining(
        toyConfig({
          model: { ...TOY_MLP, depth: 3 },
          data: { dataset: "cifar10", dir: `${dir}/no-such-data`, flip: false },
        }),
        { runDir: `${dir}/deeper`, init: { from: run }, quiet: true },
      ),
    Error,
    "model.depth: 3 here, 2 in the source",
  );
  assertEquals(await listCheckpoints(`${dir}/deeper`), []);
  // The --model that fits is named when one does.
  assertThrows(
    () => checkInitNetwork("src", toyConfig(), preset("toy2d")),
    Error,
    "pass --model mlp-2d",
  );
  await assertRejects(
    () => runTraining(toyConfig(), { runDir: run, resume: true, init: { from: run }, quiet: true }),
    Error,
    "give one of them",
  );
  await assertRejects(
    () => runTraining(toyConfig(), { runDir: run, init: { from: run }, dataset: data, quiet: true }),
    Error,
    "--init starts a new run: choose a new --run directory",
  );
});

/** 16×16 RGB images with 10 classes, the tiny OpenAI network's input. */
function tinyImages(size: number): Dataset {
  const rng = Rng.seeded(3);
  const x = Float32Array.from({ length: size * 16 * 16 * 3 }, () => Math.tanh(rng.normal()));
  const per = 16 * 16 * 3;
  return {
    name: "tiny-images",
    sampleShape: [16, 16, 3],
    size,
    labelDim: 10,
    get(indices) {
      const out = new Float32Array(indices.length * per);
      Array.from(indices).forEach((i, k) => out.set(x.subarray(i * per, (i + 1) * per), k * per));
      return { x: out, labels: Int32Array.from(indices, (i) => i % 10) };
    },
  };
}

Deno.test("--init from an imported OpenAI network (only its EMA): trains from those weights; params refused, other arch named", async () => {
  const dir = await tempDir();
  const { runDir, checkpoint } = await importOpenAiCheckpoint({
    ...TINY_OPENAI_CM_FIXTURE,
    out: `${dir}/tiny`,
  });
  const imported = JSON.parse(await Deno.readTextFile(`${runDir}/config.json`)) as TrainConfig;
  const config: TrainConfig = {
    ...imported,
    model: { ...imported.model as AdmConfig, dropout: 0.1, dropoutMaxResolution: 8 }, // dropout's may differ
    batch: 2,
    microBatch: 0,
    totalIters: 100,
    maxSteps: 1,
    checkpointEvery: 1,
    sampleEvery: 0,
    evalEvery: 0,
    logEvery: 1,
  };
  const source = (await loadCheckpoint(checkpoint)).groups.ema;
  const w = await loadInitWeights(checkpoint, config);
  const t = Trainer.create(structuredClone(config), tinyImages(8), undefined, undefined, w.params);
  assertEquals(await differing(t.params, source), [], "the student before its first update");
  assertEquals(await differing(t.ema, source), []);
  t.dispose();

  const r = await runTraining(structuredClone(config), {
    runDir: `${dir}/fine`,
    init: { from: runDir },
    dataset: tinyImages(8),
    quiet: true,
  });
  assertEquals(r.step, 1);
  assert(Number.isFinite(r.history[0].loss) && r.history[0].loss > 0, `loss ${r.history[0].loss}`);
  const saved = await loadCheckpoint(checkpointPath(`${dir}/fine`, 1));
  assertEquals(Object.keys(saved.groups).sort(), ["ema", "optimizer", "params"]);
  assert((await differing(saved.groups.params, source)).length > 0, "the step moved the student");

  await assertRejects(
    () => loadInitWeights(checkpoint, config, "params"),
    Error,
    'holds no "params" weights (it has ema): use --init-weights ema',
  );
  const adm = imported.model as AdmConfig;
  await assertRejects(
    () => loadInitWeights(checkpoint, { ...config, model: { ...adm, modelChannels: 64 } }),
    Error,
    `model.modelChannels: 64 here, ${adm.modelChannels} in the source`,
  );
});
