// Kernels the TF.js wasm backend lacks for training, written with forward ops it has (no cpu fallback); the
// same kernels replace slower ones on cpu (filter gradient) and webgpu (both gradients).
import * as tf from "@tensorflow/tfjs";

type Conv2DAttrs = {
  strides: number | [number, number];
  pad: "valid" | "same" | number | tf.backend_util.ExplicitPadding;
  dataFormat: "NHWC" | "NCHW";
  dimRoundingMode?: "floor" | "round" | "ceil";
  filterShape: [number, number, number, number];
};

/**
 * dL/dW of conv2d (NHWC, dilation 1): dW[kh, kw, ci, co] = Σ_{b, oh, ow} x_pad[b, oh·s + kh, ow·s + kw, ci] · dy[b, oh, ow, co].
 * That is a correlation of x_pad with dy over (b, oh, ow): run it as a conv2d with the batch as channels,
 * x as [Ci, H, W, B], dy as the filter [OH, OW, B, Co], dilated by the stride; keep the first KH × KW outputs.
 */
export function conv2dFilterGradient(x: tf.Tensor4D, dy: tf.Tensor4D, attrs: Conv2DAttrs): tf.Tensor4D {
  if (attrs.dataFormat !== "NHWC") throw new Error("wasm Conv2DBackpropFilter supports NHWC only");
  const info = tf.backend_util.computeConv2DInfo(
    x.shape,
    attrs.filterShape,
    attrs.strides,
    1,
    attrs.pad,
    attrs.dimRoundingMode,
    false,
    "channelsLast",
  );
  const { top, bottom, left, right } = info.padInfo;
  const [kh, kw] = [info.filterHeight, info.filterWidth];
  return tf.tidy(() => {
    const xPad = tf.pad(x, [[0, 0], [Math.max(top, 0), Math.max(bottom, 0)], [
      Math.max(left, 0),
      Math.max(right, 0),
    ], [0, 0]]);
    const xT = tf.transpose(xPad, [3, 1, 2, 0]) as tf.Tensor4D; // [Ci, Hp, Wp, B]
    const dyT = tf.transpose(dy, [1, 2, 0, 3]) as tf.Tensor4D; // [OH, OW, B, Co]
    const full = tf.conv2d(xT, dyT, 1, "valid", "NHWC", [info.strideHeight, info.strideWidth]); // [Ci, ≥KH, ≥KW, Co]
    return tf.transpose(tf.slice(full, [0, 0, 0, 0], [-1, kh, kw, -1]), [1, 2, 0, 3]) as tf.Tensor4D;
  });
}

/**
 * dL/dx of conv2d (NHWC, dilation 1) as a forward conv: insert s − 1 zeros between the rows/columns of dy,
 * pad by (K − 1 − pad) so every input position sees every tap, and correlate with the filter flipped in
 * space and with its channel axes swapped. Replaces tfjs-wasm's own kernel, which runs at ~1.7 GFLOP/s.
 */
