// Fréchet distances end to end: the feature network (the FID Inception with real or clearly labelled stand-in
// weights, or the MNIST-FD classifier), image sources (sample .npz files, folders of PNGs, datasets, arrays),
// and streaming feature statistics + logits over batches.
import * as tf from "@tensorflow/tfjs";
import { createHash } from "node:crypto";
import { readSafetensors } from "../io/checkpoint.ts";
import { checkStop } from "../cli.ts";
import { loadDataset } from "../data/index.ts";
import type { DataConfig } from "../data/index.ts";
import { readNpz } from "../io/npz.ts";
import { quantize, readPng } from "../images.ts";
import { FeatureStats, frechetDistance } from "./fid.ts";
import { FidInception, LOGITS_DIM, POOL3_DIM, syntheticInceptionStateDict } from "./inception.ts";
import { inceptionWeightsPath } from "./inception_weights.ts";
import {
  CLASSIFIER_CLASSES,
  CLASSIFIER_FEATURES,
  type ClassifierDataset,
  loadClassifier,
  PROXY_CAVEAT,
  PROXY_METRIC,
} from "./mnist_classifier.ts";

export type WeightsKind = "real" | "standin";

/** A network whose features give a Fréchet distance: the FID Inception, or a proxy classifier. */
export interface FeatureNetwork {
  /** The distance's name: "FID", "MNIST-FD", … */
  metric: string;
  /** What the numbers were computed with (which weights, their hash): written with every number. */
  weights: string;
  /** Printed with every number that is not a standard FID (stand-in weights, a proxy); absent for FID. */
  caveat?: string;
  /** Feature size (2048 for pool_3). */
  dim: number;
  /** Logit size (1008 for the Inception Score). */
  logitsDim: number;
  /** Features [N, dim] and logits [N, logitsDim] of NHWC images with values in [0, 255]. */
  features(images: tf.Tensor4D): { features: tf.Tensor2D; logits: tf.Tensor2D };
  dispose(): void;
}

/** Printed with every number computed with the stand-in weights. */
export const STANDIN_LABEL = "STAND-IN synthetic Inception weights (a formula, not the FID network): " +
  "numbers are NOT FIDs; get the real weights with `deno task data:inception`";

const STANDIN_CAVEAT =
  "NOT an FID: stand-in Inception weights; get the real ones with `deno task data:inception`";

function inceptionNetwork(net: FidInception, weights: string, caveat?: string): FeatureNetwork {
  return {
    metric: "FID",
    weights,
    caveat,
    dim: POOL3_DIM,
    logitsDim: LOGITS_DIM,
    features(images) {
      // Grayscale → RGB by repeating the channel, as evaluators do.
      const rgb = images.shape[3] === 1 ? tf.tile(images, [1, 1, 1, 3]) as tf.Tensor4D : images;
      const { pool3, logits } = net.features(rgb);
      if (rgb !== images) rgb.dispose();
      return { features: pool3, logits };
    },
    dispose: () => net.dispose(),
  };
}

/** The FID Inception with the real 2015-12-05 weights (from `deno task data:inception`) or the stand-in. */
export async function loadInception(kind: WeightsKind, dir?: string): Promise<FeatureNetwork> {
  if (kind === "standin") {
    return inceptionNetwork(
      FidInception.fromStateDict(syntheticInceptionStateDict()),
      STANDIN_LABEL,
      STANDIN_CAVEAT,
    );
  }
  const path = inceptionWeightsPath(dir);
  const { tensors, metadata } = await readSafetensors(path);
  const state = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const [name, t] of tensors) {
    if (t.dtype === "F32") state.set(name, { shape: t.shape, data: t.data as Float32Array });
  }
  const sha = metadata["ict_kit.source_sha256"] ?? "unknown";
  return inceptionNetwork(FidInception.fromStateDict(state), `pt_inception-2015-12-05 sha256:${sha}`);
}

/** The MNIST-FD (or Fashion-MNIST-FD) classifier that `deno task data:mnist-classifier` trained and cached. */
export async function loadProxy(dataset: ClassifierDataset, path?: string): Promise<FeatureNetwork> {
  const c = await loadClassifier(dataset, path);
  const metric = PROXY_METRIC[dataset];
  return {
    metric,
    weights: `${dataset} classifier sha256:${c.sha256.slice(0, 16)} (test accuracy ${
      (100 * c.info.testAccuracy).toFixed(2)
    }%)`,
    caveat: `${metric} is ${PROXY_CAVEAT}`,
    dim: CLASSIFIER_FEATURES,
    logitsDim: CLASSIFIER_CLASSES,
    features: (images) => c.net.apply(c.params, images),
    dispose: () => c.params.forEach((t) => t.dispose()),
  };
}

/** "FID 12.345" plus the caveat in brackets when the number is not a standard FID. */
export function formatDistance(net: FeatureNetwork, value: number): string {
  return `${net.metric} ${value.toFixed(3)}${net.caveat ? ` [${net.caveat}]` : ""}`;
}

/** Batches of uint8-valued images [b, H, W, C] (C = 1 or 3) as float32 in [0, 255]. */
export interface ImageSource {
  name: string;
  count: number;
  batches(batch: number): AsyncGenerator<{ x: Float32Array; shape: [number, number, number, number] }>;
}

