// 2-D toy distributions for CPU demos. Each is drawn in its classic coordinates, then shifted to mean 0 and
// scaled by one factor (shapes are not distorted) so that √(mean of Var x, Var y) = TOY_STD = σ_data = 0.5 (each
// axis exactly 0.5 for the symmetric 8gaussians and checkerboard): the scale of images in [−1, 1], so the
// presets' σ_data and c_skip/c_out fit toy data too.
// The moments used are exact (closed form, or a fine quadrature for the swiss roll), not sample estimates.
//   8gaussians    8 modes at angles 2πk/8 on a circle of radius 2, std 0.1 each (so ×0.5/√2.01 ≈ 0.353)
//   checkerboard  uniform on the 8 dark squares of a 4×4 board on [−2, 2]²
//   swissroll     (t cos t, t sin t), t ~ U[1.5π, 4.5π], plus N(0, 0.5²) noise
//   moons         sklearn's two interleaved half circles, plus N(0, 0.1²) noise
import { SIGMA_DATA } from "../parameterization.ts";
import type { GaussianMixture } from "../pf_ode.ts";
import { Rng } from "../rng.ts";
import { checkIndices, type Dataset } from "./dataset.ts";

export const TOY_STD = SIGMA_DATA;
export const TOY_KINDS = ["8gaussians", "checkerboard", "swissroll", "moons"] as const;
export type ToyKind = typeof TOY_KINDS[number];

interface ToySpec {
  /** One point in the classic coordinates. */
  draw(rng: Rng): [number, number];
  /** The exact mean, and the per-coordinate variance averaged over x and y. */
  mean: [number, number];
  variance: number;
}

const RADIUS = 2;
const MODE_STD = 0.1;
const SWISS = { from: 1.5 * Math.PI, to: 4.5 * Math.PI, noise: 0.5 };
const MOONS_NOISE = 0.1;

/** Mean and averaged variance of (t cos t, t sin t), t ~ U[from, to], by the midpoint rule. */
function swissMoments(): { mean: [number, number]; variance: number } {
  const n = 200_000;
  let [sx, sy, sxx, syy] = [0, 0, 0, 0];
  for (let i = 0; i < n; i++) {
    const t = SWISS.from + ((SWISS.to - SWISS.from) * (i + 0.5)) / n;
    const [x, y] = [t * Math.cos(t), t * Math.sin(t)];
    [sx, sy, sxx, syy] = [sx + x, sy + y, sxx + x * x, syy + y * y];
  }
  const [mx, my] = [sx / n, sy / n];
  return { mean: [mx, my], variance: (sxx / n - mx * mx + syy / n - my * my) / 2 + SWISS.noise ** 2 };
}

const KINDS: Record<ToyKind, ToySpec> = {
  "8gaussians": {
    draw(rng) {
      const a = (2 * Math.PI * rng.int(0, 7)) / 8;
      return [RADIUS * Math.cos(a) + MODE_STD * rng.normal(), RADIUS * Math.sin(a) + MODE_STD * rng.normal()];
    },
    mean: [0, 0],
    variance: RADIUS ** 2 / 2 + MODE_STD ** 2, // cos² over 8 equally spaced angles averages 1/2
  },
  checkerboard: {
    draw(rng) {
      const x = 4 * rng.uniform() - 2;
      const y = rng.uniform() - 2 * rng.int(0, 1) + (((Math.floor(x) % 2) + 2) % 2);
      return [x, y];
    },
    mean: [0, 0],
    variance: 16 / 12, // each coordinate is uniform on [−2, 2]
  },
  swissroll: {
    draw(rng) {
      const t = SWISS.from + (SWISS.to - SWISS.from) * rng.uniform();
      return [t * Math.cos(t) + SWISS.noise * rng.normal(), t * Math.sin(t) + SWISS.noise * rng.normal()];
    },
    ...swissMoments(),
  },
  moons: {
    draw(rng) {
      const t = Math.PI * rng.uniform();
      const [x, y] = rng.uniform() < 0.5 ? [Math.cos(t), Math.sin(t)] : [1 - Math.cos(t), 0.5 - Math.sin(t)];
      return [x + MOONS_NOISE * rng.normal(), y + MOONS_NOISE * rng.normal()];
    },
    // E[x] = ½·0 + ½·1, E[y] = ½·2/π + ½(½ − 2/π); Var x = 1 − ¼, Var y = 5/8 − 1/π − 1/16.
    mean: [0.5, 0.25],
    variance: (0.75 + 0.5625 - 1 / Math.PI) / 2 + MOONS_NOISE ** 2,
  },
};

function specOf(kind: string): ToySpec {
  if (!(TOY_KINDS as readonly string[]).includes(kind)) {
    throw new Error(`unknown toy distribution "${kind}": use one of ${TOY_KINDS.join(", ")}`);
  }
  return KINDS[kind as ToyKind];
}

/** n standardized points [n, 2] of `kind`, drawn from `rng`. */
export function sampleToy(kind: string, n: number, rng: Rng): Float32Array {
  const spec = specOf(kind);
  const scale = TOY_STD / Math.sqrt(spec.variance);
  const out = new Float32Array(2 * n);
  for (let i = 0; i < n; i++) {
    const [x, y] = spec.draw(rng);
    out[2 * i] = (x - spec.mean[0]) * scale;
    out[2 * i + 1] = (y - spec.mean[1]) * scale;
  }
  return out;
}

/** The standardized 8gaussians as a mixture, for the exact PF ODE of pf_ode.ts. */
export function eightGaussiansMixture(): GaussianMixture {
  const scale = TOY_STD / Math.sqrt(KINDS["8gaussians"].variance);
  const angles = Array.from({ length: 8 }, (_, k) => (2 * Math.PI * k) / 8);
  return {
    dim: 2,
    means: angles.map((a) => [scale * RADIUS * Math.cos(a), scale * RADIUS * Math.sin(a)]),
    stds: angles.map(() => scale * MODE_STD),
    weights: angles.map(() => 1 / 8),
  };
}

/** A fixed set of `size` points of `kind` drawn with `seed` (held-out sets: another seed). */
export function toyDataset(kind: string, size: number, seed: number): Dataset {
  if (!Number.isInteger(size) || size < 1) {
    throw new Error(`toy dataset size must be an integer >= 1, got ${size}`);
  }
  const points = sampleToy(kind, size, Rng.seeded(seed));
  const name = `toy2d-${kind}`;
  return {
    name,
    sampleShape: [2],
    size,
    labelDim: 0,
    get(indices) {
      checkIndices(indices, size, name);
      const x = new Float32Array(2 * indices.length);
      for (let k = 0; k < indices.length; k++) {
        x.set(points.subarray(2 * indices[k], 2 * indices[k] + 2), 2 * k);
      }
      return { x };
    },
  };
}
