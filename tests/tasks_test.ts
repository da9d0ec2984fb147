// The headless tasks as a user runs them (subprocesses): Ctrl-C saves a checkpoint and --resume continues it,
// `sample` writes the .npz evaluators read and PNG grids, `demo` writes its report and images.
import { assert, assertEquals, assertMatch, assertNotEquals } from "@std/assert";
import { readNpz } from "../lib/io/npz.ts";
import { readPng } from "../lib/images.ts";
import { listCheckpoints } from "../lib/train/run.ts";
import { runTaskScript } from "./task_runner.ts";

const root = new URL("..", import.meta.url).pathname;

const run = (script: string, args: string[]) => runTaskScript(script, args);

async function tempDir() {
  return await Deno.makeTempDir({ prefix: "ict-tasks-test-" });
}

Deno.test("train: SIGINT saves a checkpoint and stops; --resume continues; other flags are refused on resume", async () => {
  const dir = `${await tempDir()}/run`;
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-all",
      `${root}tasks/train.ts`,
      "--config",
      "toy2d",
      "--run",
      dir,
      "--max-steps",
      "5000",
    ]
      .concat(["--log-every", "1", "--checkpoint-every", "100000", "--sample-every", "0"]),
    cwd: root,
    env: { NO_COLOR: "1" },
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const reader = child.stderr.getReader();
  let seen = "";
  while (!/\] 20\/5000/.test(seen)) seen += new TextDecoder().decode((await reader.read()).value);
  child.kill("SIGINT");
  while (true) {
    const { value, done } = await reader.read();
    if (done) break;
    seen += new TextDecoder().decode(value);
  }
  const status = await child.status;
  assertEquals(status.code, 0, seen.slice(-2000));
  assertMatch(seen, /signal received: saving a checkpoint/);
  const [ck] = await listCheckpoints(dir);
  assert(ck && ck.step >= 20 && ck.step < 5000, `checkpoint at step ${ck?.step}`);

  const refused = await run("train.ts", ["--config", "toy2d", "--run", dir, "--resume", "--batch", "8"]);
  assertNotEquals(refused.code, 0);
  assertMatch(refused.text, /only maxSteps.*Drop --batch/);

  const resumed = await run("train.ts", ["--run", dir, "--resume", "--max-steps", String(ck.step + 5)]);
  assertEquals(resumed.code, 0, resumed.text.slice(-2000));
  assertMatch(resumed.text, new RegExp(`resuming toy2d .* from step ${ck.step} to ${ck.step + 5}`));
  const steps = (await Deno.readTextFile(`${dir}/metrics.jsonl`)).trim().split("\n").map((l) =>
    JSON.parse(l).step
  );
  assertEquals(
    steps,
    Array.from({ length: ck.step + 5 }, (_, i) => i + 1),
    "one metrics line per step, no gap",
  );
});

Deno.test("sample: an .npz of uint8 images and PNG grids from a run's newest checkpoint", async () => {
  const dir = `${await tempDir()}/mnist`;
  const tiny = ["--model.model-channels", "8", "--model.channel-mult", "1", "--model.num-blocks", "1"];
  const trained = await run("train.ts", [
    "--config",
    "mnist",
    ...tiny,
    "--batch",
    "2",
    "--max-steps",
    "1",
    "--run",
    dir,
  ]);
  assertEquals(trained.code, 0, trained.text.slice(-2000));
  const s = await run("sample.ts", [
    "--run",
    dir,
    "--steps",
    "2",
    "--n",
    "5",
    "--batch",
    "2",
    "--out",
    `${dir}/s.npz`,
  ]);
  assertEquals(s.code, 0, s.text.slice(-2000));
  const npz = readNpz(`${dir}/s.npz`);
  assertEquals([...npz.keys()], ["arr_0"]);
  assertEquals(npz.get("arr_0")!.dtype, "uint8");
  assertEquals(npz.get("arr_0")!.shape, [5, 28, 28, 1]);
  const grid = await readPng(`${dir}/s-000.png`);
  assertEquals(grid.channels, 1);
  assert(grid.width > 28 * 2 && grid.height > 28, `grid ${grid.width}×${grid.height}`);
  const bad = await run("sample.ts", ["--run", dir, "--class", "3"]);
  assertNotEquals(bad.code, 0);
  assertMatch(bad.text, /unconditional/);
  const none = await run("sample.ts", ["--run", `${dir}-missing`]);
  assertMatch(none.text, /no checkpoint in .*train first/);
});

