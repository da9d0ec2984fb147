// Long runs (README "Long runs"): the divergence guard's rollbacks (a NaN batch, a loss spike), failed
// checkpoint writes (injected ENOSPC / EIO), the run lock, evaluation during training with the best checkpoint,
// and the one flag parser of lib/cli.ts. In-process runs on tiny 2-D models on the cpu backend.
import { assert, assertEquals, assertMatch, assertRejects, assertThrows } from "@std/assert";
import * as tf from "@tensorflow/tfjs";
import { loadCheckpoint } from "../lib/io/checkpoint.ts";
import { parseTaskFlags, type TaskSpec } from "../lib/cli.ts";
import { epochPermutation } from "../lib/data/dataset.ts";
import type { Dataset } from "../lib/data/dataset.ts";
import { osError, setWriteHook } from "../lib/io/fs.ts";
import { preset, type TrainConfig } from "../lib/train/config.ts";
import { checkpointPath, listCheckpoints, runTraining } from "../lib/train/run.ts";
import { DivergenceError, NonFiniteLossError } from "../lib/train/trainer.ts";
import { TINY_NCSNPP } from "./reference/tiny_networks.ts";
import { TOY_MLP, toyPoints } from "./toy_data.ts";

await tf.setBackend("cpu");

/** The points the long-run tests train on (seed 5). */
const points = (size: number, edit?: (i: number, v: Float32Array) => void) => toyPoints(size, 5, edit);

function toyConfig(extra: Partial<TrainConfig> = {}): TrainConfig {
  return {
    ...preset("toy2d"),
    model: { ...TOY_MLP },
    totalIters: 400,
    batch: 8,
    maxSteps: 30,
    emaDecay: 0.9,
    checkpointEvery: 5,
    keepCheckpoints: 3,
    sampleEvery: 0,
    logEvery: 1,
    ...extra,
  };
}

const quiet = { quiet: true, signals: false } as const;
const tempDir = () => Deno.makeTempDir({ prefix: "ict-long-runs-" });

/** The dataset index of the sample that step `k` (0-based) reads at position `at` of its batch (first epoch). */
function sampleOfStep(c: TrainConfig, size: number, k: number, at = 0): number {
  return epochPermutation(size, c.seed + 2, 0)[k * c.batch + at]; // the data stream's seed offset is 2
}

async function jsonLines(dir: string): Promise<Record<string, unknown>[]> {
  return (await Deno.readTextFile(`${dir}/metrics.jsonl`)).trim().split("\n").map((l) => JSON.parse(l));
}

const losses = async (dir: string) =>
  (await jsonLines(dir)).filter((l) => "loss" in l && !("event" in l)).map((l) => [l.step, l.loss]);

async function params(path: string, group = "params") {
  const ck = await loadCheckpoint(path, {}, { groups: [group] });
  return new Map(
    await Promise.all([...ck.groups[group]].map(async ([k, t]) => [k, await t.data()] as const)),
  );
}

Deno.test("divergence guard: a NaN batch is refused, the run rolls back, skips it and finishes", async () => {
  const c = toyConfig();
  const size = 400; // one epoch covers the 30 steps: the poisoned sample is read once
  const bad = sampleOfStep(c, size, 13, 3);
  const dir = await tempDir();
  const r = await runTraining(c, {
    ...quiet,
    runDir: dir,
    dataset: points(size, (i, v) => i === bad && v.fill(NaN)),
  });
  assertEquals(r.step, 30);
  const lines = await jsonLines(dir);
  const rollback = lines.find((l) => l.event === "rollback")!;
  assert(rollback, "a rollback event in metrics.jsonl");
  assertEquals(rollback.step, 13);
  assertEquals(rollback.kind, "non-finite");
  assertMatch(String(rollback.nonFinite), new RegExp(`loss NaN.*gradient of .*input samples ${bad} `));
  assertMatch(
    String(rollback.message),
    /rolling back to checkpoint .*step-00000010.*skipping the data of step 13/i,
  );
  assertMatch(await Deno.readTextFile(`${dir}/train.log`), /not finite at step 13.*Rolling back/);
  // One loss line per step, steps 1 … 30, no duplicates from the replayed steps 11 … 13.
  assertEquals((await losses(dir)).map(([s]) => s), Array.from({ length: 30 }, (_, i) => i + 1));
  // Up to the rollback's checkpoint the run equals an unpoisoned one; the skipped batch changes what follows.
  const clean = await tempDir();
  await runTraining(c, { ...quiet, runDir: clean, dataset: points(size) });
  assertEquals((await losses(dir)).slice(0, 13), (await losses(clean)).slice(0, 13));
  for (const t of (await params(r.lastCheckpoint)).values()) assert(t.every(Number.isFinite));
});

