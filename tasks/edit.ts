// deno task edit --run DIR|FILE.safetensors --task inpaint|colorize|superres|interpolate [--n N] [--ts T1,T2,…]
//                [--data-dir DIR] [--split test|train] [--first I] [--mask center|bottom|right|checker]
//                [--patch P] [--alphas K] [--seed S] [--out DIR] [--weights ema|params] [--backend NAME]
// Zero-shot editing of dataset images with a trained consistency model (CM paper, Algorithm 4; lib/editing.ts)
// and interpolation between two noises. Reads the run directory that `deno task sample` reads. Writes, under
// --out (default RUN/edits/TASK): edited.png (the edits only, one row), panel.png (rows: reference, what
// Algorithm 4 keeps of it, edit), edited.npz (uint8 [N, H, W, C]) and report.json. panel.png shows the real
// images: keep it out of git. interpolate writes interpolate.png (row b: the path between noise pair b).
import * as tf from "@tensorflow/tfjs";
import { initBackend } from "../lib/backend.ts";
import { BACKEND_FLAG, checkStop, parseTaskFlags, RUN_FLAG, runTask, WEIGHTS_FLAG } from "../lib/cli.ts";
import { loadDataset } from "../lib/data/index.ts";
import {
  blockMeans,
  colorMask,
  colorTransform,
  DEFAULT_EDIT_TS,
  editAlgorithm4,
  editGrid,
  identityTransform,
  inpaintMask,
  interpolate,
  type LinearTransform,
  MASK_KINDS,
  type MaskKind,
  patchMask,
  patchTransform,
} from "../lib/editing.ts";
import { imageGrid, toUint8, writePng } from "../lib/images.ts";
import { writeFileAtomic } from "../lib/io/fs.ts";
import { writeNpz } from "../lib/io/npz.ts";
import { Logger } from "../lib/log.ts";
import { oneHotLabels } from "../lib/models/network.ts";
import { EVAL } from "../lib/nn/params.ts";
import { Rng } from "../lib/rng.ts";
import { SIGMA_MAX } from "../lib/schedules.ts";
import { latestCheckpoint } from "../lib/train/run.ts";
import { loadForSampling } from "../lib/train/trainer.ts";

const TASKS = ["inpaint", "colorize", "superres", "interpolate"] as const;
type EditTask = typeof TASKS[number];

