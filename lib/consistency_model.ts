// A consistency model: f_θ(x, σ) = c_skip(σ)·x + c_out(σ)·F_θ(c_in(σ)·x, c_noise(σ))  (Eq. 2) over any network
// of the kit. With c_skip(σ_min) = 1 and c_out(σ_min) = 0, f_θ(x, σ_min) returns x exactly.
import type * as tf from "@tensorflow/tfjs";
import type { ConsistencyFn } from "./losses.ts";
import { buildNetwork, type ModelConfig, type Network } from "./models/index.ts";
import { EVAL, type ForwardContext, initParams, type Params } from "./nn/params.ts";
import { consistencyFunction, SIGMA_DATA } from "./parameterization.ts";
import { SIGMA_MIN } from "./schedules.ts";
import type { SampleBatch, Sigma, SigmaBatch } from "./types.ts";

export interface ConsistencyModelOptions {
  sigmaMin?: Sigma;
  sigmaData?: number;
}

export class ConsistencyModel {
  readonly sigmaMin: Sigma;
  readonly sigmaData: number;

  constructor(readonly network: Network, opts: ConsistencyModelOptions = {}) {
    this.sigmaMin = opts.sigmaMin ?? SIGMA_MIN;
    this.sigmaData = opts.sigmaData ?? SIGMA_DATA;
  }

  /** A model of a config (the network is built; no tensors are allocated). */
  static fromConfig(config: ModelConfig, opts: ConsistencyModelOptions = {}): ConsistencyModel {
    return new ConsistencyModel(buildNetwork(config), opts);
  }

  /** Freshly initialized parameters (trainable ones are variables). */
  init(seed: number): Map<string, tf.Tensor> {
    return initParams(this.network.specs, seed);
  }

  /**
   * f_θ(x, σ) with parameters `params` (Eq. 2). Pass the same `ctx.dropoutSeed` to the student and the teacher
   * of one training step: they then use the same dropout masks. `labels` are one-hot [B, labelDim].
   */
  apply(
    params: Params,
    x: SampleBatch,
    sigmas: SigmaBatch,
    ctx: ForwardContext = EVAL,
    labels?: tf.Tensor2D,
  ): SampleBatch {
    return consistencyFunction(
      (scaled, cNoise) => this.network.apply(params, scaled, cNoise, ctx, labels),
      x,
      sigmas,
      { sigmaData: this.sigmaData, sigmaMin: this.sigmaMin, embedding: this.network.embedding },
    );
  }

  /** f_θ as a plain function of (x, σ), for losses and samplers. */
  fn(params: Params, ctx: ForwardContext = EVAL, labels?: tf.Tensor2D): ConsistencyFn {
    return (x, sigmas) => this.apply(params, x, sigmas, ctx, labels);
  }
}