Deno.test("divergence guard: a rollback resumes exactly (the skip is in the checkpoint)", async () => {
  const c = toyConfig();
  const size = 400;
  const bad = sampleOfStep(c, size, 7, 0);
  const data = points(size, (i, v) => i === bad && v.fill(NaN));
  const whole = await tempDir();
  await runTraining(c, { ...quiet, runDir: whole, dataset: data });
  const split = await tempDir();
  await runTraining(c, { ...quiet, runDir: split, dataset: data, stopAfter: 17 });
  await runTraining(c, { ...quiet, runDir: split, dataset: data, resume: true });
  assertEquals(await losses(split), await losses(whole));
  assertEquals(await params(checkpointPath(split, 30)), await params(checkpointPath(whole, 30)));
});

Deno.test("divergence guard: a loss spike over the running median is refused like a NaN", async () => {
  const c = toyConfig({ spikeFactor: 5, spikeWindow: 10 });
  const size = 400;
  const bad = sampleOfStep(c, size, 16, 2);
  const dir = await tempDir();
  const r = await runTraining(c, {
    ...quiet,
    runDir: dir,
    dataset: points(size, (i, v) => i === bad && v.fill(300)),
  });
  assertEquals(r.step, 30);
  const rollback = (await jsonLines(dir)).find((l) => l.event === "rollback")!;
  assert(rollback, "a rollback event");
  assertEquals([rollback.step, rollback.kind], [16, "spike"]);
  assert((rollback.loss as number) > 5 * (rollback.median as number));
  assertMatch(
    String(rollback.message),
    /loss spiked at step 16: .* over .*× the median .* of the last 10 steps/,
  );
  // No spike check: the same data is trained on (and the loss jumps).
  const off = await tempDir();
  await runTraining({ ...c, spikeFactor: 0 }, {
    ...quiet,
    runDir: off,
    dataset: points(size, (i, v) => i === bad && v.fill(300)),
  });
  assert(!(await jsonLines(off)).some((l) => "event" in l), "no events without the spike check");
});

Deno.test("divergence guard: the running median is in the checkpoint (a spike just after a resume is caught)", async () => {
  const c = toyConfig({ spikeFactor: 5, spikeWindow: 10 });
  const size = 400;
  const bad = sampleOfStep(c, size, 14, 2);
  const data = points(size, (i, v) => i === bad && v.fill(300));
  const dir = await tempDir();
  await runTraining(c, { ...quiet, runDir: dir, dataset: data, stopAfter: 12 });
  await runTraining(c, { ...quiet, runDir: dir, dataset: data, resume: true });
  const rollback = (await jsonLines(dir)).find((l) => l.event === "rollback");
  assert(rollback, "a rollback event: 2 losses since the resume would be too few for the median");
  assertEquals([rollback.step, rollback.kind], [14, "spike"]);
});

Deno.test("divergence guard: after --max-rollbacks it stops with the step, losses and the non-finite tensor", async () => {
  const c = toyConfig({ maxRollbacks: 2, maxSteps: 0 });
  const dir = await tempDir();
  // 24 samples, one poisoned: every epoch (3 steps) reads it again.
  const err = await runTraining(c, {
    ...quiet,
    runDir: dir,
    dataset: points(24, (i, v) => i === 5 && v.fill(NaN)),
  })
    .catch((e) => e);
  assert(err instanceof NonFiniteLossError && err instanceof DivergenceError, String(err));
  assertMatch(err.message, /stopped after 2 rollback\(s\) \(--max-rollbacks 2\)/);
  assertMatch(err.message, /not finite at step \d+ .*input samples 5 .*not updated/);
  assertMatch(err.message, /Losses before it \(step: loss\): \d+: \d/);
  const events = (await jsonLines(dir)).filter((l) => "event" in l).map((l) => l.event);
  assertEquals(events, ["rollback", "rollback", "diverged"]);
  assertMatch(await Deno.readTextFile(`${dir}/train.log`), /stopped after 2 rollback/);
  const [newest] = await listCheckpoints(dir);
  for (const t of (await params(newest.path)).values()) assert(t.every(Number.isFinite));
});