Deno.test("demo: trains, then reports trained vs untrained distances and writes its images; training helps", async () => {
  const dir = `${await tempDir()}/demo`;
  // A short run that still learns (200 steps of 128 points, lr 5e-3, EMA 0.9: about 7 s on 2 cores).
  const r = await run("demo.ts", [
    "--run",
    dir,
    "--total-iters",
    "200",
    "--batch",
    "128",
    "--optimizer.lr",
    "5e-3",
    "--ema-decay",
    "0.9",
    "--eval-n",
    "300",
    "--sample-every",
    "100",
  ]);
  assertEquals(r.code, 0, r.text.slice(-2000));
  const report = JSON.parse(await Deno.readTextFile(`${dir}/report.json`));
  assertEquals(report.steps, 200);
  assertEquals(report.batch, 128);
  for (const k of ["1-step", "2-step"]) {
    const [before, after] = [report.untrained[k], report.trained[k]];
    for (const which of [before, after]) {
      assert(which.slicedWasserstein > 0 && Number.isFinite(which.energyDistance));
    }
    // The trained model is much closer to held-out data than the untrained one (measured: sliced W1 0.16 vs
    // 0.45 and energy 0.045 vs 0.52 in one step; 0.11 vs 0.28 and 0.028 vs 0.21 in two).
    assert(
      after.slicedWasserstein < 0.6 * before.slicedWasserstein,
      `${k} sliced W1: trained ${after.slicedWasserstein}, untrained ${before.slicedWasserstein}`,
    );
    assert(
      after.energyDistance < 0.4 * before.energyDistance,
      `${k} energy distance: trained ${after.energyDistance}, untrained ${before.energyDistance}`,
    );
  }
  for (const f of ["trained-1step.png", "untrained-1step.png", "loss.html", "metrics.jsonl"]) {
    assert((await Deno.stat(`${dir}/${f}`)).size > 0, f);
  }
  assertMatch(r.text, /trained +1-step: sliced W1/);
});

Deno.test("fid:ref and fid: statistics, FID and IS end to end (stand-in weights, labelled as such)", async () => {
  const dir = await tempDir();
  const ref = await run(
    "fid.ts",
    ["ref", "--data", "mnist", "--split", "test", "--n", "6", "--weights", "standin"]
      .concat(["--batch", "3", "--out", `${dir}/ref.npz`]),
  );
  assertEquals(ref.code, 0, ref.text.slice(-2000));
  const stats = readNpz(`${dir}/ref.npz`);
  assertEquals(stats.get("mu")!.shape, [2048]);
  assertEquals(stats.get("sigma")!.shape, [2048, 2048]);
  assertMatch(ref.text, /STAND-IN/);
  const fid = await run(
    "fid.ts",
    ["score", "--samples", "mnist:train", "--n", "20", "--ref", `${dir}/ref.npz`]
      .concat(["--weights", "standin", "--is", "--batch", "10", "--out", `${dir}/fid.json`]),
  );
  assertEquals(fid.code, 0, fid.text.slice(-2000));
  const record = JSON.parse(await Deno.readTextFile(`${dir}/fid.json`));
  assertEquals(record.count, 20);
  assertEquals(record.metric, "FID");
  assert(record.value > 0 && Number.isFinite(record.value), `fid ${record.value}`);
  assertMatch(record.caveat, /NOT an FID/);
  // IS over 10 splits of 2 images: above 1 when two images' class predictions differ, and at most 2 (IS of a
  // split is exp of a mutual information, at most ln of its size). (With 1 image per split it is exactly 1.)
  const is = record.inceptionScore;
  assert(is.mean > 1 + 1e-5 && is.mean <= 2, `IS ${is.mean} of 10 splits of 2 images`);
  assert(is.std >= 0 && Number.isFinite(is.std), `IS std ${is.std}`);
  assertMatch(record.weights, /STAND-IN/);
  assertMatch(fid.text, /NOT an FID/);
  const missing = await run("fid.ts", [
    "score",
    "--samples",
    "mnist:train",
    "--ref",
    "mnist",
    "--weights",
    "standin",
  ]);
  assertNotEquals(missing.code, 0);
  assertMatch(missing.text, /data\/fid_refs\/mnist-train-[0-9a-f]{8}\.npz not found/);
  assertMatch(missing.text, /deno task fid:ref --data mnist --weights standin/);
  const noWeights = await run("fid.ts", ["score", "--samples", "x.npz", "--ref", "cifar10"]);
  assertMatch(noWeights.text, /FID Inception weights not found .*deno task data:inception/);
});

