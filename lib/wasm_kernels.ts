// Kernels the TF.js wasm backend lacks for training, written with forward ops it has (no cpu fallback); the
// same kernels replace slower ones on cpu (filter gradient) and webgpu (both gradients).
import * as tf from "@tensorflow/tfjs";
import { registerWasmConvCache } from "./wasm_conv_cache.ts";
import { groupNormBackwardSimd, groupNormForwardSimd } from "./simd/groupnorm.ts";
import { flipFilterSimd, im2colTransposedSimd, type Im2colWindows } from "./simd/layout.ts";
import { firResampleSimd } from "./simd/fir.ts";
import { registerDropout } from "./simd/dropout.ts";
import { type HeapBackend, heapOffset } from "./simd/heap.ts";
import { columnSumSimd } from "./simd/reduce.ts";
import { inputGradientByGemm, inputGradientByGemmApplies, registerCol2im } from "./simd/col2im.ts";
import { ADAM_ADAM, ADAM_ADAPTIVE, ADAM_DECAY, optimizerSimd } from "./simd/optimizer.ts";
import { matMulSimd, SIMD_MATMUL_MAX_ROWS, SIMD_MATMUL_ROW_MACS } from "./simd/matmul.ts";

/**
 * The kit's speed-ups that keep their older path, switchable for A/B timing in one process
 * (`deno task bench:step --ab NAME` alternates steps with NAME off and on). All on by default; a switch only
 * chooses between two paths that compute the same values (tested equal in tests/wasm_kernels_test.ts and
 * tests/optim_test.ts).
 */
export const fastPaths = {
  /** wasm's Square (an XNNPACK operator, dispatched to the thread pool: ~1 ms a call on 2 threads) as x·x. */
  square: true,
  /** Adam / RAdam: one kernel per parameter (IctAdamUpdate) instead of ~12 element-wise ops. */
  optimizer: true,
  /** The gradient's squared norm: one kernel over every gradient (IctSumOfSquares) instead of 2 ops each. */
  gradNorm: true,
  /** BatchMatMul's per-entry slices: one kernel writing every entry (IctSplit) instead of one Slice each. */
  split: true,
  /** The input gradient's zeros as the convolution's explicit padding instead of a PadV2 and a Slice. */
  convPad: true,
  /** Small matrix products by one JavaScript kernel instead of a threaded convolution per batch entry. */
  smallMatMul: true,
  /** Products of ≤ 128 rows up to K·N = 768·1536 by SIMD128 (lib/simd/matmul.ts), not JavaScript up to 8192. */
  simdMatMul: true,
  /** wasm's Identity (the engine's copy of every tensor saved for the backward pass) shares the data. */
  identity: true,
  /** The residual block's embedding added inside the GroupNorm kernels instead of a broadcast Add before. */
  groupNormShift: true,
  /** Small broadcast Add, Sub, Multiply, RealDiv by one JavaScript loop instead of a threaded XNNPACK op. */
  smallBroadcast: true,
  /** The kit's SIMD128 kernels (lib/simd/) instead of JavaScript loops on the wasm heap. */
  simd: true,
  /** The stride-1 conv input gradient as W·dyᵀ and a col2im instead of a convolution with the flipped filter. */
  inputGemm: true,
};
export type FastPath = keyof typeof fastPaths;

type Conv2DAttrs = {
  strides: number | [number, number];
  pad: "valid" | "same" | number | tf.backend_util.ExplicitPadding;
  dataFormat: "NHWC" | "NCHW";
  dimRoundingMode?: "floor" | "round" | "ceil";
  filterShape: [number, number, number, number];
};

/**
 * dL/dW of conv2d (NHWC, dilation 1): dW[kh, kw, ci, co] = Σ_{b, oh, ow} x_pad[b, oh·s + kh, ow·s + kw, ci] · dy[b, oh, ow, co].
 * That is one matrix product over n = (b, oh, ow): Pᵀ[(kh, kw, ci), n] · dy[n, co], where Pᵀ (im2col,
 * transposed) holds the KH·KW shifted (strided) windows of x_pad. It runs as a 1×1 convolution, XNNPACK's
 * threaded GEMM, with Pᵀ as an image of KH·KW·Ci pixels with n channels and dy as the filter. Pᵀ is written by
 * one kernel (im2colTransposed). The earlier form, one convolution with the batch as channels and dy as a
 * [OH, OW, B, Co] filter, fed XNNPACK B-wide slivers (1 at batch 1) and took 5× longer.
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
  const [kh, kw] = [info.filterHeight, info.filterWidth];
  const [b, oh, ow, co] = dy.shape;
  const ci = x.shape[3];
  const n = b * oh * ow;
  const im2col: Im2colWindows = {
    kh,
    kw,
    sh: info.strideHeight,
    sw: info.strideWidth,
    top: info.padInfo.top,
    left: info.padInfo.left,
    oh,
    ow,
  };
  return tf.tidy(() => {
    const pT = tf.engine().runKernel(IM2COL_T, { x }, im2col as unknown as tf.NamedAttrMap) as tf.Tensor;
    const dw = tf.conv2d(
      pT.reshape([1, kh * kw * ci, 1, n]) as tf.Tensor4D,
      dy.reshape([1, 1, n, co]) as tf.Tensor4D,
      1,
      "valid",
    ); // [1, KH·KW·Ci, 1, Co]
    return dw.reshape([kh, kw, ci, co]) as tf.Tensor4D;
  });
}

/**
 * The same filter gradient from forward ops only, for backends whose data the host cannot read synchronously
 * (webgpu). A correlation of x_pad with dy over (b, oh, ow): run it as a conv2d with the batch as channels,
 * x as [Ci, H, W, B], dy as the filter [OH, OW, B, Co], dilated by the stride; keep the first KH × KW outputs.
 */