/** An .npz of uint8 images `arr_0` [N, H, W, C] (what `deno task sample` and FID evaluators write). */
export function npzSource(path: string, limit?: number): ImageSource {
  const arrays = readNpz(path);
  const a = arrays.get("arr_0");
  if (!a || a.dtype !== "uint8" || a.shape.length !== 4) {
    throw new Error(
      `${path}: expected "arr_0" uint8 [N, H, W, C] images (found ${
        [...arrays.keys()].join(", ") || "nothing"
      })`,
    );
  }
  const [n, h, w, c] = a.shape;
  const count = Math.min(n, limit ?? n);
  return {
    name: path,
    count,
    async *batches(batch) {
      for (let i = 0; i < count; i += batch) {
        const b = Math.min(batch, count - i);
        const x = Float32Array.from((a.data as Uint8Array).subarray(i * h * w * c, (i + b) * h * w * c));
        yield { x, shape: [b, h, w, c] };
      }
    },
  };
}

/** A folder of single-image PNGs (all the same size), in name order. */
export async function pngFolderSource(dir: string, limit?: number): Promise<ImageSource> {
  const files: string[] = [];
  for await (const e of Deno.readDir(dir)) if (e.isFile && e.name.endsWith(".png")) files.push(e.name);
  files.sort();
  if (!files.length) throw new Error(`${dir} holds no .png images (and no .npz was given)`);
  const count = Math.min(files.length, limit ?? files.length);
  return {
    name: dir,
    count,
    async *batches(batch) {
      for (let i = 0; i < count; i += batch) {
        const imgs = await Promise.all(files.slice(i, i + batch).map((f) => readPng(`${dir}/${f}`)));
        const { width, height, channels } = imgs[0];
        if (imgs.some((m) => m.width !== width || m.height !== height || m.channels !== channels)) {
          throw new Error(`${dir}: images differ in size or channels; FID needs one size`);
        }
        const x = new Float32Array(imgs.length * width * height * channels);
        imgs.forEach((m, k) => x.set(m.data, k * m.data.length));
        yield { x, shape: [imgs.length, height, width, channels] };
      }
    },
  };
}

/** A dataset split (images in [−1, 1] → their exact uint8 values, by the samples' own rounding). */
export async function datasetSource(
  cfg: DataConfig,
  split: "train" | "test",
  limit?: number,
): Promise<ImageSource> {
  const ds = await loadDataset(cfg, split);
  if (ds.sampleShape.length !== 3) throw new Error(`${ds.name} is not an image dataset: FID needs images`);
  const [h, w, c] = ds.sampleShape;
  const count = Math.min(ds.size, limit ?? ds.size);
  return {
    name: `${ds.name}`,
    count,
    async *batches(batch) {
      for (let i = 0; i < count; i += batch) {
        const b = Math.min(batch, count - i);
        const { x } = ds.get(Array.from({ length: b }, (_, k) => i + k));
        yield { x: Float32Array.from(quantize(x)), shape: [b, h, w, c] };
      }
    },
  };
}

/** Images held in memory, NHWC in [−1, 1] (samples, a dataset batch), quantized to uint8 as `deno task sample` saves them. */
export function arraySource(name: string, x: Float32Array, shape: readonly number[]): ImageSource {
  const [h, w, c] = shape;
  const size = h * w * c;
  if (shape.length !== 3 || x.length % size !== 0) {
    throw new Error(`${name}: ${x.length} values are not whole images of [${shape}]`);
  }
  const count = x.length / size;
  return {
    name,
    count,
    async *batches(batch) {
      for (let i = 0; i < count; i += batch) {
        const b = Math.min(batch, count - i);
        yield { x: Float32Array.from(quantize(x.subarray(i * size, (i + b) * size))), shape: [b, h, w, c] };
      }
    },
  };
}

export interface FeatureResult {
  stats: FeatureStats;
  /** Logits [count, logitsDim] when asked for (Inception Score). */
  logits?: Float32Array;
  /** The features themselves [count, dim] when asked for (precision/recall). */
  features?: Float32Array;
  count: number;
  seconds: number;
}

/** Feature statistics (and optionally logits) of every image of a source, `batch` at a time. */
export async function computeFeatures(
  net: FeatureNetwork,
  source: ImageSource,
  opts: {
    batch: number;
    logits?: boolean;
    features?: boolean;
    onProgress?: (done: number, total: number) => void;
  },
): Promise<FeatureResult> {
  const stats = new FeatureStats(net.dim);
  const logits = opts.logits ? new Float32Array(source.count * net.logitsDim) : undefined;
  const features = opts.features ? new Float32Array(source.count * net.dim) : undefined;
  const started = performance.now();
  let done = 0;
  for await (const { x, shape } of source.batches(opts.batch)) {
    const images = tf.tensor4d(x, shape);
    const out = net.features(images);
    images.dispose();
    const f = (await out.features.data()) as Float32Array;
    stats.add(f, shape[0], net.dim);
    if (features) features.set(f, done * net.dim);
    if (logits) logits.set((await out.logits.data()) as Float32Array, done * net.logitsDim);
    tf.dispose([out.features, out.logits]);
    done += shape[0];
    opts.onProgress?.(done, source.count);
    await checkStop("features"); // a signal ends the task here, between batches
  }
  return { stats, logits, features, count: done, seconds: (performance.now() - started) / 1000 };
}

/** The Fréchet distance between the features of two image sources (e.g. samples and held-out data). */
export async function frechetBetween(
  net: FeatureNetwork,
  a: ImageSource,
  b: ImageSource,
  batch = 250,
): Promise<number> {
  const [fa, fb] = [await computeFeatures(net, a, { batch }), await computeFeatures(net, b, { batch })];
  return frechetDistance(
    fa.stats.mean(),
    fa.stats.covariance(),
    fb.stats.mean(),
    fb.stats.covariance(),
    net.dim,
  );
}

/** A short stable id of the weights, for cache file names. */
export function weightsId(weights: string): string {
  return createHash("sha256").update(weights).digest("hex").slice(0, 8);
}
