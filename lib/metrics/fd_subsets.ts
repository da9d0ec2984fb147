// Fréchet distances of random subsets, from feature rows computed once: the spread of a distance over repeated
// draws, its bias at finite n, and the extrapolation to n → ∞ (FD_∞, from a fit against 1/n).
import * as tf from "@tensorflow/tfjs";
import { epochPermutation } from "../data/dataset.ts";
import type { FeatureNetwork, ImageSource } from "./evaluate.ts";
import { FeatureStats, frechetDistance } from "./fid.ts";

/** Features [count, dim] of every image of a source (the same batches and uint8 quantization as computeFeatures). */
export async function featureMatrix(
  net: FeatureNetwork,
  source: ImageSource,
  batch = 500,
  onProgress?: (done: number, total: number) => void,
): Promise<Float32Array> {
  const out = new Float32Array(source.count * net.dim);
  let done = 0;
  for await (const { x, shape } of source.batches(batch)) {
    const images = tf.tensor4d(x, shape);
    const r = net.features(images);
    out.set((await r.features.data()) as Float32Array, done * net.dim);
    tf.dispose([images, r.features, r.logits]);
    done += shape[0];
    onProgress?.(done, source.count);
  }
  return out;
}

/** n distinct indices of 0 … size − 1, uniformly at random: the first n of a permutation seeded by `seed`. */
export function randomSubset(size: number, n: number, seed: number): Uint32Array {
  if (!(Number.isInteger(n) && n >= 1 && n <= size)) throw new Error(`cannot draw ${n} of ${size}`);
  return epochPermutation(size, seed, 0).slice(0, n);
}

function statsOf(features: Float32Array, rows: ArrayLike<number>, dim: number): FeatureStats {
  const picked = new Float32Array(rows.length * dim);
  for (let r = 0; r < rows.length; r++) {
    picked.set(features.subarray(rows[r] * dim, (rows[r] + 1) * dim), r * dim);
  }
  const s = new FeatureStats(dim);
  s.add(picked, rows.length, dim);
  return s;
}

/** The Fréchet distance between rows `rowsA` of feature matrix `a` and rows `rowsB` of `b` ([N, dim] each). */
export function frechetOfRows(
  a: Float32Array,
  rowsA: ArrayLike<number>,
  b: Float32Array,
  rowsB: ArrayLike<number>,
  dim: number,
): number {
  const [sa, sb] = [statsOf(a, rowsA, dim), statsOf(b, rowsB, dim)];
  return frechetDistance(sa.mean(), sa.covariance(), sb.mean(), sb.covariance(), dim);
}

export interface DrawSpread {
  n: number;
  values: number[];
  mean: number;
  std: number;
}

/**
 * The distance between n random rows of `a` and n random rows of `b`, over `draws` independent draws. With
 * `disjoint` (a and b the same matrix) the two subsets of a draw share no row.
 */
export function fdOverDraws(
  a: Float32Array,
  b: Float32Array,
  dim: number,
  n: number,
  draws: number,
  seed: number,
  disjoint = false,
): DrawSpread {
  const [sizeA, sizeB] = [a.length / dim, b.length / dim];
  const values: number[] = [];
  for (let d = 0; d < draws; d++) {
    if (disjoint) {
      const rows = randomSubset(sizeA, 2 * n, seed + 1000 * d);
      values.push(frechetOfRows(a, rows.subarray(0, n), b, rows.subarray(n), dim));
    } else {
      values.push(
        frechetOfRows(
          a,
          randomSubset(sizeA, n, seed + 1000 * d),
          b,
          randomSubset(sizeB, n, seed + 1000 * d + 1),
          dim,
        ),
      );
    }
  }
  const mean = values.reduce((u, v) => u + v, 0) / draws;
  const std = draws > 1 ? Math.sqrt(values.reduce((u, v) => u + (v - mean) ** 2, 0) / (draws - 1)) : 0;
  return { n, values, mean, std };
}

/**
 * Least squares of FD(n) = FD_∞ + k/n over the points (n, FD): the distance extrapolated to infinitely many
 * samples (the bias of the finite-sample estimate is, to first order, proportional to 1/n).
 */
export function extrapolateInfinity(ns: number[], fds: number[]): { fdInf: number; slope: number } {
  if (ns.length !== fds.length || ns.length < 2) throw new Error("extrapolateInfinity needs >= 2 points");
  const xs = ns.map((n) => 1 / n);
  const mx = xs.reduce((u, v) => u + v, 0) / xs.length;
  const my = fds.reduce((u, v) => u + v, 0) / fds.length;
  let sxy = 0;
  let sxx = 0;
  xs.forEach((x, i) => {
    sxy += (x - mx) * (fds[i] - my);
    sxx += (x - mx) ** 2;
  });
  const slope = sxy / sxx;
  return { fdInf: my - slope * mx, slope };
}