export function conv2dFilterGradientByConv(x: tf.Tensor4D, dy: tf.Tensor4D, attrs: Conv2DAttrs): tf.Tensor4D {
  if (attrs.dataFormat !== "NHWC") throw new Error("Conv2DBackpropFilter supports NHWC only");
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
 * Pᵀ[(i, j, c), (b, oh, ow)] = x[b, oh·sh + i − top, ow·sw + j − left, c], 0 outside x. Written in tiles of 32
 * columns, so reads take whole channel rows and writes run along Pᵀ's rows.
 */
export function im2colTransposed(
  x: Float32Array,
  [b, h, w, ci]: readonly number[],
  a: Im2colWindows,
  out: Float32Array,
) {
  const n = b * a.oh * a.ow;
  const TILE = 32;
  const src = new Int32Array(TILE); // offset of each column's channel row in x, −1 for padding
  for (let i = 0; i < a.kh; i++) {
    for (let j = 0; j < a.kw; j++) {
      const rowBase = (i * a.kw + j) * ci;
      for (let n0 = 0; n0 < n; n0 += TILE) {
        const m = Math.min(TILE, n - n0);
        for (let t = 0; t < m; t++) {
          const col = n0 + t;
          const ox = col % a.ow;
          const rest = (col - ox) / a.ow;
          const oy = rest % a.oh;
          const bi = (rest - oy) / a.oh;
          const r = oy * a.sh + i - a.top;
          const s = ox * a.sw + j - a.left;
          src[t] = r < 0 || r >= h || s < 0 || s >= w ? -1 : ((bi * h + r) * w + s) * ci;
        }
        for (let c = 0; c < ci; c++) {
          const o = (rowBase + c) * n + n0;
          for (let t = 0; t < m; t++) out[o + t] = src[t] < 0 ? 0 : x[src[t] + c];
        }
      }
    }
  }
}

const IM2COL_T = "IctIm2colTransposed";

function registerIm2col(backend: string): void {
  if (tf.getKernel(IM2COL_T, backend)) return;
  tf.registerKernel({
    kernelName: IM2COL_T,
    backendName: backend,
    kernelFunc: ({ inputs, backend: be, attrs }) => {
      const { x } = inputs as Record<string, tf.TensorInfo>;
      const a = attrs as unknown as Im2colWindows;
      const shape = [a.kh * a.kw * x.shape[3], x.shape[0] * a.oh * a.ow];
      if (backend === "wasm") {
        const hb = be as unknown as HeapBackend;
        const out = hb.makeOutput(shape, "float32");
        if (!im2colTransposedSimd(be, x, a, out)) {
          im2colTransposed(hb.typedArrayFromHeap(x), x.shape, a, hb.typedArrayFromHeap(out));
        }
        return out;
      }
      // Host-memory backends (cpu): read the input, write a new array.
      const hostBackend = be as unknown as {
        readSync(id: unknown): Float32Array;
        makeTensorInfo(shape: number[], dtype: "float32", values: Float32Array): tf.TensorInfo;
      };
      const out = new Float32Array(shape[0] * shape[1]);
      im2colTransposed(hostBackend.readSync(x.dataId), x.shape, a, out);
      return hostBackend.makeTensorInfo(shape, "float32", out);
    },
  });
}

/**
 * The filter of conv2d's input gradient: flipped in space, channel axes swapped ([KH, KW, Ci, Co] →
 * [KH, KW, Co, Ci]). The flip is the KH·KW slices of [KH·KW, Ci·Co] concatenated in reverse order (contiguous
 * copies): wasm's Reverse and GatherV2 kernels took 64 and 56 ms on a [3, 3, 256, 256] filter (16–20% of a
 * ncsnpp-cifar10 step).
 */
export function flipFilter(filter: tf.Tensor4D): tf.Tensor4D {
  const [kh, kw, ci, co] = filter.shape;
  if (filter.dtype === "float32" && tf.getKernel(FLIP_FILTER, tf.getBackend())) {
    return tf.engine().runKernel(FLIP_FILTER, { filter }) as tf.Tensor4D;
  }
  return tf.tidy(() => {
    const rows = filter.reshape([kh * kw, ci * co]);
    const taps = Array.from({ length: kh * kw }, (_, i) => tf.slice(rows, [kh * kw - 1 - i, 0], [1, -1]));
    const flipped = taps.length === 1 ? taps[0] : tf.concat(taps, 0);
    return tf.transpose(flipped.reshape([kh * kw, ci, co]), [0, 2, 1]).reshape([
      kh,
      kw,
      co,
      ci,
    ]) as tf.Tensor4D;
  });
}

const FLIP_FILTER = "IctFlipFilter";

/** out[kh, kw, o, i] = w[KH − 1 − kh, KW − 1 − kw, i, o]: flipFilter in one pass (the same loop serves wasm and cpu). */
export function flipFilterInto(
  w: Float32Array,
  [kh, kw, ci, co]: readonly number[],
  out: Float32Array,
): void {
  for (let t = 0; t < kh * kw; t++) {
    const src = (kh * kw - 1 - t) * ci * co;
    const dst = t * co * ci;
    for (let i = 0; i < ci; i++) {
      for (let o = 0; o < co; o++) out[dst + o * ci + i] = w[src + i * co + o];
    }
  }
}

function registerFlipFilter(): void {
  tf.registerKernel({
    kernelName: FLIP_FILTER,
    backendName: "wasm",
    kernelFunc: ({ inputs, backend }) => {
      const be = backend as unknown as HeapBackend;
      const { filter } = inputs as Record<string, tf.TensorInfo>;
      const [kh, kw, ci, co] = filter.shape;
      const out = be.makeOutput([kh, kw, co, ci], "float32");
      if (!flipFilterSimd(be, filter, out)) {
        flipFilterInto(be.typedArrayFromHeap(filter), filter.shape, be.typedArrayFromHeap(out));
      }
      return out;
    },
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
  if (fastPaths.inputGemm && inputGradientByGemmApplies(b * oh * ow, filter.shape, [sh, sw])) {
    return inputGradientByGemm(dy, filter, inputShape, info.padInfo);
  }
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
    if (fastPaths.convPad && tf.getBackend() === "wasm" && Math.min(top, left, bottom, right) >= 0) {
      // The zeros as the convolution's own padding (XNNPACK's indirection buffer points at a zero row): no
      // padded copy of dy, and no cropping Slice.
      const pad: tf.backend_util.ExplicitPadding = [[0, 0], [top, bottom], [left, right], [0, 0]];
      return tf.conv2d(d, flipFilter(filter), 1, pad);
    }
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
    return tf.conv2d(cropped as tf.Tensor4D, flipFilter(filter), 1, "valid");
  });
}

/**
 * a·b (optionally transposed) over broadcast batch dimensions, as 1×1 convolutions: XNNPACK's threaded GEMM.
 * TF.js's wasm BatchMatMul runs single-threaded at ≈1.5 GFLOP/s ([8,1,256,256]·[8,1,256,64], the attention of
 * ncsnpp-small-32 at batch 8: 37 ms); as a convolution each batch entry is an image of M pixels with K
 * channels and b's matrix is the filter. One convolution when b has no batch (or a batch of 1).
 */
export function batchMatMulByConv(
  a: tf.Tensor,
  b: tf.Tensor,
  transposeA: boolean,
  transposeB: boolean,
): tf.Tensor {
  return tf.tidy(() => {
    const last2 = (t: tf.Tensor) => [...t.shape.keys()].map((i) => i < t.rank - 2 ? i : 2 * t.rank - 3 - i);
    const am = transposeA ? tf.transpose(a, last2(a)) : a;
    const bm = transposeB ? tf.transpose(b, last2(b)) : b;
    const [m, k] = am.shape.slice(-2);
    const n = bm.shape[bm.rank - 1];
    if (bm.shape[bm.rank - 2] !== k) {
      throw new Error(`BatchMatMul: inner dimensions ${k} and ${bm.shape[bm.rank - 2]} differ`);
    }
    const batchShape = tf.backend_util.assertAndGetBroadcastShape(
      am.shape.slice(0, -2),
      bm.shape.slice(0, -2),
    );
    const batch = batchShape.reduce((p, q) => p * q, 1);
    const bBatch = bm.shape.slice(0, -2).reduce((p, q) => p * q, 1);
    let out: tf.Tensor;
    if (bBatch === 1) {
      // Every entry of a against the one matrix b: one GEMM of batch·M rows.
      const rows = tf.broadcastTo(am, [...batchShape, m, k]).reshape([1, batch * m, 1, k]) as tf.Tensor4D;
      out = tf.conv2d(rows, bm.reshape([1, 1, k, n]) as tf.Tensor4D, 1, "valid");
    } else {
      const a3 = tf.broadcastTo(am, [...batchShape, m, k]).reshape([batch, m, k]);
      const b3 = tf.broadcastTo(bm, [...batchShape, k, n]).reshape([batch, k, n]);
      const [as, bs] = [splitFirst(a3), splitFirst(b3)];
      out = tf.concat(
        as.map((ai, i) =>
          tf.conv2d(
            ai.reshape([1, m, 1, k]) as tf.Tensor4D,
            bs[i].reshape([1, 1, k, n]) as tf.Tensor4D,
            1,
            "valid",
          )
        ),
        0,
      );
    }
    return out.reshape([...batchShape, m, n]);
  });
}

const SPLIT = "IctSplit";

/**
 * The entries of t along its first axis, as tensors of shape [1, …]: one IctSplit kernel on wasm (one copy
 * each, by TypedArray.set on the heap), else one Slice each (contiguous copies; wasm's Unpack took 20 ms for
 * [8, 256, 256], its Slice 0.6 ms an entry).
 */
export function splitFirst(t: tf.Tensor): tf.Tensor[] {
  const n = t.shape[0];
  if (fastPaths.split && t.dtype === "float32" && tf.getKernel(SPLIT, tf.getBackend())) {
    return tf.engine().runKernel(SPLIT, { x: t }) as tf.Tensor[];
  }
  return Array.from(
    { length: n },
    (_, i) => tf.slice(t, [i, ...t.shape.slice(1).map(() => 0)], [1, ...t.shape.slice(1)]),
  );
}

function registerSplit(): void {
  tf.registerKernel({
    kernelName: SPLIT,
    backendName: "wasm",
    kernelFunc: ({ inputs, backend }) => {
      const be = backend as unknown as HeapBackend;
      const { x } = inputs as Record<string, tf.TensorInfo>;
      const shape = [1, ...x.shape.slice(1)];
      const size = shape.reduce((a, b) => a * b, 1);
      const outs = Array.from({ length: x.shape[0] }, () => be.makeOutput(shape, "float32"));
      const src = be.typedArrayFromHeap(x); // after every allocation: a growing heap replaces its buffer
      outs.forEach((o, i) => be.typedArrayFromHeap(o).set(src.subarray(i * size, (i + 1) * size)));
      return outs;
    },
  });
}

/**
 * Products whose output rows cost at most this many multiply-adds each (K·N) run as one JavaScript kernel
 * (matMulSmall): a convolution is dispatched to XNNPACK's thread pool, ~1 ms a call on 2 threads however small
 * (the dense layers' [8, 128]·[128, 64] and the 8×8 attention's [8, 64, 64] products of ncsnpp-small-32, one
 * convolution per batch entry). wasm's own BatchMatMul took as long as the convolution for [8, 128]·[128, 64]
 * (2.4 ms). The choice depends on K·N only, never on the number of rows M or of batch entries: those are the
 * data's batch (a dense layer's rows, attention's B·heads entries), and the two paths round differently, so a
 * choice by batch size would make a sample's result depend on the batch it was computed in (micro-batches,
 * FID feature batches).
 */
export const SMALL_MATMUL_ROW_MACS = 8192;

/**
 * out[e] = op(a[e])·op(b[e]) for each batch entry e (a or b with one entry is broadcast), op = transpose or
 * not; row-major matrices, sums in float64. For small products, where a threaded convolution's dispatch costs
 * more than the arithmetic.
 */
export function matMulSmall(
  a: Float32Array,
  b: Float32Array,
  d: { batch: number; aBatch: number; bBatch: number; m: number; k: number; n: number },
  transposeA: boolean,
  transposeB: boolean,
  out: Float32Array,
): void {
  const { m, k, n } = d;
  const bk = new Float32Array(k * n); // op(b[e]) as [K, N]
  const acc = new Float64Array(n);
  for (let e = 0; e < d.batch; e++) {
    const a0 = (d.aBatch === 1 ? 0 : e) * m * k;
    const b0 = (d.bBatch === 1 ? 0 : e) * k * n;
    if (transposeB) { // b[e] is [N, K]
      for (let j = 0; j < n; j++) for (let p = 0; p < k; p++) bk[p * n + j] = b[b0 + j * k + p];
    } else bk.set(b.subarray(b0, b0 + k * n));
    for (let i = 0; i < m; i++) {
      acc.fill(0);
      for (let p = 0; p < k; p++) {
        const aip = transposeA ? a[a0 + p * m + i] : a[a0 + i * k + p]; // a[e] is [K, M] when transposed
        const row = p * n;
        for (let j = 0; j < n; j++) acc[j] += aip * bk[row + j];
      }
      const o = (e * m + i) * n;
      for (let j = 0; j < n; j++) out[o + j] = acc[j];
    }
  }
}

/** K·N of a (batched, broadcast) product op(a)·op(b), b being [K, N] or [N, K]: the cost of one output row. */
function matMulRowMacs(b: readonly number[]): number {
  return b[b.length - 1] * b[b.length - 2];
}

/**
 * Replace `backend`'s own kernel `name` by `kernelFunc`, which is handed the own kernel to fall back on. The
 * own setupFunc stays: it binds the own kernel's wasm function when the backend starts.
 */
export function replaceOwnKernel(
  name: string,
  backend: string,
  kernelFunc: (args: Parameters<tf.KernelFunc>[0], own: tf.KernelConfig) => ReturnType<tf.KernelFunc>,
): void {
  const own = tf.getKernel(name, backend);
  if (!own) throw new Error(`${backend} has no ${name} kernel to replace`);
  tf.unregisterKernel(name, backend);
  tf.registerKernel({
    kernelName: name,
    backendName: backend,
    setupFunc: own.setupFunc,
    kernelFunc: (args) => kernelFunc(args, own),
  });
}

/**
 * BatchMatMul on `backend` by batchMatMulByConv, for float32; small products go to the SIMD128 kernel on wasm
 * (at most SIMD_MATMUL_MAX_ROWS rows and SIMD_MATMUL_ROW_MACS per row, fastPaths.simdMatMul), else to the
 * JavaScript one (SMALL_MATMUL_ROW_MACS) on wasm and the backend's own kernel elsewhere; other dtypes go to the
 * own kernel.
 */
function registerBatchMatMul(backend: string): void {
  replaceOwnKernel("BatchMatMul", backend, (args, own) => {
    const { a, b } = args.inputs as { a: tf.Tensor; b: tf.Tensor };
    if (a.dtype !== "float32" || b.dtype !== "float32") return own.kernelFunc(args);
    const { transposeA, transposeB } = args.attrs as { transposeA: boolean; transposeB: boolean };
    const rowMacs = matMulRowMacs(b.shape);
    const m = a.shape[a.rank - (transposeA ? 1 : 2)];
    // SIMD on wasm (XNNPACK's bits, so choosing by M too keeps rows batch-invariant); else the JavaScript kernel
    // (float64 sums), chosen by K·N only.
    const simd = backend === "wasm" && fastPaths.simdMatMul;
    const small = simd
      ? rowMacs <= SIMD_MATMUL_ROW_MACS && m <= SIMD_MATMUL_MAX_ROWS
      : rowMacs <= SMALL_MATMUL_ROW_MACS;
    if (fastPaths.smallMatMul && small) {
      const batchOf = (t: tf.Tensor) => t.shape.slice(0, -2).reduce((p, q) => p * q, 1);
      const [ba, bb] = [batchOf(a), batchOf(b)];
      if (backend !== "wasm" || !(ba === bb || ba === 1 || bb === 1)) return own.kernelFunc(args);
      const be = args.backend as unknown as HeapBackend;
      const batchShape = tf.backend_util.assertAndGetBroadcastShape(
        a.shape.slice(0, -2),
        b.shape.slice(0, -2),
      );
      const n = b.shape[b.rank - (transposeB ? 2 : 1)];
      const out = be.makeOutput([...batchShape, m, n], "float32");
      const d = {
        batch: Math.max(ba, bb),
        aBatch: ba,
        bBatch: bb,
        m,
        k: a.shape[a.rank - (transposeA ? 2 : 1)],
        n,
      };
      if (simd) matMulSimd(be, a, b, d, transposeA, transposeB, out);
      else {
        const [av, bv] = [be.typedArrayFromHeap(a), be.typedArrayFromHeap(b)];
        matMulSmall(av, bv, d, transposeA, transposeB, be.typedArrayFromHeap(out));
      }
      return out;
    }
    return batchMatMulByConv(a, b, transposeA, transposeB);
  });
}

/**
 * Square on `backend` as Multiply(x, x) for float32 (the same IEEE products). wasm's own Square is an XNNPACK
 * operator run on the thread pool, whose dispatch cost ~1 ms a call on 2 threads whatever the size (a [128, 64]
 * tensor: 0.96 ms, x·x 0.02 ms); the gradient norm and Adam's v square every gradient (554 calls a step of
 * ncsnpp-small-32). Multiply is a plain loop. Other dtypes, or fastPaths.square off, go to the own kernel.
 */
function registerSquare(backend: string): void {
  replaceOwnKernel("Square", backend, (args, own) => {
    const { x } = args.inputs as { x: tf.Tensor };
    if (x.dtype !== "float32" || !fastPaths.square) return own.kernelFunc(args);
    return tf.mul(x, x);
  });
}

/**
 * wasm's Sum over every axis but the last (a bias gradient) as one column-sum pass (lib/simd/reduce.wat); the
 * own kernel, which transposes such inputs first, for every other reduction.
 */
function registerColumnSum(): void {
  replaceOwnKernel("Sum", "wasm", (args, own) => {
    const { x } = args.inputs as { x: tf.TensorInfo };
    const { axis, keepDims } = args.attrs as { axis: number | number[]; keepDims: boolean };
    const r = x.shape.length;
    const axes = tf.util.parseAxisParam(axis, x.shape).sort((p, q) => p - q);
    const leading = r >= 2 && axes.length === r - 1 && axes.every((a, i) => a === i);
    if (!fastPaths.simd || x.dtype !== "float32" || !leading || size1(x.shape) === 0) {
      return own.kernelFunc(args);
    }
    const c = x.shape[r - 1];
    const out = (args.backend as unknown as HeapBackend).makeOutput(
      keepDims ? [...x.shape.slice(0, -1).map(() => 1), c] : [c],
      "float32",
    );
    columnSumSimd(args.backend, x, size1(x.shape) / c, out);
    return out;
  });
}

/**
 * wasm's Identity shares the input's data (as cpu's does; wasm's Reshape does the same) instead of copying it:
 * the engine clones every tensor it saves for the backward pass (1155 copies in a step of ncsnpp-small-32).
 * Tensors are immutable and the backend counts references per data id, so a shared buffer lives until its
 * last tensor is disposed. fastPaths.identity off: the own kernel (a copy).
 */
function registerIdentity(): void {
  replaceOwnKernel("Identity", "wasm", (args, own) => {
    const { x } = args.inputs as { x: tf.TensorInfo };
    if (x.dtype === "string" || !fastPaths.identity) return own.kernelFunc(args);
    (args.backend as unknown as { incRef(id: unknown): void }).incRef(x.dataId);
    return { dataId: x.dataId, shape: [...x.shape], dtype: x.dtype };
  });
}

const size1 = (s: readonly number[]) => s.reduce((p, q) => p * q, 1);

/** Broadcast binary ops up to this many output elements run as one JavaScript loop (registerSmallBroadcast). */
export const SMALL_BROADCAST = 1 << 16;

/** The binary ops of registerSmallBroadcast, by kernel name. */
const BINARY = ["Add", "Sub", "Multiply", "RealDiv"] as const;
export type BinaryOp = typeof BINARY[number];

/**
 * out = op(a, b) with NumPy broadcasting, in float64 then stored as float32 (the correctly rounded float32
 * result, as wasm's own kernels give it). Shapes of equal rank, each dimension equal or 1.
 */
export function broadcastBinary(
  op: BinaryOp,
  a: Float32Array,
  aShape: readonly number[],
  b: Float32Array,
  bShape: readonly number[],
  outShape: readonly number[],
  out: Float32Array,
): void {
  const rank = outShape.length;
  const stride = (shape: readonly number[]) => {
    const st = new Array<number>(rank).fill(0);
    let s = 1;
    for (let i = rank - 1; i >= 0; i--) {
      st[i] = shape[i] === 1 ? 0 : s;
      s *= shape[i];
    }
    return st;
  };
  const [sa, sb] = [stride(aShape), stride(bShape)];
  const last = rank - 1;
  const n = outShape[last];
  const idx = new Array<number>(rank).fill(0);
  let [ia, ib] = [0, 0];
  for (let o = 0; o < out.length; o += n) {
    const [ja, jb] = [sa[last], sb[last]];
    // One loop per op (a call through a function per element was 3× slower).
    if (op === "Add") { for (let j = 0; j < n; j++) out[o + j] = a[ia + j * ja] + b[ib + j * jb]; }
    else if (op === "Sub") { for (let j = 0; j < n; j++) out[o + j] = a[ia + j * ja] - b[ib + j * jb]; }
    else if (op === "Multiply") { for (let j = 0; j < n; j++) out[o + j] = a[ia + j * ja] * b[ib + j * jb]; }
    else for (let j = 0; j < n; j++) out[o + j] = a[ia + j * ja] / b[ib + j * jb];
    // Next row: advance the multi-index over the leading dimensions.
    for (let d = last - 1; d >= 0; d--) {
      idx[d]++;
      ia += sa[d];
      ib += sb[d];
      if (idx[d] < outShape[d]) break;
      ia -= sa[d] * idx[d];
      ib -= sb[d] * idx[d];
      idx[d] = 0;
    }
  }
}

/**
 * wasm's Add, Sub, Multiply and RealDiv with broadcasting run as XNNPACK operators dispatched to the thread pool
 * (~1 ms a call on 2 threads: a dense layer's bias add [8, 64] + [64], the per-sample scalings
 * [8, 1, 1, 1]·[8, 32, 32, 3]); small ones (float32, at most SMALL_BROADCAST outputs) run here in one loop.
 */
function registerSmallBroadcast(): void {
  for (const name of BINARY) {
    replaceOwnKernel(name, "wasm", (args, own) => {
      const { a, b } = args.inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
      if (!fastPaths.smallBroadcast || a.dtype !== "float32" || b.dtype !== "float32") {
        return own.kernelFunc(args);
      }
      const outShape = tf.backend_util.assertAndGetBroadcastShape(a.shape, b.shape);
      const size = outShape.reduce((p, q) => p * q, 1);
      const same = a.shape.length === b.shape.length && a.shape.every((d, i) => d === b.shape[i]);
      // A scalar operand (x·0.5) is fast in wasm's own kernels: only true broadcasts come here.
      const scalar = Math.min(size1(a.shape), size1(b.shape)) === 1;
      if (same || scalar || size > SMALL_BROADCAST || size === 0) return own.kernelFunc(args);
      const pad = (s: readonly number[]) => [...new Array(outShape.length - s.length).fill(1), ...s];
      const be = args.backend as unknown as HeapBackend;
      const out = be.makeOutput(outShape, "float32");
      broadcastBinary(
        name,
        be.typedArrayFromHeap(a),
        pad(a.shape),
        be.typedArrayFromHeap(b),
        pad(b.shape),
        outShape,
        be.typedArrayFromHeap(out),
      );
      return out;
    });
  }
}

/** The filter-gradient kernel built from forward ops, for `backend`. */
function registerFilterGradient(backend: string): void {
  // im2col is a host loop: wasm's heap and cpu's arrays only.
  const hostData = backend === "wasm" || backend === "cpu";
  if (hostData) registerIm2col(backend);
  const gradient = hostData ? conv2dFilterGradient : conv2dFilterGradientByConv;
  if (tf.getKernel("Conv2DBackpropFilter", backend)) tf.unregisterKernel("Conv2DBackpropFilter", backend);
  tf.registerKernel({
    kernelName: "Conv2DBackpropFilter",
    backendName: backend,
    // Nested ops inside a kernel are not recorded on the gradient tape; returning a Tensor hands it to the engine.
    kernelFunc: ({ inputs, attrs }) =>
      gradient(
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

/**
 * Register the missing (filter) and the faster (input) conv gradient kernels on wasm, and its matrix product
 * on XNNPACK's GEMM (idempotent).
 */
export function registerWasmTrainingKernels(): void {
  if (registered) return;
  registered = true;
  registerInputGradient("wasm");
  registerCol2im();
  registerFilterGradient("wasm");
  registerIm2col("cpu"); // a new kernel only: cpu keeps its own conv gradients unless registerCpuTrainingKernels
  registerBatchMatMul("wasm");
  registerSquare("wasm");
  registerColumnSum();
  registerDropout();
  registerSplit();
  registerIdentity();
  registerSmallBroadcast();
  registerOptimizerKernels();
  registerEma();
  registerGroupNorm();
  registerFir();
  registerFlipFilter();
  registerWasmConvCache(); // at most 512 MiB of filters keep XNNPACK's packed copies (lib/wasm_conv_cache.ts)
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

// ---- GroupNorm (+ SiLU), one kernel each way, on the wasm heap -------------------------------------------
//
// GroupNorm then SiLU as TF.js ops is ~10 small kernels forward and ~25 backward (moments, broadcasts,
// sigmoid, their gradients), each a separate single-threaded pass with broadcasting. Here: one kernel computes
// y = act(γ·(x − μ)·r + β) and the group statistics (μ, r = 1/√(σ² + ε), sums in float64), one computes
// dx, dγ, dβ from them. NHWC, groups of C/G consecutive channels. The arithmetic is SIMD128
// (lib/simd/groupnorm.wat) where C is a multiple of 4, else the JavaScript loops below (the reference the SIMD
// kernels are tested against).

interface GroupNormAttrs {
  groups: number;
  eps: number;
  silu: boolean;
}

/**
 * Forward: y = act(γ·(x − μ_g)·r_g + β); writes mean and rstd, both [B, G]. With `pre` ([B, C]), x is first
 * x + pre[b, c] (rounded to float32, as TF.js's broadcast Add would give it): the embedding added before
 * the second GroupNorm of a residual block.
 */
export function groupNormForward(
  x0: Float32Array,
  shape: readonly number[],
  gamma: Float32Array,
  beta: Float32Array,
  a: GroupNormAttrs,
  y: Float32Array,
  mean: Float32Array,
  rstd: Float32Array,
  pre?: Float32Array,
): void {
  const x = pre ? addShift(x0, shape, pre) : x0;
  const [b, h, w, c] = shape;
  const p = h * w;
  const g = a.groups;
  const cg = c / g;
  const n = p * cg;
  const s1 = new Float64Array(c);
  const s2 = new Float64Array(c);
  const scale = new Float32Array(c);
  const shift = new Float32Array(c);
  for (let bi = 0; bi < b; bi++) {
    const base = bi * p * c;
    s1.fill(0);
    s2.fill(0);
    for (let i = 0; i < p; i++) {
      const o = base + i * c;
      for (let ch = 0; ch < c; ch++) {
        const v = x[o + ch];
        s1[ch] += v;
        s2[ch] += v * v;
      }
    }
    for (let gi = 0; gi < g; gi++) {
      let m = 0;
      let q = 0;
      for (let j = gi * cg; j < (gi + 1) * cg; j++) {
        m += s1[j];
        q += s2[j];
      }
      m /= n;
      const variance = Math.max(q / n - m * m, 0);
      const r = 1 / Math.sqrt(variance + a.eps);
      mean[bi * g + gi] = m;
      rstd[bi * g + gi] = r;
      for (let j = gi * cg; j < (gi + 1) * cg; j++) {
        scale[j] = gamma[j] * r;
        shift[j] = beta[j] - m * r * gamma[j];
      }
    }
    for (let i = 0; i < p; i++) {
      const o = base + i * c;
      if (a.silu) {
        for (let ch = 0; ch < c; ch++) {
          const v = x[o + ch] * scale[ch] + shift[ch];
          y[o + ch] = v / (1 + Math.exp(-v));
        }
      } else {
        for (let ch = 0; ch < c; ch++) y[o + ch] = x[o + ch] * scale[ch] + shift[ch];
      }
    }
  }
}

/** x + shift[b, c] over [B, H, W, C], each sum rounded to float32. */
function addShift(x: Float32Array, [b, h, w, c]: readonly number[], shift: Float32Array): Float32Array {
  const out = new Float32Array(x.length);
  const p = h * w;
  for (let bi = 0; bi < b; bi++) {
    for (let i = 0; i < p; i++) {
      const o = (bi * p + i) * c;
      for (let ch = 0; ch < c; ch++) out[o + ch] = x[o + ch] + shift[bi * c + ch];
    }
  }
  return out;
}

/**
 * Backward: with x̂ = (x − μ)·r and n = γ·x̂ + β, dn = dy·σ(n)·(1 + n·(1 − σ(n))) after SiLU (dy without);
 * dβ = Σ dn, dγ = Σ dn·x̂, dx = r·(γ·dn − mean_g(γ·dn) − x̂·mean_g(γ·dn·x̂)). With `shift`, x is x + shift
 * (as in the forward) and dshift[b, c] = Σ_{h,w} dx[b, h, w, c].
 */
export function groupNormBackward(
  dy: Float32Array,
  x0: Float32Array,
  shape: readonly number[],
  gamma: Float32Array,
  beta: Float32Array,
  mean: Float32Array,
  rstd: Float32Array,
  a: GroupNormAttrs,
  dx: Float32Array,
  dgamma: Float32Array,
  dbeta: Float32Array,
  shift?: Float32Array,
  dshift?: Float32Array,
): void {
  const x = shift ? addShift(x0, shape, shift) : x0;
  const [b, h, w, c] = shape;
  const p = h * w;
  const g = a.groups;
  const cg = c / g;
  const n = p * cg;
  const db = new Float64Array(c);
  const dg = new Float64Array(c);
  const dbAll = new Float64Array(c);
  const dgAll = new Float64Array(c);
  const mu = new Float32Array(c);
  const r = new Float32Array(c);
  const m1 = new Float32Array(c);
  const m2 = new Float32Array(c);
  for (let bi = 0; bi < b; bi++) {
    const base = bi * p * c;
    for (let ch = 0; ch < c; ch++) {
      const gi = Math.floor(ch / cg);
      mu[ch] = mean[bi * g + gi];
      r[ch] = rstd[bi * g + gi];
    }
    db.fill(0);
    dg.fill(0);
    // Pass 1: dn (kept in dx), per-channel sums of dn and dn·x̂.
    for (let i = 0; i < p; i++) {
      const o = base + i * c;
      for (let ch = 0; ch < c; ch++) {
        const xh = (x[o + ch] - mu[ch]) * r[ch];
        let d = dy[o + ch];
        if (a.silu) {
          const v = gamma[ch] * xh + beta[ch];
          const s = 1 / (1 + Math.exp(-v));
          d *= s * (1 + v * (1 - s));
        }
        dx[o + ch] = d;
        db[ch] += d;
        dg[ch] += d * xh;
      }
    }
    for (let gi = 0; gi < g; gi++) {
      let t1 = 0;
      let t2 = 0;
      for (let j = gi * cg; j < (gi + 1) * cg; j++) {
        t1 += gamma[j] * db[j];
        t2 += gamma[j] * dg[j];
      }
      for (let j = gi * cg; j < (gi + 1) * cg; j++) {
        m1[j] = t1 / n;
        m2[j] = t2 / n;
      }
    }
    for (let ch = 0; ch < c; ch++) {
      dbAll[ch] += db[ch];
      dgAll[ch] += dg[ch];
    }
    // Pass 2: dx (and its sums over the pixels: dshift).
    db.fill(0);
    for (let i = 0; i < p; i++) {
      const o = base + i * c;
      for (let ch = 0; ch < c; ch++) {
        const xh = (x[o + ch] - mu[ch]) * r[ch];
        const d = Math.fround(r[ch] * (gamma[ch] * dx[o + ch] - m1[ch] - xh * m2[ch]));
        dx[o + ch] = d;
        db[ch] += d;
      }
    }
    if (dshift) { for (let ch = 0; ch < c; ch++) dshift[bi * c + ch] = db[ch]; }
  }
  for (let ch = 0; ch < c; ch++) {
    dgamma[ch] = dgAll[ch];
    dbeta[ch] = dbAll[ch];
  }
}

const GN_FORWARD = "IctGroupNorm";
const GN_BACKWARD = "IctGroupNormGrad";

/**
 * Register the GroupNorm kernels on wasm: their arithmetic is SIMD128 (lib/simd/groupnorm.ts) where C is a
 * multiple of 4, plain JavaScript over the heap otherwise (or with fastPaths.simd off).
 */
function registerGroupNorm(): void {
  tf.registerKernel({
    kernelName: GN_FORWARD,
    backendName: "wasm",
    kernelFunc: ({ inputs, backend, attrs }) => {
      const be = backend as unknown as HeapBackend;
      const { x, gamma, beta, shift } = inputs as Record<string, tf.TensorInfo>;
      const a = attrs as unknown as GroupNormAttrs;
      const stats = [x.shape[0], a.groups];
      const outs = [
        be.makeOutput([...x.shape], "float32"),
        be.makeOutput(stats, "float32"),
        be.makeOutput(stats, "float32"),
      ];
      const [yInfo, meanInfo, rstdInfo] = outs;
      const simdIns = { x, gamma, beta, shift };
      const simdOuts = { y: yInfo, mean: meanInfo, rstd: rstdInfo };
      if (fastPaths.simd && groupNormForwardSimd(backend, simdIns, a, simdOuts)) return outs;
      // Views after every allocation: a growing heap replaces its buffer.
      const [y, mean, rstd] = outs.map((t) => be.typedArrayFromHeap(t));
      const view = (t: tf.TensorInfo) => be.typedArrayFromHeap(t);
      groupNormForward(view(x), x.shape, view(gamma), view(beta), a, y, mean, rstd, shift && view(shift));
      return outs;
    },
  });
  tf.registerKernel({
    kernelName: GN_BACKWARD,
    backendName: "wasm",
    kernelFunc: ({ inputs, backend, attrs }) => {
      const be = backend as unknown as HeapBackend;
      const { dy, x, gamma, beta, mean, rstd, shift } = inputs as Record<string, tf.TensorInfo>;
      const a = attrs as unknown as GroupNormAttrs;
      const outs = [
        be.makeOutput([...x.shape], "float32"),
        be.makeOutput([...gamma.shape], "float32"),
        be.makeOutput([...gamma.shape], "float32"),
        ...(shift ? [be.makeOutput([...shift.shape], "float32")] : []),
      ];
      const [dxInfo, dgInfo, dbInfo, dsInfo] = outs;
      const simdIns = { dy, x, gamma, beta, mean, rstd, shift };
      const simdOuts = { dx: dxInfo, dgamma: dgInfo, dbeta: dbInfo, dshift: dsInfo };
      if (fastPaths.simd && groupNormBackwardSimd(backend, simdIns, a, simdOuts)) return outs;
      const [dx, dgamma, dbeta, dshift] = outs.map((t) => be.typedArrayFromHeap(t));
      const view = (t: tf.TensorInfo) => be.typedArrayFromHeap(t);
      groupNormBackward(
        view(dy),
        view(x),
        x.shape,
        view(gamma),
        view(beta),
        view(mean),
        view(rstd),
        a,
        dx,
        dgamma,
        dbeta,
        shift && view(shift),
        dshift,
      );
      return outs;
    },
  });
}

/** Is the fused GroupNorm kernel there for the current backend? */
export function hasFusedGroupNorm(): boolean {
  return tf.getKernel(GN_FORWARD, tf.getBackend()) !== undefined;
}

/**
 * GroupNorm of x [B, H, W, C] (float32) with per-channel γ, β, then SiLU when `silu`, by the fused kernels
 * (with their gradient). With `shift` ([B, 1, 1, C]), the GroupNorm of x + shift (the residual block's
 * embedding), the broadcast Add and its gradient's Sum inside the kernels. Only where hasFusedGroupNorm().
 */
export function fusedGroupNorm(
  x: tf.Tensor4D,
  gamma: tf.Tensor,
  beta: tf.Tensor,
  attrs: GroupNormAttrs,
  shift?: tf.Tensor4D,
): tf.Tensor4D {
  const [b, , , c] = x.shape;
  if (shift && (!fastPaths.groupNormShift || shift.shape.join() !== [b, 1, 1, c].join())) {
    return fusedGroupNorm(tf.add(x, shift), gamma, beta, attrs);
  }
  const f = tf.customGrad(
    ((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
      const save = args.pop() as tf.GradSaveFunc;
      const [xx, gg, bb, ss] = args as tf.Tensor[];
      const ins: tf.NamedTensorMap = { x: xx, gamma: gg, beta: bb };
      if (ss) ins.shift = ss;
      const [y, mean, rstd] = tf.engine().runKernel(
        GN_FORWARD,
        ins,
        attrs as unknown as tf.NamedAttrMap,
      ) as tf.Tensor[];
      save([xx, gg, bb, mean, rstd, ...(ss ? [ss] : [])]);
      return {
        value: y,
        gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
          const [sx, sg, sb, sm, sr, sShift] = saved;
          const gins: tf.NamedTensorMap = { dy, x: sx, gamma: sg, beta: sb, mean: sm, rstd: sr };
          if (sShift) gins.shift = sShift;
          return tf.engine().runKernel(
            GN_BACKWARD,
            gins,
            attrs as unknown as tf.NamedAttrMap,
          ) as tf.Tensor[];
        },
      };
    }) as unknown as (...args: (tf.Tensor | tf.GradSaveFunc)[]) => { value: tf.Tensor; gradFunc: never },
  );
  return (shift ? f(x, gamma, beta, shift) : f(x, gamma, beta)) as tf.Tensor4D;
}

// ---- FIR resampling by 2, direct, on the wasm heap (SIMD128 where C is a multiple of 4) -------------------
//
// Downsampling with the separable filter f⊗f, stride 2 and `pad` zeros each side, and its adjoint (which, with
// 2f per axis, is EDM's upsampling conv_transpose2d(x, 4·f⊗f, stride 2, padding ⌊(T−1)/2⌋)). As TF.js ops each
// direction was ~10 pads, slices, products and sums plus their gradients; here each is one pass over the
// output with the channels innermost. Each kernel's gradient is the other.

interface FirAttrs {
  /** 1-D taps, gain included. */
  taps: number[];
  pad: number;
  /** The full-resolution size [H, W] (the adjoint's output; the forward's input). */
  size: [number, number];
}

/** The low-resolution size for a full-resolution n: ⌊(n + 2·pad − T)/2⌋ + 1. */
const firLow = (n: number, a: FirAttrs) => Math.floor((n + 2 * a.pad - a.taps.length) / 2) + 1;

/**
 * y[b, i, j, c] = Σ_{u,v} f[u]·f[v]·x[b, 2i + u − pad, 2j + v − pad, c] (x zero outside) when `adjoint` is
 * false; with `adjoint`, x[b, 2i + u − pad, 2j + v − pad, c] += f[u]·f[v]·y[b, i, j, c] into a zeroed x.
 */
export function firResample(
  hi: Float32Array,
  lo: Float32Array,
  [b, h, w, c]: readonly number[],
  a: FirAttrs,
  adjoint: boolean,
): void {
  const f = a.taps;
  const t = f.length;
  const [oh, ow] = [firLow(h, a), firLow(w, a)];
  (adjoint ? hi : lo).fill(0);
  for (let bi = 0; bi < b; bi++) {
    for (let i = 0; i < oh; i++) {
      for (let j = 0; j < ow; j++) {
        const lo0 = ((bi * oh + i) * ow + j) * c;
        for (let u = 0; u < t; u++) {
          const r = 2 * i + u - a.pad;
          if (r < 0 || r >= h) continue;
          for (let v = 0; v < t; v++) {
            const s = 2 * j + v - a.pad;
            if (s < 0 || s >= w) continue;
            const k = f[u] * f[v];
            const hi0 = ((bi * h + r) * w + s) * c;
            if (adjoint) { for (let ch = 0; ch < c; ch++) hi[hi0 + ch] += k * lo[lo0 + ch]; }
            else for (let ch = 0; ch < c; ch++) lo[lo0 + ch] += k * hi[hi0 + ch];
          }
        }
      }
    }
  }
}

const FIR_DOWN = "IctFirDown";
const FIR_DOWN_ADJOINT = "IctFirDownAdjoint";

function registerFir(): void {
  for (const [kernelName, adjoint] of [[FIR_DOWN, false], [FIR_DOWN_ADJOINT, true]] as const) {
    tf.registerKernel({
      kernelName,
      backendName: "wasm",
      kernelFunc: ({ inputs, backend, attrs }) => {
        const be = backend as unknown as HeapBackend;
        const { x } = inputs as Record<string, tf.TensorInfo>;
        const a = attrs as unknown as FirAttrs;
        const [b, , , c] = x.shape;
        const [h, w] = a.size;
        const out = be.makeOutput(adjoint ? [b, h, w, c] : [b, firLow(h, a), firLow(w, a), c], "float32");
        if (fastPaths.simd) {
          be.typedArrayFromHeap(out).fill(0);
          const [hi, lo] = adjoint ? [out, x] : [x, out];
          if (firResampleSimd(backend, hi, lo, a.taps, a.pad, adjoint)) return out;
        }
        const [xv, ov] = [be.typedArrayFromHeap(x), be.typedArrayFromHeap(out)];
        if (adjoint) firResample(ov, xv, [b, h, w, c], a, true);
        else firResample(xv, ov, [b, h, w, c], a, false);
        return out;
      },
    });
  }
}

/** Is the direct FIR kernel there for the current backend? */
export function hasFusedFir(): boolean {
  return tf.getKernel(FIR_DOWN, tf.getBackend()) !== undefined;
}

/**
 * Downsampling (adjoint false: x is [B, H, W, C] at size [H, W]) or its adjoint (x is the low-resolution
 * [B, ⌊(H + 2·pad − T)/2⌋ + 1, …, C], the result is [B, H, W, C]), with gradients. Only where hasFusedFir().
 */
export function fusedFir(x: tf.Tensor4D, attrs: FirAttrs, adjoint: boolean): tf.Tensor4D {
  const low = [firLow(attrs.size[0], attrs), firLow(attrs.size[1], attrs)];
  const [h, w] = adjoint ? low : attrs.size;
  if (x.shape[1] !== h || x.shape[2] !== w) {
    throw new Error(`FIR ${adjoint ? "adjoint" : "downsampling"}: input [${x.shape}] for size ${attrs.size}`);
  }
  const run = (t: tf.Tensor, adj: boolean) =>
    tf.engine().runKernel(
      adj ? FIR_DOWN_ADJOINT : FIR_DOWN,
      { x: t },
      attrs as unknown as tf.NamedAttrMap,
    ) as tf.Tensor;
  const f = tf.customGrad(
    ((xx: tf.Tensor) => ({
      value: run(xx, adjoint),
      gradFunc: (dy: tf.Tensor) => run(dy, !adjoint),
    })) as unknown as (...args: (tf.Tensor | tf.GradSaveFunc)[]) => { value: tf.Tensor; gradFunc: never },
  );
  return f(x) as tf.Tensor4D;
}

// ---- Adam / RAdam update and the gradient's squared norm, one pass each, in JavaScript ------------------
//
// The optimizer's element-wise work as TF.js ops is ~12 kernels per parameter tensor (276 tensors in
// ncsnpp-small-32), each a separate pass with its own output; the gradient norm is a Square and a Sum per
// tensor. Here one kernel per tensor does the whole update, and one kernel sums every gradient's squares.

/** The host scalars of one update (lib/train/optim.ts computes them), as the kernel's attributes. */
export interface AdamUpdateAttrs {
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** θ ← θ − stepSize·m/denom (or θ ← θ − stepSize·m when not adaptive). */
  stepSize: number;
  /** false: RAdam before rectification (θ ← θ − stepSize·m). */
  adaptive: boolean;
  /** Adam's denom √v/√(1−β2^t) + ε (then sqrtBc2 = √(1−β2^t)); RAdam's is √v + ε. */
  adam: boolean;
  sqrtBc2: number;
}

/**
 * One Adam/RAdam update of a parameter tensor, into pOut, mOut, vOut (which may be p, m, v). Every step is a
 * float32 operation as the TF.js ops of lib/train/optim.ts do it, in the same order, with the same float32
 * constants (Math.fround after each double operation gives the correctly rounded float32 result for +, −, ×,
 * ÷ and √), so the result is bit-identical to those ops on wasm and cpu:
 *   g ← g + λθ;  m ← β1·m + (1−β1)·g;  v ← β2·v + (1−β2)·g²;  θ ← θ − s·m/denom.
 */
export function adamUpdate(
  p: Float32Array,
  m: Float32Array,
  v: Float32Array,
  g: Float32Array,
  a: AdamUpdateAttrs,
  pOut: Float32Array,
  mOut: Float32Array,
  vOut: Float32Array,
): void {
  const f = Math.fround;
  const [b1, b2, c1, c2] = [f(a.beta1), f(a.beta2), f(1 - a.beta1), f(1 - a.beta2)];
  const [wd, eps, step, sb] = [f(a.weightDecay), f(a.eps), f(a.stepSize), f(a.sqrtBc2)];
  const decay = a.weightDecay !== 0;
  for (let i = 0; i < p.length; i++) {
    const pi = p[i];
    const gi = decay ? f(g[i] + f(pi * wd)) : g[i];
    const mi = f(f(m[i] * b1) + f(gi * c1));
    const vi = f(f(v[i] * b2) + f(f(gi * gi) * c2));
    let dir = mi;
    if (a.adaptive) {
      const root = f(Math.sqrt(vi));
      dir = f(mi / (a.adam ? f(f(root / sb) + eps) : f(root + eps)));
    }
    mOut[i] = mi;
    vOut[i] = vi;
    pOut[i] = pi - f(dir * step);
  }
}

/** Σ x² over every array, accumulated in float64. */
export function sumOfSquares(xs: readonly Float32Array[]): number {
  let total = 0;
  for (const x of xs) {
    let s = 0;
    for (let i = 0; i < x.length; i++) s += x[i] * x[i];
    total += s;
  }
  return total;
}

const ADAM_UPDATE = "IctAdamUpdate";
const SUM_OF_SQUARES = "IctSumOfSquares";

/** Read-write access to a kernel's float32 tensors: wasm's heap, or cpu's host arrays. */
function hostAccess(backend: string, be: unknown) {
  if (backend === "wasm") {
    const hb = be as HeapBackend;
    return {
      output: (shape: number[]) => hb.makeOutput(shape, "float32"),
      view: (t: tf.TensorInfo) => hb.typedArrayFromHeap(t),
    };
  }
  const cb = be as {
    readSync(id: unknown): Float32Array;
    makeTensorInfo(shape: number[], dtype: "float32", values: Float32Array): tf.TensorInfo;
  };
  const made = new Map<unknown, Float32Array>(); // the arrays of this call's outputs
  return {
    output: (shape: number[]) => {
      const values = new Float32Array(shape.reduce((a, b) => a * b, 1));
      const info = cb.makeTensorInfo(shape, "float32", values);
      made.set(info.dataId, values);
      return info;
    },
    view: (t: tf.TensorInfo) => made.get(t.dataId) ?? cb.readSync(t.dataId),
  };
}

/** The optimizer and gradient-norm kernels on wasm and cpu (idempotent). */
export function registerOptimizerKernels(): void {
  for (const backend of ["wasm", "cpu"]) {
    if (tf.getKernel(ADAM_UPDATE, backend)) continue;
    tf.registerKernel({
      kernelName: ADAM_UPDATE,
      backendName: backend,
      kernelFunc: ({ inputs, backend: be, attrs }) => {
        const io = hostAccess(backend, be);
        const { p, m, v, g } = inputs as Record<string, tf.TensorInfo>;
        const outs = [io.output([...p.shape]), io.output([...p.shape]), io.output([...p.shape])];
        if (simdOn(backend)) {
          adamUpdateSimd(be, [p, m, v, g], outs, attrs as unknown as AdamUpdateAttrs);
          return outs;
        }
        // Views after every allocation: a growing wasm heap replaces its buffer.
        const [po, mo, vo] = outs.map(io.view);
        adamUpdate(
          io.view(p),
          io.view(m),
          io.view(v),
          io.view(g),
          attrs as unknown as AdamUpdateAttrs,
          po,
          mo,
          vo,
        );
        return outs;
      },
    });
    tf.registerKernel({
      kernelName: SUM_OF_SQUARES,
      backendName: backend,
      kernelFunc: ({ inputs, backend: be }) => {
        const io = hostAccess(backend, be);
        const out = io.output([]);
        const xs = Object.values(inputs as Record<string, tf.TensorInfo>);
        const total = simdOn(backend)
          ? xs.reduce((sum, x) => sum + optimizerSimd(be).sumsq(heapOffset(be, x), size1(x.shape)), 0)
          : sumOfSquares(xs.map(io.view));
        io.view(out)[0] = total;
        return out;
      },
    });
  }
}

/** Does `backend` run the kit's SIMD128 kernels (wasm, with fastPaths.simd on)? */
function simdOn(backend: string): boolean {
  return backend === "wasm" && fastPaths.simd;
}

/** adamUpdate by lib/simd/optimizer.wat on the wasm heap: the same float32 operations, four lanes at a time. */
function adamUpdateSimd(
  be: unknown,
  [p, m, v, g]: tf.TensorInfo[],
  [po, mo, vo]: tf.TensorInfo[],
  a: AdamUpdateAttrs,
): void {
  const f = Math.fround;
  const at = (t: tf.TensorInfo) => heapOffset(be, t);
  const flags = (a.weightDecay !== 0 ? ADAM_DECAY : 0) | (a.adaptive ? ADAM_ADAPTIVE : 0) |
    (a.adam ? ADAM_ADAM : 0);
  optimizerSimd(be).adam(
    at(p),
    at(m),
    at(v),
    at(g),
    at(po),
    at(mo),
    at(vo),
    size1(p.shape),
    a.beta1,
    a.beta2,
    f(1 - a.beta1),
    f(1 - a.beta2),
    a.weightDecay,
    a.eps,
    a.stepSize,
    a.sqrtBc2,
    flags,
  );
}

/**
 * Does the fused optimizer kernel update a tensor of `size` elements on the current backend? Always with the
 * SIMD kernel (wasm); the JavaScript loop only up to `maxJsSize` (past that wasm's element-wise ops are
 * faster: 56M parameters of ncsnpp-cifar10 took 1.74 s by the loop, 0.57 s by ~12 ops per tensor, and
 * 0.1 s by the SIMD kernel).
 */
export function fusedAdamCovers(size: number, maxJsSize: number): boolean {
  return hasFusedAdam() && (size <= maxJsSize || simdOn(tf.getBackend()));
}

const EMA_UPDATE = "IctEmaUpdate";

/**
 * target·decay + source·(1 − decay) as one SIMD pass on wasm (fastPaths.simd), else as TF.js ops; the same
 * float32 operations either way (bit-identical).
 */
export function emaOf(target: tf.Tensor, source: tf.Tensor, decay: number): tf.Tensor {
  if (simdOn(tf.getBackend()) && target.dtype === "float32" && source.dtype === "float32") {
    return tf.engine().runKernel(EMA_UPDATE, { target, source }, { decay }) as tf.Tensor;
  }
  return tf.add(tf.mul(target, decay), tf.mul(source, 1 - decay));
}

function registerEma(): void {
  tf.registerKernel({
    kernelName: EMA_UPDATE,
    backendName: "wasm",
    kernelFunc: ({ inputs, backend: be, attrs }) => {
      const { target, source } = inputs as Record<string, tf.TensorInfo>;
      const { decay } = attrs as unknown as { decay: number };
      const out = (be as HeapBackend).makeOutput([...target.shape], "float32");
      const at = (t: tf.TensorInfo) => heapOffset(be, t);
      optimizerSimd(be).ema(
        at(target),
        at(source),
        at(out),
        size1(target.shape),
        decay,
        Math.fround(1 - decay),
      );
      return out;
    },
  });
}

/** Is the fused optimizer kernel there for the current backend (and fastPaths.optimizer on)? */
export function hasFusedAdam(): boolean {
  return fastPaths.optimizer && tf.getKernel(ADAM_UPDATE, tf.getBackend()) !== undefined;
}

/** [θ', m', v'] of one update (float32 tensors of one shape); only where hasFusedAdam(). */
export function fusedAdamUpdate(
  p: tf.Tensor,
  m: tf.Tensor,
  v: tf.Tensor,
  g: tf.Tensor,
  attrs: AdamUpdateAttrs,
): tf.Tensor[] {
  return tf.engine().runKernel(
    ADAM_UPDATE,
    { p, m, v, g },
    attrs as unknown as tf.NamedAttrMap,
  ) as tf.Tensor[];
}

/**
 * Σ x² over all of `xs` (float32 tensors) as a float32 scalar: one kernel where the backend has it (sums in
 * float64) and fastPaths.gradNorm is on, else a Sum of a Square per tensor, concatenated and summed.
 */
export function sumOfSquaresOf(xs: readonly tf.Tensor[]): tf.Scalar {
  if (
    fastPaths.gradNorm && tf.getKernel(SUM_OF_SQUARES, tf.getBackend()) &&
    xs.every((x) => x.dtype === "float32")
  ) {
    return tf.engine().runKernel(
      SUM_OF_SQUARES,
      Object.fromEntries(xs.map((x, i) => [`x${i}`, x])),
    ) as tf.Scalar;
  }
  // concat, not addN: webgpu's AddN binds every input at once and fails past 8 (llvmpipe's limit).
  return tf.tidy(() => tf.sum(tf.concat(xs.map((g) => tf.sum(tf.square(g)).reshape([1])))));
}