await runTask(async () => {
  const args = parseTaskFlags({
    usage: "deno task edit --run DIR|FILE.safetensors --task inpaint|colorize|superres|interpolate [--n N] " +
      "[--ts T1,T2,…] [--data-dir DIR] [--split test|train] [--first I] [--mask KIND] [--patch P] [--alphas K] " +
      "[--seed S] [--out DIR] [--weights ema|params] [--backend NAME]",
    flags: [
      RUN_FLAG,
      { name: "task", value: "NAME", help: `one of ${TASKS.join(", ")}` },
      { name: "n", value: "N", default: "8", help: "images to edit (interpolate: noise pairs)" },
      {
        name: "ts",
        value: "T1,T2,…",
        default: DEFAULT_EDIT_TS.join(","),
        help: "Algorithm 4's times, descending",
      },
      { name: "data-dir", value: "DIR", help: "where the run's dataset lives (default: the run's data.dir)" },
      { name: "split", value: "test|train", default: "test", help: "the split the references come from" },
      { name: "first", value: "I", default: "0", help: "the index of the first reference" },
      { name: "mask", value: "KIND", default: "center", help: `inpainting hole: ${MASK_KINDS.join(", ")}` },
      { name: "patch", value: "P", default: "4", help: "super-resolution factor (P×P blocks)" },
      { name: "alphas", value: "K", default: "8", help: "interpolate: points on each path, ends included" },
      { name: "seed", value: "S", default: "0", help: "the noise seed" },
      { name: "out", value: "DIR", help: "where to write (default RUN/edits/TASK)" },
      WEIGHTS_FLAG,
      BACKEND_FLAG,
    ],
  });
  const v = args.values;
  if (!v.run) throw new Error("--run DIR|FILE.safetensors is required (see --help)");
  const task = v.task as EditTask;
  if (!TASKS.includes(task)) {
    throw new Error(`--task takes one of ${TASKS.join(", ")}, got "${v.task ?? ""}"`);
  }
  if (v.weights !== "ema" && v.weights !== "params") {
    throw new Error(`--weights takes ema or params, got "${v.weights}"`);
  }
  if (v.split !== "test" && v.split !== "train") {
    throw new Error(`--split takes test or train, got "${v.split}"`);
  }
  const n = args.int("n", 1)!;
  const first = args.int("first", 0)!;
  const seed = args.int("seed", 0)!;
  const patch = args.int("patch", 2)!;
  const alphas = args.int("alphas", 2)!;
  const ts = v.ts!.split(",").map(Number);
  if (ts.some((t) => !Number.isFinite(t))) {
    throw new Error(`--ts takes comma-separated numbers, got "${v.ts}"`);
  }

  await initBackend(); // reads --backend
  const log = new Logger();
  const path = await latestCheckpoint(v.run);
  const { config, model, params, step } = await loadForSampling(path, v.weights);
  const shape = model.network.sampleShape;
  if (shape.length !== 3) throw new Error(`editing needs an image model; ${path} samples shape [${shape}]`);
  const [h, w, c] = shape;
  const out = v.out ?? `${v.run.endsWith(".safetensors") ? "edits" : v.run + "/edits"}/${task}`;
  await Deno.mkdir(out, { recursive: true });
  const labelDim = model.network.labelDim;
  const written: string[] = [];
  const report: Record<string, unknown> = {
    command: `deno task edit ${Deno.args.join(" ")}`,
    date: new Date().toISOString(),
    checkpoint: path,
    step,
    weights: v.weights,
    task,
    seed,
  };

  if (task === "interpolate") {
    // Pairs of unit noises; with a class-conditional model, pair b uses class b mod labelDim at every point.
    const z0 = tf.randomNormal([n, h, w, c], 0, 1, "float32", Rng.seeded(seed).seed());
    const z1 = tf.randomNormal([n, h, w, c], 0, 1, "float32", Rng.seeded(seed + 1).seed());
    const as = Array.from({ length: alphas }, (_, i) => i / (alphas - 1));
    const labels = labelDim
      ? oneHotLabels(
        Int32Array.from({ length: n * alphas }, (_, i) => Math.floor(i / alphas) % labelDim),
        labelDim,
      )
      : undefined;
    const x = interpolate(model.fn(params, EVAL, labels), z0, z1, as, SIGMA_MAX);
    const bytes = await toUint8(tf.clipByValue(x, -1, 1) as tf.Tensor4D);
    const file = `${out}/interpolate.png`;
    await writePng(file, imageGrid(bytes, n * alphas, h, w, c, alphas));
    written.push(file);
    Object.assign(report, { pairs: n, alphas: as, sigmaMax: SIGMA_MAX });
  } else {
    const dataCfg = { ...config.data, ...(v["data-dir"] ? { dir: v["data-dir"] } : {}) };
    const data = await loadDataset(dataCfg, v.split);
    if (first + n > data.size) {
      throw new Error(
        `--first ${first} --n ${n} asks for images past the end of ${data.name} (${data.size} images)`,
      );
    }
    const { x: refs, labels: refLabels } = data.get(Array.from({ length: n }, (_, i) => first + i));
    const y = tf.tensor(refs, [n, h, w, c]);
    let transform: LinearTransform;
    let mask: Float32Array;
    if (task === "inpaint") {
      if (!MASK_KINDS.includes(v.mask as MaskKind)) {
        throw new Error(`--mask takes one of ${MASK_KINDS.join(", ")}, got "${v.mask}"`);
      }
      [transform, mask] = [identityTransform(), inpaintMask(v.mask as MaskKind, h, w, c)];
      report.mask = v.mask;
    } else if (task === "colorize") {
      if (c !== 3) throw new Error(`colorize needs RGB images; the model's have ${c} channel(s)`);
      [transform, mask] = [colorTransform(), colorMask(h, w)];
    } else {
      if (h % patch || w % patch) throw new Error(`--patch ${patch} does not divide the ${h}×${w} images`);
      [transform, mask] = [patchTransform(patch), patchMask(h, w, c, patch)];
      report.patch = patch;
    }
    const labels = labelDim && refLabels ? oneHotLabels(refLabels, labelDim) : undefined;
    log.info(
      `${task}: ${n} ${data.name} images from ${first} with ${path} (step ${step}, ${v.weights}), t = [${ts}]`,
    );
    const started = performance.now();
    const edited = editAlgorithm4(model.fn(params, EVAL, labels), y, transform, mask, ts, Rng.seeded(seed), {
      sigmaMin: model.sigmaMin,
      clip: [-1, 1],
      callback: ({ i }) => log.progress(i + 1, ts.length, (i + 1) / ((performance.now() - started) / 1000)),
    });
    log.clearBar();
    await checkStop("edit");
    // What Algorithm 4 keeps of y: A⁻¹[(Ay)⊙(1−Ω)] (for super-resolution, the block means).
    const kept = task === "superres" ? blockMeans(y, patch) : tf.tidy(() => {
      const omega = tf.tensor(mask, [1, h, w, c]);
      return transform.inverse(tf.mul(transform.forward(y), tf.sub(1, omega)));
    });
    // Check the kept coordinates: max |A·edit − A·y| over Ω = 0.
    const keptError = tf.tidy(() =>
      tf.max(
        tf.mul(
          tf.abs(tf.sub(transform.forward(edited), transform.forward(y))),
          tf.sub(1, tf.tensor(mask, [1, h, w, c])),
        ),
      )
        .dataSync()[0]
    );
    const editedHost = (await edited.data()) as Float32Array;
    const editedU8 = await toUint8(editedHost);
    await writeNpz(`${out}/edited.npz`, { arr_0: { data: editedU8, shape: [n, h, w, c] } });
    await writePng(`${out}/edited.png`, editGrid([editedHost], shape));
    const panel = [refs, (await kept.data()) as Float32Array, editedHost].map((p) =>
      p.map((x) => Math.max(-1, Math.min(1, x)))
    );
    await writePng(`${out}/panel.png`, editGrid(panel, shape));
    written.push(`${out}/edited.png`, `${out}/edited.npz`, `${out}/panel.png (real images: keep out of git)`);
    Object.assign(report, {
      data: data.name,
      split: v.split,
      first,
      n,
      ts,
      sigmaMin: model.sigmaMin,
      keptMaxAbsError: keptError,
      seconds: (performance.now() - started) / 1000,
    });
    log.info(`kept coordinates: max |A·edit − A·y| = ${keptError.toExponential(2)} over Ω = 0`);
  }
  await writeFileAtomic(`${out}/report.json`, JSON.stringify(report, null, 2) + "\n");
  written.push(`${out}/report.json`);
  console.log(`wrote ${written.length} file(s):\n  ${written.join("\n  ")}`);
}, { stoppable: true });
