// What every dataset is to the trainers (random access to samples), and the loader that turns one into an
// endless stream of shuffled, optionally flipped batches whose position can be saved and restored exactly.
// Also the few helpers the dataset files share: uint8 planes → NHWC floats, atomic file writes.
import * as tf from "@tensorflow/tfjs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { oneHotLabels } from "../models/network.ts";
import { Rng, type RngState } from "../rng.ts";

export interface Dataset {
  readonly name: string;
  /** [H, W, C] for images, [2] for toy points. */
  readonly sampleShape: readonly number[];
  readonly size: number;
  /** Number of classes if class-conditional data is offered, else 0. */
  readonly labelDim: number;
  /** Samples at `indices`, as one Float32Array [indices.length, ...sampleShape] (images NHWC in [-1,1]); class ids (0-based) when labelDim > 0. */
  get(indices: ArrayLike<number>): { x: Float32Array; labels?: Int32Array };
}

/** Samples offset … offset+count−1 of a batch: one data-parallel rank's share. */
export interface Shard {
  offset: number;
  count: number;
}

/** Where the loader is: restoring it continues with exactly the same batches. Plain JSON. */
export interface LoaderState {
  epoch: number;
  cursor: number;
  rng: RngState;
}

export interface LoaderOptions {
  seed: number;
  /** Random horizontal flips, probability 1/2 per sample (images only). */
  flip?: boolean;
  /** Return one-hot labels (the dataset must have labelDim > 0). */
  labels?: boolean;
  state?: LoaderState;
}

/** A 32-bit seed from (seed, epoch): a murmur3-style finalizer over both. */
function mixSeed(seed: number, epoch: number): number {
  let h = Math.imul((seed | 0) ^ 0x5bd1e995, 0x9e3779b1);
  h = Math.imul(h ^ (h >>> 15) ^ (epoch | 0), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) | 0;
}

/** The visiting order of one epoch: Fisher–Yates driven by Rng.seeded(mix(seed, epoch)). */
export function epochPermutation(size: number, seed: number, epoch: number): Uint32Array {
  const perm = new Uint32Array(size);
  for (let i = 0; i < size; i++) perm[i] = i;
  const rng = Rng.seeded(mixSeed(seed, epoch));
  for (let i = size - 1; i > 0; i--) {
    const j = rng.int(0, i);
    const t = perm[i];
    perm[i] = perm[j];
    perm[j] = t;
  }
  return perm;
}

/** Reverse the W axis of sample k of an NHWC batch, in place. */
function flipSample(x: Float32Array, k: number, [h, w, c]: readonly number[]): void {
  const base = k * h * w * c;
  for (let y = 0; y < h; y++) {
    const row = base + y * w * c;
    for (let a = 0, b = w - 1; a < b; a++, b--) {
      for (let ch = 0; ch < c; ch++) {
        const t = x[row + a * c + ch];
        x[row + a * c + ch] = x[row + b * c + ch];
        x[row + b * c + ch] = t;
      }
    }
  }
}

/**
 * Endless batches over a dataset. Each epoch visits every sample once, in an order that depends only on
 * (seed, epoch); a batch may span an epoch boundary. Flips are drawn from an Rng whose state is saved.
 */
export class DataLoader {
  private epoch = 0;
  private cursor = 0;
  private rng: Rng;
  private perm: Uint32Array;
  private readonly seed: number;
  private readonly flip: boolean;
  private readonly labels: boolean;

  constructor(readonly dataset: Dataset, readonly batchSize: number, opts: LoaderOptions) {
    const { seed, flip = false, labels = false, state } = opts;
    if (!Number.isInteger(batchSize) || batchSize < 1) {
      throw new Error(`batch size must be an integer >= 1, got ${batchSize}`);
    }
    if (!Number.isInteger(seed)) throw new Error(`loader seed must be an integer, got ${seed}`);
    if (dataset.size < 1) throw new Error(`dataset ${dataset.name} is empty`);
    if (flip && dataset.sampleShape.length !== 3) {
      throw new Error(
        `flip applies to images [H, W, C]; ${dataset.name} has samples [${dataset.sampleShape}]`,
      );
    }
    if (labels && dataset.labelDim < 1) throw new Error(`dataset ${dataset.name} has no class labels`);
    this.seed = seed;
    this.flip = flip;
    this.labels = labels;
    this.rng = Rng.seeded(mixSeed(seed, -1)); // epoch −1: a stream no permutation uses
    if (state) {
      if (!Number.isInteger(state.epoch) || state.epoch < 0) {
        throw new Error(`loader state: bad epoch ${state.epoch}`);
      }
      if (!Number.isInteger(state.cursor) || state.cursor < 0 || state.cursor > dataset.size) {
        throw new Error(
          `loader state: cursor ${state.cursor} is outside 0..${dataset.size} (another dataset?)`,
        );
      }
      this.epoch = state.epoch;
      this.cursor = state.cursor;
      this.rng = Rng.fromState(state.rng);
    }
    this.perm = epochPermutation(dataset.size, seed, this.epoch);
  }

