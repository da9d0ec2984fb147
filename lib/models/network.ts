// What every network of the kit is to the rest of it: F_θ(c_in·x, c_noise[, labels]) over a parameter map,
// plus what building it recorded (parameter specs, cost per sample).
import * as tf from "@tensorflow/tfjs";
import type { NoiseEmbeddingKind } from "../parameterization.ts";
import type { Cost, ForwardContext, Params, ParamSpec } from "../nn/params.ts";

export interface Network {
  /** Shape of one sample: [H, W, C] for images, [dim] for points. */
  readonly sampleShape: readonly number[];
  /** Which c_noise(σ) the network expects (Fourier: 0.25 ln σ; positional: 250 ln σ). */
  readonly embedding: NoiseEmbeddingKind;
  /** Number of classes for class-conditional networks, 0 if unconditional. */
  readonly labelDim: number;
  readonly specs: readonly ParamSpec[];
  /** Forward cost of one sample. */
  readonly cost: Readonly<Cost>;
  /** F_θ: x is c_in·x [B, …sampleShape], cNoise [B], labels one-hot [B, labelDim] when labelDim > 0. */
  apply(
    params: Params,
    x: tf.Tensor,
    cNoise: tf.Tensor1D,
    ctx: ForwardContext,
    labels?: tf.Tensor2D,
  ): tf.Tensor;
}

/** Checks the inputs of a forward pass; the errors say what was expected. */
export function checkInputs(net: Network, x: tf.Tensor, cNoise: tf.Tensor1D, labels?: tf.Tensor2D): void {
  const want = net.sampleShape.join(",");
  if (x.shape.slice(1).join(",") !== want) {
    throw new Error(`network input has sample shape [${x.shape.slice(1)}], this network takes [${want}]`);
  }
  if (cNoise.shape[0] !== x.shape[0]) {
    throw new Error(`${x.shape[0]} samples but ${cNoise.shape[0]} noise labels`);
  }
  if (net.labelDim > 0) {
    if (!labels) {
      throw new Error(`this network is class-conditional (${net.labelDim} classes): pass one-hot labels`);
    }
    if (labels.shape[0] !== x.shape[0] || labels.shape[1] !== net.labelDim) {
      throw new Error(`labels have shape [${labels.shape}], expected [${x.shape[0]}, ${net.labelDim}]`);
    }
  } else if (labels) throw new Error("this network is unconditional: it takes no labels");
}

/** One-hot labels [B, classes] from class indices. */
export function oneHotLabels(classes: ArrayLike<number>, labelDim: number): tf.Tensor2D {
  for (const c of Array.from(classes)) {
    if (!Number.isInteger(c) || c < 0 || c >= labelDim) {
      throw new Error(`class ${c} is not in 0..${labelDim - 1}`);
    }
  }
  return tf.tidy(() =>
    tf.oneHot(tf.tensor1d(Array.from(classes), "int32"), labelDim).toFloat() as tf.Tensor2D
  );
}
