// The 2-D fixtures the training tests share: a small MLP, a training config for it, and a fixed set of points
// to train it on.
import type { Dataset } from "../lib/data/dataset.ts";
import type { MlpConfig } from "../lib/models/mlp.ts";
import { preset, type TrainConfig } from "../lib/train/config.ts";
import { Rng } from "../lib/rng.ts";

export const TOY_MLP: MlpConfig = {
  family: "mlp",
  dim: 2,
  hidden: 16,
  depth: 2,
  noiseChannels: 8,
  fourierScale: 0.02,
  dropout: 0,
};

/** `size` 2-D points ~ N(0, 0.5²) from `seed`; `edit` may change a sample's values (NaN, huge) by index. */
export function toyPoints(
  size: number,
  seed: number,
  edit: (i: number, v: Float32Array) => void = () => {},
): Dataset {
  const rng = Rng.seeded(seed);
  const data = Float32Array.from({ length: size * 2 }, () => rng.normal() * 0.5);
  for (let i = 0; i < size; i++) edit(i, data.subarray(i * 2, i * 2 + 2));
  return {
    name: "points",
    sampleShape: [2],
    size,
    labelDim: 0,
    get(indices) {
      const x = new Float32Array(indices.length * 2);
      Array.from(indices).forEach((i, k) => x.set(data.subarray(i * 2, i * 2 + 2), k * 2));
      return { x };
    },
  };
}

/** toy2d's preset on TOY_MLP with every loop value set for tests (checkpoints every 5 steps, 2 kept). */
export function toyTrainConfig(extra: Partial<TrainConfig> = {}): TrainConfig {
  return {
    ...preset("toy2d"),
    model: { ...TOY_MLP },
    totalIters: 400,
    batch: 8,
    optimizer: { ...preset("toy2d").optimizer, lr: 1e-3 },
    emaDecay: 0.9,
    checkpointEvery: 5,
    keepCheckpoints: 2,
    sampleEvery: 0,
    logEvery: 1,
    ...extra,
  };
}
