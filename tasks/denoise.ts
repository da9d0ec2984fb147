// deno task denoise --run DIR|FILE.safetensors --input x.npz --sigma S[,S…] [--class C[,C…]] --out y.npz
//                   [--array NAME] [--layout nhwc|nchw] [--weights ema|params] [--batch B] [--backend NAME]
// Evaluates the consistency function f_θ(x, σ) = c_skip(σ)·x + c_out(σ)·F_θ(c_in(σ)·x, c_noise(σ)) (Eq. 2) of a
// run on given float32 images, and writes the outputs as "arr_0" of an .npz in the input's layout: a parity
// tool for comparing the kit's network with any other implementation (tests/openai_cm_test.ts compares it with
// openai/consistency_models' KarrasDenoiser.denoise). One σ for all images, or one per image; the same for
// classes of class-conditional models.
import { initBackend } from "../lib/backend.ts";
import { BACKEND_FLAG, parseTaskFlags, RUN_FLAG, runTask, WEIGHTS_FLAG } from "../lib/cli.ts";
import { readNpz, writeNpz } from "../lib/io/npz.ts";
import { Logger } from "../lib/log.ts";
import { denoiseImages, nchwToNhwc, nhwcToNchw } from "../lib/openai_cm.ts";
import { latestCheckpoint } from "../lib/train/run.ts";
import { loadForSampling } from "../lib/train/trainer.ts";

await runTask(async () => {
  const args = parseTaskFlags({
    usage: "deno task denoise --run DIR|FILE.safetensors --input x.npz --sigma S[,S…] [--class C[,C…]] " +
      "--out y.npz [--array NAME] [--layout nhwc|nchw] [--weights ema|params] [--batch B] [--backend NAME]",
    flags: [
      RUN_FLAG,
      {
        name: "input",
        value: "x.npz",
        help: "float32 images [N, H, W, C] (or [N, C, H, W] with --layout nchw)",
      },
      {
        name: "array",
        value: "NAME",
        help: "the array of the .npz to read (default: its only one, or arr_0)",
      },
      { name: "sigma", value: "S[,S…]", help: "the noise level σ: one for all images, or one per image" },
      {
        name: "class",
        value: "C[,C…]",
        help: "class-conditional models: one class for all, or one per image",
      },
      { name: "out", value: "y.npz", help: "where to write f_θ(x, σ) (as arr_0, in the input's layout)" },
      { name: "layout", value: "nhwc|nchw", default: "nhwc", help: "the axes of the images" },
      WEIGHTS_FLAG,
      { name: "batch", value: "B", default: "16", help: "images per network call" },
      BACKEND_FLAG,
    ],
  });
  const v = args.values;
  for (const k of ["run", "input", "sigma", "out"] as const) {
    if (!v[k]) throw new Error(`--${k} is required (see --help)`);
  }
  if (v.layout !== "nhwc" && v.layout !== "nchw") {
    throw new Error(`--layout takes nhwc or nchw, got "${v.layout}"`);
  }
  if (v.weights !== "ema" && v.weights !== "params") {
    throw new Error(`--weights takes ema or params, got "${v.weights}"`);
  }
  const batch = args.int("batch", 1)!;

  const arrays = readNpz(v.input!);
  const name = v.array ?? (arrays.size === 1 ? [...arrays.keys()][0] : "arr_0");
  const arr = arrays.get(name);
  if (!arr) {
    throw new Error(
      `${v.input} has no array "${name}" (it has ${[...arrays.keys()].join(", ")}): pass --array NAME`,
    );
  }
  if (arr.dtype !== "float32" && arr.dtype !== "float64") {
    throw new Error(
      `${v.input} [${name}] is ${arr.dtype}: give float32 images (values in [-1, 1] plus noise)`,
    );
  }
  if (arr.shape.length !== 4) {
    throw new Error(
      `${v.input} [${name}] has shape [${arr.shape}]: images are [N, H, W, C] (or [N, C, H, W])`,
    );
  }
  const n = arr.shape[0];
  const data = arr.data instanceof Float32Array ? arr.data : Float32Array.from(arr.data as Float64Array);
  const [h, w, c] = v.layout === "nchw" ? [arr.shape[2], arr.shape[3], arr.shape[1]] : arr.shape.slice(1);
  const x = v.layout === "nchw" ? nchwToNhwc(data, n, c, h, w) : data;

  const list = (flag: string, raw: string, integer: boolean): number[] => {
    const xs = raw.split(",").map((s) => Number(s.trim()));
    if (xs.some((s) => !Number.isFinite(s) || (integer ? !Number.isInteger(s) || s < 0 : s <= 0))) {
      throw new Error(
        `--${flag} takes ${integer ? "integers >= 0" : "numbers > 0"}, comma-separated, got "${raw}"`,
      );
    }
    if (xs.length !== 1 && xs.length !== n) {
      throw new Error(`--${flag} gives ${xs.length} values for ${n} images: give one, or one per image`);
    }
    return xs.length === 1 ? new Array(n).fill(xs[0]) : xs;
  };
  const sigmas = list("sigma", v.sigma!, false);
  const classes = v.class !== undefined ? list("class", v.class, true) : undefined;

  await initBackend({ backend: v.backend as never });
  const log = new Logger();
  const path = await latestCheckpoint(v.run!);
  const { model, params } = await loadForSampling(path, v.weights);
  const [mh, mw, mc] = model.network.sampleShape;
  if (h !== mh || w !== mw || c !== mc) {
    throw new Error(
      `${v.input} [${name}] holds ${h}×${w}×${c} images (--layout ${v.layout}), the model takes ${mh}×${mw}×${mc}`,
    );
  }
  if (classes && model.network.labelDim === 0) throw new Error("--class: the model is unconditional");
  if (!classes && model.network.labelDim > 0) {
    throw new Error(`the model is class-conditional (${model.network.labelDim} classes): pass --class C`);
  }
  for (const k of classes ?? []) {
    if (k >= model.network.labelDim) {
      throw new Error(`--class ${k}: the model has ${model.network.labelDim} classes`);
    }
  }
  log.info(`f_θ(x, σ) of ${n} image(s) from ${v.input} [${name}] with ${path}`);
  const y = await denoiseImages(model, params, x, n, sigmas, classes, batch);
  const out = v.layout === "nchw" ? nhwcToNchw(y, n, h, w, c) : y;
  await writeNpz(v.out!, { arr_0: { data: out, shape: arr.shape } });
  console.log(`wrote ${v.out} (arr_0: float32 [${arr.shape}], ${v.layout})`);
}, { stoppable: true });