Deno.test("a failed checkpoint write (ENOSPC) keeps the previous one; the run continues and says so", async () => {
  const c = toyConfig({ maxSteps: 20 });
  const data = points(100);
  const whole = await tempDir();
  await runTraining(c, { ...quiet, runDir: whole, dataset: data });
  const dir = await tempDir();
  setWriteHook((path) => {
    if (path.endsWith("step-00000010.safetensors")) throw osError("ENOSPC", path);
  });
  try {
    await runTraining(c, { ...quiet, runDir: dir, dataset: data });
  } finally {
    setWriteHook(undefined);
  }
  assertEquals((await listCheckpoints(dir)).map((x) => x.step), [20, 15, 5]);
  const events = (await jsonLines(dir)).filter((l) => "event" in l);
  assertEquals(events.map((e) => [e.event, e.step]), [["checkpoint-failed", 10], [
    "checkpoint-recovered",
    15,
  ]]);
  assertMatch(
    String(events[0].message),
    /No space left on device.*step-00000005.* is intact; training continues/,
  );
  assert(!(await Array.fromAsync(Deno.readDir(`${dir}/checkpoints`))).some((e) => e.name.includes(".tmp-")));
  // The failure changed nothing about training.
  assertEquals(await params(checkpointPath(dir, 20)), await params(checkpointPath(whole, 20)));
  assertEquals(await losses(dir), await losses(whole));
});

