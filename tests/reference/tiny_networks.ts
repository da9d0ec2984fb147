// Tiny NCSN++ and ADM for cross-checks: the PyTorch reference (networks_reference.py), cpu vs wasm, and the
// fixture inputs. Every parameter is replaced by a random value (zero-initialized layers included), so each
// path of the network contributes to the output.
import * as tf from "@tensorflow/tfjs";
import type { AdmConfig } from "../../lib/models/adm.ts";
import { ADM_IMAGENET64, buildNetwork, NCSNPP_CIFAR10, type Network } from "../../lib/models/index.ts";
import type { NcsnppConfig } from "../../lib/models/ncsnpp.ts";
import { oneHotLabels } from "../../lib/models/network.ts";
import { numel } from "../../lib/nn/params.ts";
import { Rng } from "../../lib/rng.ts";

export const TINY_NCSNPP: NcsnppConfig = {
  ...NCSNPP_CIFAR10,
  resolution: 16,
  modelChannels: 8,
  channelMult: [1, 2],
  numBlocks: 1,
  attnResolutions: [8],
  fourierScale: 1,
  dropout: 0.3,
};

export const TINY_ADM: AdmConfig = {
  ...ADM_IMAGENET64,
  resolution: 16,
  labelDim: 10,
  modelChannels: 8,
  channelMult: [1, 2],
  numBlocks: 1,
  attnResolutions: [8],
  channelsPerHead: 4,
  dropoutMaxResolution: 8,
};

export interface TinyCase {
  name: "ncsnpp" | "adm";
  network: Network;
  /** Host values of every parameter. */
  values: Map<string, Float32Array>;
  x: Float32Array;
  cNoise: Float32Array;
  /** Class indices (ADM only). */
  classes?: number[];
  batch: number;
}

function randn(n: number, rng: Rng, std: number): Float32Array {
  return Float32Array.from({ length: n }, () => rng.normal() * std);
}

/** The two tiny networks with random parameters and inputs (deterministic). */
export function tinyCases(): TinyCase[] {
  const rng = Rng.seeded(20231023);
  const make = (name: TinyCase["name"], network: Network, cNoise: number[], classes?: number[]): TinyCase => {
    const values = new Map<string, Float32Array>();
    for (const s of network.specs) {
      const n = numel(s.shape);
      // Scale ~ 1/√fan_in for weights so activations stay O(1); norms' scales around 1.
      const fanIn = s.shape.length > 1 ? numel(s.shape.slice(0, -1)) : 1;
      const v = randn(n, rng, s.trainable ? 1 / Math.sqrt(fanIn) : 1);
      if (/norm\d?\.weight$/.test(s.name)) {
        for (let i = 0; i < n; i++) v[i] += 1;
      }
      values.set(s.name, v);
    }
    const batch = cNoise.length;
    const x = randn(batch * numel(network.sampleShape), rng, 1);
    return { name, network, values, x, cNoise: Float32Array.from(cNoise), classes, batch };
  };
  return [
    make("ncsnpp", buildNetwork(TINY_NCSNPP), [-1.2, 0.7]),
    make("adm", buildNetwork(TINY_ADM), [-300, 150], [3, 7]),
  ];
}

/** The tensors of a case: parameters (plain tensors), x, cNoise, labels. */
export function caseTensors(c: TinyCase) {
  return {
    params: new Map(
      [...c.values].map(([k, v]) => [k, tf.tensor(v, c.network.specs.find((s) => s.name === k)!.shape)]),
    ),
    x: tf.tensor(c.x, [c.batch, ...c.network.sampleShape]),
    cNoise: tf.tensor1d(c.cNoise),
    labels: c.classes ? oneHotLabels(c.classes, c.network.labelDim) : undefined,
  };
}

/**
 * A case's output and the gradient of Σ output·R with respect to every parameter, computed on `backend`
 * (switched to with tf.setBackend): what the backend cross-checks and `deno task gpu:check` compare.
 */
export async function outputsAndGrads(backend: string, c: TinyCase, training: boolean) {
  if (!(await tf.setBackend(backend))) throw new Error(`could not switch to the ${backend} backend`);
  const { params, x, cNoise, labels } = caseTensors(c);
  const names = [...params.keys()];
  const ctx = training ? { training: true, dropoutSeed: 77 } : { training: false };
  const r = tf.randomNormal(x.shape, 0, 1, "float32", 5);
  const f = (...ts: tf.Tensor[]) =>
    tf.sum(tf.mul(c.network.apply(new Map(names.map((k, i) => [k, ts[i]])), x, cNoise, ctx, labels), r));
  const out = await c.network.apply(params, x, cNoise, ctx, labels).data();
  const grads = tf.grads(f)(names.map((k) => params.get(k)!));
  const g = new Map<string, Float32Array>();
  for (let i = 0; i < names.length; i++) g.set(names[i], (await grads[i].data()) as Float32Array);
  tf.dispose([...params.values(), x, cNoise, r, ...grads]);
  if (labels) labels.dispose();
  return { out: out as Float32Array, grads: g };
}
