// FID end to end: the Inception network with its weights (real, or a clearly labelled stand-in), image sources
// (sample .npz files, folders of PNGs, datasets), and streaming pool_3 statistics + logits over batches.
import * as tf from "@tensorflow/tfjs";
import { createHash } from "node:crypto";
import { readSafetensors } from "../checkpoint.ts";
import { loadDataset } from "../data/index.ts";
import type { DataConfig } from "../data/index.ts";
import { readNpz } from "../data/npz.ts";
import { readPng } from "../images.ts";
import { FeatureStats } from "./fid.ts";
import { FidInception, LOGITS_DIM, POOL3_DIM, syntheticInceptionStateDict } from "./inception.ts";
import { inceptionWeightsPath } from "./inception_weights.ts";

export type WeightsKind = "real" | "standin";

export interface LoadedInception {
  net: FidInception;
  /** What the numbers were computed with: "pt_inception-2015-12-05 sha256:…" or the stand-in's label. */
  weights: string;
  kind: WeightsKind;
}

/** Printed with every number computed with the stand-in weights. */
export const STANDIN_LABEL = "STAND-IN synthetic Inception weights (a formula, not the FID network): " +
  "numbers are NOT FIDs; get the real weights with `deno task data:inception`";

/** The FID Inception with the real 2015-12-05 weights (from `deno task data:inception`) or the stand-in. */
export async function loadInception(kind: WeightsKind, dir?: string): Promise<LoadedInception> {
  if (kind === "standin") {
    return { net: FidInception.fromStateDict(syntheticInceptionStateDict()), weights: STANDIN_LABEL, kind };
  }
  const path = inceptionWeightsPath(dir);
  const { tensors, metadata } = await readSafetensors(path);
  const state = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const [name, t] of tensors) {
    if (t.dtype === "F32") state.set(name, { shape: t.shape, data: t.data as Float32Array });
  }
  const sha = metadata["ict_kit.source_sha256"] ?? "unknown";
  return { net: FidInception.fromStateDict(state), weights: `pt_inception-2015-12-05 sha256:${sha}`, kind };
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

/** A dataset split (images in [−1, 1] → their exact uint8 values). */
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
        yield { x: x.map((v) => Math.round((v + 1) * 127.5)), shape: [b, h, w, c] };
      }
    },
  };
}

export interface FeatureResult {
  stats: FeatureStats;
  /** Logits [count, 1008] when asked for (Inception Score). */
  logits?: Float32Array;
  count: number;
  seconds: number;
}

/** pool_3 statistics (and optionally logits) of every image of a source, `batch` at a time. */
export async function computeFeatures(
  net: FidInception,
  source: ImageSource,
  opts: { batch: number; logits?: boolean; onProgress?: (done: number, total: number) => void },
): Promise<FeatureResult> {
  const stats = new FeatureStats(POOL3_DIM);
  const logits = opts.logits ? new Float32Array(source.count * LOGITS_DIM) : undefined;
  const started = performance.now();
  let done = 0;
  for await (const { x, shape } of source.batches(opts.batch)) {
    const images = tf.tidy(() => {
      const t = tf.tensor4d(x, shape);
      return shape[3] === 1 ? tf.tile(t, [1, 1, 1, 3]) : t; // grayscale → RGB, as evaluators do
    });
    const out = net.features(images as tf.Tensor4D);
    images.dispose();
    stats.add((await out.pool3.data()) as Float32Array, shape[0], POOL3_DIM);
    if (logits) logits.set((await out.logits.data()) as Float32Array, done * LOGITS_DIM);
    out.pool3.dispose();
    out.logits.dispose();
    done += shape[0];
    opts.onProgress?.(done, source.count);
  }
  return { stats, logits, count: done, seconds: (performance.now() - started) / 1000 };
}

/** A short stable id of the weights, for cache file names. */
export function weightsId(weights: string): string {
  return createHash("sha256").update(weights).digest("hex").slice(0, 8);
}
