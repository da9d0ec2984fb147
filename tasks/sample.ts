// deno task sample --run DIR|FILE.safetensors [--steps 1|2|n | --taus 80,0.821] [--n N] [--out DIR|FILE.npz]
//                  [--batch B] [--seed S] [--class C] [--weights ema|params] [--backend NAME]
// Samples a trained consistency model in one, two or any number of steps (CM Algorithm 1) and writes
// PNG grids (up to 100 images each) plus an .npz batch of uint8 images ("arr_0" [N, H, W, C], and the class
// labels as "arr_1" for class-conditional models: the layout FID evaluators read). 2-D toy models write the
// points (float32 "arr_0" [N, 2]) and a scatter plot.
import { initBackend } from "../lib/backend.ts";
import { writeNpz } from "../lib/io/npz.ts";
import { imageGrid, scatterImage, toUint8, writePng } from "../lib/images.ts";
import { Logger } from "../lib/log.ts";
import { sampleMany, samplingSchedule } from "../lib/sampling.ts";
import { concat } from "../lib/arrays.ts";
import { latestCheckpoint } from "../lib/train/run.ts";
import { loadForSampling } from "../lib/train/trainer.ts";
import { BACKEND_FLAG, checkStop, parseTaskFlags, RUN_FLAG, runTask, WEIGHTS_FLAG } from "../lib/cli.ts";

await runTask(async () => {
  const args = parseTaskFlags({
    usage: "deno task sample --run DIR|FILE.safetensors [--steps 1|2|n | --taus 80,0.821] [--n N] " +
      "[--out DIR|FILE.npz] [--batch B] [--seed S] [--class C] [--weights ema|params] [--backend NAME]",
    flags: [
      RUN_FLAG,
      { name: "steps", value: "N", default: "1", help: "sampling steps (CM Algorithm 1)" },
      { name: "taus", value: "T1,T2,…", help: "the noise levels instead of --steps" },
      { name: "n", value: "N", default: "64", help: "samples" },
      { name: "out", value: "DIR|FILE.npz", help: "where to write (default RUN/samples/…)" },
      { name: "batch", value: "B", default: "64", help: "samples per network call" },
      { name: "seed", value: "S", default: "0", help: "the noise seed" },
      { name: "class", value: "C", help: "class-conditional models: this class for all samples" },
      WEIGHTS_FLAG,
      BACKEND_FLAG,
    ],
  });
  const values = args.values as Record<string, string> & { taus?: string; out?: string; class?: string };
  if (!values.run) throw new Error("--run DIR|FILE.safetensors is required (see --help)");
  const int = (name: string, v: string, min: number) => {
    const x = Number(v);
    if (!Number.isInteger(x) || x < min) throw new Error(`--${name} takes an integer >= ${min}, got "${v}"`);
    return x;
  };
  const n = int("n", values.n, 1);
  const batch = int("batch", values.batch, 1);
  const seed = int("seed", values.seed, 0);
  if (values.weights !== "ema" && values.weights !== "params") {
    throw new Error(
      `--weights takes ema (the student's EMA) or params (the online student), got "${values.weights}"`,
    );
  }

  await initBackend();
  const log = new Logger();
  const path = await latestCheckpoint(values.run);
  const { config, model, params, step } = await loadForSampling(path, values.weights);
  const taus = values.taus
    ? values.taus.split(",").map(Number)
    : samplingSchedule(int("steps", values.steps, 1), config.sigmaMid);
  const labelDim = model.network.labelDim;
  const fixedClass = values.class !== undefined ? int("class", values.class, 0) : undefined;
  if (fixedClass !== undefined && fixedClass >= labelDim) {
    throw new Error(
      `--class ${fixedClass}: the model has ${labelDim} classes${labelDim ? "" : " (unconditional)"}`,
    );
  }
  const out = values.out ?? `${values.run.endsWith(".safetensors") ? "samples" : values.run + "/samples"}/` +
      `step${step}-${taus.length}step-n${n}`;
  const npzPath = out.endsWith(".npz") ? out : `${out}/samples.npz`;
  const gridBase = out.endsWith(".npz") ? out.slice(0, -4) : `${out}/grid`;
  await Deno.mkdir(npzPath.slice(0, npzPath.lastIndexOf("/")) || ".", { recursive: true });
  log.info(`sampling ${n} from ${path} (step ${step}, ${values.weights}) with τ = [${taus}]`);

  const shape = model.network.sampleShape;
  const isImage = shape.length === 3;
  const parts: (Float32Array | Uint8Array)[] = [];
  const classes: number[] = [];
  const started = performance.now();
  let done = 0;
  for await (
    const b of sampleMany(model, params, n, {
      taus,
      batch,
      seed,
      classes: fixedClass !== undefined ? () => fixedClass : undefined,
    })
  ) {
    parts.push(isImage ? await toUint8(b.x) : b.x);
    if (b.classes) classes.push(...b.classes);
    done += b.count;
    const rate = done / ((performance.now() - started) / 1000);
    log.progress(done, n, rate, `${rate.toFixed(1)} samples/s`);
    await checkStop("sample"); // a signal ends the task here, before anything is written
  }
  log.clearBar();

  const written: string[] = [];
  if (isImage) {
    const [h, w, c] = shape;
    const all = concat(parts as Uint8Array[], Uint8Array);
    const arrays: Record<string, { data: Uint8Array | Int32Array; shape: number[] }> = {
      arr_0: { data: all, shape: [n, h, w, c] },
    };
    if (labelDim > 0) arrays.arr_1 = { data: Int32Array.from(classes), shape: [n] };
    await writeNpz(npzPath, arrays);
    written.push(npzPath);
    const per = h * w * c;
    for (let g = 0; g * 100 < n; g++) {
      const count = Math.min(100, n - g * 100);
      const file = `${gridBase}-${String(g).padStart(3, "0")}.png`;
      await writePng(file, imageGrid(all.subarray(g * 100 * per, (g * 100 + count) * per), count, h, w, c));
      written.push(file);
    }
  } else {
    const points = concat(parts as Float32Array[], Float32Array);
    await writeNpz(npzPath, { arr_0: { data: points, shape: [n, shape[0]] } });
    await writePng(`${gridBase}.png`, scatterImage(points));
    written.push(npzPath, `${gridBase}.png`);
  }
  console.log(`wrote ${written.length} file(s):\n  ${written.join("\n  ")}`);
}, { stoppable: true });