Deno.test("checkpoint writes that keep failing (EIO) stop the run; the previous checkpoint still loads", async () => {
  const c = toyConfig({ maxSteps: 40, maxFailedWrites: 2 });
  const dir = await tempDir();
  setWriteHook((path) => {
    if (/step-000000(1|2|3)\d\.safetensors$/.test(path)) throw osError("EIO", path);
  });
  let err: Error;
  try {
    err = await runTraining(c, { ...quiet, runDir: dir, dataset: points(100) }).catch((e) => e);
  } finally {
    setWriteHook(undefined);
  }
  assertMatch(
    err!.message,
    /failed at step 15 \(Input\/output error.*step-00000005.* is intact; stopping \(2 failed/,
  );
  assertEquals((await listCheckpoints(dir)).map((x) => x.step), [5]);
  await params(checkpointPath(dir, 5)); // loads
  // The final checkpoint failing stops at once, also with the previous one named.
  const last = await tempDir();
  setWriteHook((path) => {
    if (path.endsWith("step-00000007.safetensors")) throw osError("ENOSPC", path);
  });
  try {
    err = await runTraining({ ...c, maxSteps: 7 }, { ...quiet, runDir: last, dataset: points(100) }).catch((
      e,
    ) => e);
  } finally {
    setWriteHook(undefined);
  }
  assertMatch(
    err!.message,
    /failed at step 7 .*step-00000005.* is intact; stopping \(the run's last checkpoint\)/,
  );
});

Deno.test("run lock: a second process is refused while the first lives; a dead owner's lock is taken over", async () => {
  const c = toyConfig({ maxSteps: 2 });
  const dir = await tempDir();
  await Deno.mkdir(dir, { recursive: true });
  const sleeper = new Deno.Command("sleep", { args: ["60"] }).spawn();
  const lock = (pid: number) =>
    Deno.writeTextFile(`${dir}/lock`, JSON.stringify({ pid, host: Deno.hostname(), started: "earlier" }));
  await lock(sleeper.pid);
  try {
    await assertRejects(
      () => runTraining(c, { ...quiet, runDir: dir, dataset: points(50) }),
      Error,
      `being trained by process ${sleeper.pid}`,
    );
  } finally {
    sleeper.kill("SIGKILL");
    await sleeper.status;
  }
  // The owner is gone (as after kill -9): the lock is taken over, and released at the end.
  const r = await runTraining(c, { ...quiet, runDir: dir, dataset: points(50) });
  assertEquals(r.step, 2);
  await assertRejects(() => Deno.stat(`${dir}/lock`), Deno.errors.NotFound);
  await lock(Deno.pid);
  await assertRejects(
    () => runTraining(c, { ...quiet, runDir: dir, dataset: points(50), resume: true }),
    Error,
    "already being trained by this process",
  );
});

Deno.test("evaluation during training: sliced W1 of 1- and 2-step EMA samples, best checkpoint kept, exact resume", async () => {
  const c = toyConfig({ maxSteps: 20, evalEvery: 5, evalN: 200, keepCheckpoints: 1, emaDecay: 0.5 });
  const data = points(100);
  const reference = points(300);
  const opts = { ...quiet, dataset: data, reference };
  const whole = await tempDir();
  await runTraining(c, { ...opts, runDir: whole });
  const evals = (await jsonLines(whole)).filter((l) => l.eval);
  assertEquals(evals.map((e) => e.step), [5, 10, 15, 20]);
  for (const e of evals) {
    assertEquals(e.metric, "sliced W1");
    assert((e["1-step"] as number) > 0 && (e["2-step"] as number) > 0);
  }
  // best.safetensors holds the weights of the best evaluation and survives keepCheckpoints = 1.
  const scores = evals.map((e) => e["1-step"] as number);
  const bestAt = evals[scores.indexOf(Math.min(...scores))];
  // `best` marks exactly the running minima (here the evaluation at step 15 is worse than the one at 10).
  assertEquals(evals.map((e) => e.best), scores.map((v, i) => scores.slice(0, i).every((w) => v < w)));
  assert(evals.some((e) => !e.best), "a run whose scores are not all new minima, so the rule is tested");
  assertEquals(evals.filter((e) => e.best).at(-1), bestAt);
  const best = await loadCheckpoint(`${whole}/checkpoints/best.safetensors`);
  assertEquals((best.state as { step: number }).step, bestAt.step);
  assertMatch(await Deno.readTextFile(`${whole}/loss.html`), /sliced W1 of EMA samples/);
  // Stopped at step 10 and resumed, with the evaluation at step 10 lost (as if killed during it): it is redone.
  const split = await tempDir();
  await runTraining(c, { ...opts, runDir: split, stopAfter: 10 });
  const kept = (await Deno.readTextFile(`${split}/metrics.jsonl`)).trim().split("\n").filter((l) =>
    !(l.includes('"eval":true') && l.includes('"step":10,'))
  );
  await Deno.writeTextFile(`${split}/metrics.jsonl`, kept.join("\n") + "\n");
  await runTraining(c, { ...opts, runDir: split, resume: true });
  const strip = (ls: Record<string, unknown>[]) =>
    ls.map(({ time: _t, seconds: _s, imagesPerSec: _i, ...rest }) => rest);
  assertEquals(strip(await jsonLines(split)), strip(await jsonLines(whole)));
});

Deno.test("evaluation: images without Inception weights or a classifier are refused, saying what to fetch", async () => {
  const images: Dataset = {
    name: "noise-16",
    sampleShape: [16, 16, 3],
    size: 8,
    labelDim: 0,
    get: (idx) => ({ x: new Float32Array(idx.length * 768) }),
  };
  const c = toyConfig({
    model: TINY_NCSNPP as never,
    evalEvery: 5,
    evalMetric: "mnist-fd",
    data: { dataset: "cifar10", dir: "/nonexistent", flip: false },
  });
  const runDir = `${await tempDir()}/r`;
  await assertRejects(
    () => runTraining(c, { ...quiet, runDir, dataset: images }),
    Error,
    "no evaluation metric for noise-16",
  );
});

const SPEC: TaskSpec = {
  usage: "deno task x --run DIR [--n N]",
  positionals: ["mode"],
  flags: [
    { name: "run", value: "DIR", help: "a run" },
    { name: "n", value: "N", default: "4", help: "count" },
    { name: "is", help: "a switch" },
  ],
};

Deno.test("one flag parser: the same rules for every task", () => {
  const a = parseTaskFlags(SPEC, ["score", "--run=r", "--is", "--n", "7"]);
  assertEquals([a.positionals.mode, a.values.run, a.flag("is"), a.int("n", 1)], ["score", "r", true, 7]);
  assertEquals(parseTaskFlags(SPEC, ["ref"]).int("n"), 4, "default");
  assertThrows(
    () => parseTaskFlags(SPEC, ["ref", "--runs", "x"]),
    Error,
    "unknown flag --runs: this task takes --run, --n, --is",
  );
  assertThrows(() => parseTaskFlags(SPEC, ["ref", "--is", "yes"]), Error, "unexpected argument");
  assertThrows(() => parseTaskFlags(SPEC, ["ref", "--is=yes"]), Error, "--is is a switch");
  assertThrows(
    () => parseTaskFlags(SPEC, ["ref", "--n", "2.5"]).int("n"),
    Error,
    "--n takes an integer >= 0",
  );
  assertThrows(() => parseTaskFlags(SPEC, ["--n", "2"]), Error, "missing mode");
  const s = parseTaskFlags({ ...SPEC, positionals: [], settings: "config" }, ["--batch", "2", "--run", "r"]);
  assertEquals(s.settings, [["batch", "2"]]);
});