  /**
   * The next batch on the host: samples (flipped where drawn), their dataset indices, class ids. With `shard`,
   * only samples offset … offset+count−1 of the batch are read (a data-parallel rank's share); the loader's
   * position and flip draws advance for the whole batch, so every rank stays in step.
   */
  nextHost(shard?: Shard): { x: Float32Array; indices: Uint32Array; labels?: Int32Array } {
    const n = this.dataset.size;
    const indices = new Uint32Array(this.batchSize);
    for (let filled = 0; filled < this.batchSize;) {
      if (this.cursor === n) {
        this.epoch++;
        this.cursor = 0;
        this.perm = epochPermutation(n, this.seed, this.epoch);
      }
      const take = Math.min(this.batchSize - filled, n - this.cursor);
      indices.set(this.perm.subarray(this.cursor, this.cursor + take), filled);
      filled += take;
      this.cursor += take;
    }
    const { offset, count } = shard ?? { offset: 0, count: this.batchSize };
    if (!(offset >= 0 && count >= 1 && offset + count <= this.batchSize)) {
      throw new Error(`shard ${offset}+${count} is outside the batch of ${this.batchSize}`);
    }
    const mine = indices.subarray(offset, offset + count);
    const { x, labels } = this.dataset.get(mine);
    if (this.flip) {
      for (let k = 0; k < this.batchSize; k++) {
        const flip = this.rng.uniform() < 0.5; // drawn for every sample of the batch, on every rank
        if (flip && k >= offset && k < offset + count) flipSample(x, k - offset, this.dataset.sampleShape);
      }
    }
    return { x, indices: mine, labels: this.labels ? labels : undefined };
  }

  /** The next batch (or its `shard`) as tensors: x [B, …sampleShape] float32, labels one-hot [B, labelDim]. */
  next(shard?: Shard): { x: tf.Tensor; labels?: tf.Tensor2D } {
    const { x, labels } = this.nextHost(shard);
    const xt = tf.tensor(x, [shard?.count ?? this.batchSize, ...this.dataset.sampleShape], "float32");
    if (!this.labels) return { x: xt };
    return { x: xt, labels: oneHotLabels(labels!, this.dataset.labelDim) };
  }

  state(): LoaderState {
    return { epoch: this.epoch, cursor: this.cursor, rng: this.rng.state() };
  }
}

// ---------------------------------------------------------------------------------------------------------
// Helpers shared by the dataset files.

/** The repo's data/ folder (datasets and caches; git-ignored). */
export const DATA_ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "data");

/** Throws unless every index is an integer in 0..size−1. */
export function checkIndices(indices: ArrayLike<number>, size: number, name: string): void {
  for (let k = 0; k < indices.length; k++) {
    const i = indices[k];
    if (!Number.isInteger(i) || i < 0 || i >= size) {
      throw new Error(`${name}: index ${i} is outside 0..${size - 1}`);
    }
  }
}

/**
 * One uint8 image stored as channel planes (all of R, then G, then B; rows top to bottom) at src[offset…],
 * written as NHWC floats in [−1, 1] (v/127.5 − 1) to out[outOffset…].
 */
export function planarToNhwc(
  src: Uint8Array,
  offset: number,
  out: Float32Array,
  outOffset: number,
  [h, w, c]: readonly number[],
): void {
  const plane = h * w;
  for (let ch = 0; ch < c; ch++) {
    const from = offset + ch * plane;
    for (let p = 0; p < plane; p++) out[outOffset + p * c + ch] = src[from + p] / 127.5 - 1;
  }
}

/** `count` uint8 images held in memory, image i at bytes[offset + i·stride …] as planes; class ids 0-based. */
export class PlanarU8Images implements Dataset {
  readonly size: number;
  private readonly imageBytes: number;

  constructor(
    readonly name: string,
    readonly sampleShape: readonly [number, number, number],
    private readonly bytes: Uint8Array,
    private readonly labels: Int32Array | undefined,
    readonly labelDim: number,
    private readonly layout: { offset: number; stride: number; count: number },
  ) {
    this.imageBytes = sampleShape[0] * sampleShape[1] * sampleShape[2];
    this.size = layout.count;
    if (layout.offset + (this.size - 1) * layout.stride + this.imageBytes > bytes.length) {
      throw new Error(`${name}: ${bytes.length} bytes cannot hold ${this.size} images`);
    }
    if (labels && labels.length !== this.size) {
      throw new Error(`${name}: ${this.size} images but ${labels.length} labels`);
    }
  }

  get(indices: ArrayLike<number>): { x: Float32Array; labels?: Int32Array } {
    checkIndices(indices, this.size, this.name);
    const n = indices.length;
    const x = new Float32Array(n * this.imageBytes);
    for (let k = 0; k < n; k++) {
      const at = this.layout.offset + indices[k] * this.layout.stride;
      planarToNhwc(this.bytes, at, x, k * this.imageBytes, this.sampleShape);
    }
    if (!this.labels) return { x };
    const labels = new Int32Array(n);
    for (let k = 0; k < n; k++) labels[k] = this.labels[indices[k]];
    return { x, labels };
  }
}