export function conv2dInputGradient(
  dy: tf.Tensor4D,
  filter: tf.Tensor4D,
  inputShape: [number, number, number, number],
  attrs: Omit<Conv2DAttrs, "filterShape">,
): tf.Tensor4D {
  if (attrs.dataFormat !== "NHWC") throw new Error("wasm Conv2DBackpropInput supports NHWC only");
  const info = tf.backend_util.computeConv2DInfo(
    inputShape,
    filter.shape,
    attrs.strides,
    1,
    attrs.pad,
    attrs.dimRoundingMode,
    false,
    "channelsLast",
  );
  const [b, h, w] = inputShape;
  const [kh, kw] = [info.filterHeight, info.filterWidth];
  const [sh, sw] = [info.strideHeight, info.strideWidth];
  const [oh, ow, co] = [dy.shape[1], dy.shape[2], dy.shape[3]];
  return tf.tidy(() => {
    let d: tf.Tensor4D = dy;
    if (sh > 1 || sw > 1) {
      // Zero-insertion [B, OH, OW, C] → [B, OH·s, OW·s, C] with 4-D pads only (webgpu's pad shader fails to
      // compile for 6-D tensors): s − 1 zeros after every column, then after every row.
      const cols = tf.pad(dy.reshape([b * oh, ow, 1, co]), [[0, 0], [0, 0], [0, sw - 1], [0, 0]]);
      const rows = tf.pad(cols.reshape([b, oh, 1, ow * sw * co]), [[0, 0], [0, 0], [0, sh - 1], [0, 0]]);
      const dense = rows.reshape([b, oh * sh, ow * sw, co]) as tf.Tensor4D;
      d = tf.slice(dense, [0, 0, 0, 0], [b, (oh - 1) * sh + 1, (ow - 1) * sw + 1, co]);
    }
    const top = kh - 1 - info.padInfo.top;
    const left = kw - 1 - info.padInfo.left;
    const bottom = h + kh - 1 - top - d.shape[1];
    const right = w + kw - 1 - left - d.shape[2];
    const padded = tf.pad(d, [[0, 0], [Math.max(top, 0), Math.max(bottom, 0)], [
      Math.max(left, 0),
      Math.max(right, 0),
    ], [0, 0]]);
    const cropped = tf.slice(padded, [0, Math.max(-top, 0), Math.max(-left, 0), 0], [
      b,
      padded.shape[1] - Math.max(-top, 0) - Math.max(-bottom, 0),
      padded.shape[2] - Math.max(-left, 0) - Math.max(-right, 0),
      co,
    ]);
    const flipped = tf.transpose(tf.reverse(filter, [0, 1]), [0, 1, 3, 2]) as tf.Tensor4D; // [KH, KW, Co, Ci]
    return tf.conv2d(cropped as tf.Tensor4D, flipped, 1, "valid");
  });
}

/** The filter-gradient kernel built from forward ops, for `backend`. */
function registerFilterGradient(backend: string): void {
  if (tf.getKernel("Conv2DBackpropFilter", backend)) tf.unregisterKernel("Conv2DBackpropFilter", backend);
  tf.registerKernel({
    kernelName: "Conv2DBackpropFilter",
    backendName: backend,
    // Nested ops inside a kernel are not recorded on the gradient tape; returning a Tensor hands it to the engine.
    kernelFunc: ({ inputs, attrs }) =>
      conv2dFilterGradient(
        inputs.x as tf.Tensor4D,
        inputs.dy as tf.Tensor4D,
        attrs as unknown as Conv2DAttrs,
      ),
  });
}

let cpuRegistered = false;

/**
 * Replace the cpu backend's own Conv2DBackpropFilter (35 s for a [1,32,32,128] 3×3 conv, 1000× its forward)
 * with the forward-op version. Only for training on cpu: tests keep cpu's own kernel as their reference.
 */
export function registerCpuTrainingKernels(): void {
  if (cpuRegistered) return;
  cpuRegistered = true;
  registerFilterGradient("cpu");
}

/** The input-gradient kernel built from forward ops, for `backend`. */
function registerInputGradient(backend: string): void {
  if (tf.getKernel("Conv2DBackpropInput", backend)) tf.unregisterKernel("Conv2DBackpropInput", backend);
  tf.registerKernel({
    kernelName: "Conv2DBackpropInput",
    backendName: backend,
    kernelFunc: ({ inputs, attrs }) => {
      const a = attrs as unknown as Omit<Conv2DAttrs, "filterShape"> & {
        inputShape: [number, number, number, number];
      };
      return conv2dInputGradient(inputs.dy as tf.Tensor4D, inputs.filter as tf.Tensor4D, a.inputShape, a);
    },
  });
}

let registered = false;

/** Register the missing (filter) and the faster (input) conv gradient kernels on wasm (idempotent). */
export function registerWasmTrainingKernels(): void {
  if (registered) return;
  registered = true;
  registerInputGradient("wasm");
  registerFilterGradient("wasm");
}

let webgpuRegistered = false;

/**
 * On webgpu both forward-op kernels beat TF.js's own: its Conv2DBackpropFilter runs one thread per weight,
 * looping over batch × height × width, and its Conv2DBackpropInput is a direct kernel, while the forward-op
 * versions run on its tiled forward convolution (llvmpipe, 3×3 [8,32,32,128] → 128: `tests/webgpu_bench.ts`).
 * Call after tfjs-backend-webgpu is imported (idempotent).
 */
export function registerWebgpuTrainingKernels(): void {
  if (webgpuRegistered) return;
  webgpuRegistered = true;
  registerInputGradient("webgpu");
  registerFilterGradient("webgpu");
}