Deno.test("data:mnist-classifier, then fid:ref, fid and demo with --features mnist: an MNIST-FD, labelled as a proxy", async () => {
  const dir = await tempDir();
  const classifier = `${dir}/mnist.safetensors`;
  const noClassifier = await run("fid.ts", [
    "score",
    "--samples",
    "mnist:train",
    "--ref",
    "mnist",
    "--features",
    "mnist",
    "--classifier",
    classifier,
  ]);
  assertNotEquals(noClassifier.code, 0);
  assertMatch(noClassifier.text, /deno task data:mnist-classifier --data mnist/);
  const made = await run("data_mnist_classifier.ts", [
    "--out",
    classifier,
    "--limit",
    "256",
    "--epochs",
    "1",
  ]);
  assertEquals(made.code, 0, made.text.slice(-2000));
  assertMatch(made.text, /1 epoch\(s\) on 256 images, test accuracy \d+\.\d\d%/);
  const cached = await run("data_mnist_classifier.ts", ["--out", classifier]);
  assertMatch(cached.text, /already there/);
  const common = ["--features", "mnist", "--classifier", classifier, "--n", "300", "--batch", "128"];
  const ref = await run("fid.ts", [
    "ref",
    "--data",
    "mnist",
    "--split",
    "test",
    "--out",
    `${dir}/ref.npz`,
    ...common,
  ]);
  assertEquals(ref.code, 0, ref.text.slice(-2000));
  assertEquals(readNpz(`${dir}/ref.npz`).get("sigma")!.shape, [128, 128]);
  const score = await run("fid.ts", [
    "score",
    "--samples",
    "mnist:train",
    "--ref",
    `${dir}/ref.npz`,
    "--out",
    `${dir}/fd.json`,
    ...common,
  ]);
  assertEquals(score.code, 0, score.text.slice(-2000));
  const record = JSON.parse(await Deno.readTextFile(`${dir}/fd.json`));
  assertEquals(record.metric, "MNIST-FD");
  assertEquals(record.count, 300);
  assert(
    record.value > 0 && record.value < 50,
    `MNIST-FD of real digits against real digits: ${record.value}`,
  );
  assertMatch(
    score.text,
    /MNIST-FD \d+\.\d{3} \[MNIST-FD is a small-classifier proxy, NOT comparable to FID\]/,
  );
  const is = await run("fid.ts", [
    "score",
    "--samples",
    "mnist:train",
    "--ref",
    `${dir}/ref.npz`,
    "--is",
    ...common,
  ]);
  assertMatch(is.text, /--is \(Inception Score\) needs --features inception/);
  const wrongRef = await run(
    "fid.ts",
    ["score", "--samples", "mnist:train", "--ref", `${dir}/ref.npz`]
      .concat(["--features", "inception", "--weights", "standin", "--n", "3", "--batch", "3"]),
  );
  assertNotEquals(wrongRef.code, 0);
  assertMatch(wrongRef.text, /holds 128-dimensional statistics; FID features have 2048/);
  const demo = await run("demo.ts", [
    "--config",
    "mnist",
    "--run",
    `${dir}/demo`,
    "--classifier",
    classifier,
    "--total-iters",
    "100",
    "--max-steps",
    "1",
    "--batch",
    "2",
    "--eval-n",
    "20",
  ]);
  assertEquals(demo.code, 0, demo.text.slice(-2000));
  assertMatch(demo.text, /trained +1-step: sliced W1 .* MNIST-FD +\d+\.\d{3}/);
  assertMatch(demo.text, /MNIST-FD is a small-classifier proxy, NOT comparable to FID/);
  const report = JSON.parse(await Deno.readTextFile(`${dir}/demo/report.json`));
  assert(report.untrained["1-step"].fd > 0 && report.trained["2-step"].fd > 0);
  assertEquals(report.fdMetric.metric, "MNIST-FD");
});
