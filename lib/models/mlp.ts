// A small MLP for 2-D (or any low-dimensional) toy data, behind the same interface as the U-Nets:
// Fourier features of c_noise → embedding; h = SiLU(in(x) + emb); `depth` hidden layers with dropout; out.
import * as tf from "@tensorflow/tfjs";
import { fourierFeatures } from "../embeddings.ts";
import { Dense, Dropout, type InitMode, silu } from "../nn/layers.ts";
import { type ForwardContext, get, type Params, Scope } from "../nn/params.ts";
import { checkInputs, type Network } from "./network.ts";

export interface MlpConfig {
  family: "mlp";
  /** Dimension of one sample. */
  dim: number;
  hidden: number;
  /** Hidden layers after the input layer. */
  depth: number;
  /** Fourier features of c_noise (half sines, half cosines). */
  noiseChannels: number;
  fourierScale: number;
  dropout: number;
}

const XAVIER: InitMode = { mode: "xavier_uniform", weight: 1, bias: 0 };
const XAVIER_ZERO: InitMode = { mode: "xavier_uniform", weight: 1e-5, bias: 0 };

export class Mlp implements Network {
  readonly sampleShape: readonly number[];
  readonly embedding = "fourier" as const;
  readonly labelDim = 0;
  readonly specs;
  readonly cost;
  private readonly freqs: string;
  private readonly mapNoise: Dense;
  private readonly input: Dense;
  private readonly layers: { dense: Dense; dropout: Dropout }[] = [];
  private readonly output: Dense;

  constructor(readonly config: MlpConfig) {
    const c = config;
    const scope = Scope.root();
    this.sampleShape = [c.dim];
    this.freqs = scope.child("map_noise").param("freqs", [c.noiseChannels / 2], {
      kind: "normal",
      std: c.fourierScale,
    }, false);
    this.mapNoise = new Dense(scope.child("map_layer0"), c.noiseChannels, c.hidden, XAVIER);
    this.input = new Dense(scope.child("input"), c.dim, c.hidden, XAVIER);
    for (let i = 0; i < c.depth; i++) {
      this.layers.push({
        dense: new Dense(scope.child(`layer${i}`), c.hidden, c.hidden, XAVIER),
        dropout: new Dropout(scope, c.dropout),
      });
    }
    this.output = new Dense(scope.child("output"), c.hidden, c.dim, XAVIER_ZERO);
    this.specs = scope.specs;
    this.cost = scope.cost;
  }

  apply(p: Params, x: tf.Tensor, cNoise: tf.Tensor1D, ctx: ForwardContext): tf.Tensor2D {
    checkInputs(this, x, cNoise);
    return tf.tidy(() => {
      const emb = this.mapNoise.apply(p, fourierFeatures(cNoise, get(p, this.freqs) as tf.Tensor1D));
      let h = silu(tf.add(this.input.apply(p, x as tf.Tensor2D), emb)) as tf.Tensor2D;
      for (const { dense, dropout } of this.layers) {
        h = silu(dense.apply(p, dropout.apply(h, ctx) as tf.Tensor2D)) as tf.Tensor2D;
      }
      return this.output.apply(p, h);
    });
  }
}
