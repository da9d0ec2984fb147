// The input gradient of a stride-1 convolution as one GEMM and a col2im (lib/simd/col2im.wat), on wasm.
//
// TF.js's way (lib/wasm_kernels.ts conv2dInputGradient) is a forward convolution of dy with the filter flipped
// and its channel axes swapped: a new [KH, KW, Co, Ci] filter every step, which XNNPACK packs on every call
// (~4 ms for [3, 3, 256, 256], as long as the whole product at 8×8). Here the filter needs no copy:
//   C[(i, j, c), n] = Σ_co W[i, j, c, co]·dyᵀ[co, n]
// is a 1×1 convolution of W itself, read as an image of KH·KW·Ci pixels with Co channels, by dyᵀ ([Co, N],
// N = B·OH·OW output positions) as the filter, which is what XNNPACK packs: N·Co floats instead of
// KH·KW·Ci·Co. col2im then adds the KH·KW shifted planes of C into dx. It pays where dyᵀ is at most an eighth
// of W, 8·N ≤ KH·KW·Ci (3×3 over 256 channels: 8×8 and 16×16 maps at batch 1). Measured on 2 threads, per
// input gradient (a fresh filter each call, as after an optimizer step), flipped-filter conv vs this path:
// [1,8,8,256]→256 6.3 vs 2.1 ms, [1,16,16,256]→256 10.7 vs 7.6 ms, [1,16,16,512]→256 23.4 vs 16.8 ms,
// [1,8,8,512]→256 14.4 vs 4.4 ms; past the bound it loses: [1,32,32,256]→256 28.6 vs 30.8 ms,
// [1,32,32,512]→256 59.9 vs 62.4 ms, [8,8,8,128]→128 4.0 vs 4.4 ms.
import * as tf from "@tensorflow/tfjs";
import { type HeapBackend, heapOffset, simdModule } from "./heap.ts";
import { WASM } from "./col2im.wasm.ts";

/** col2im.wat's export: heap byte offsets and sizes. */
interface Col2imSimd {
  col2im(
    cols: number,
    dx: number,
    b: number,
    h: number,
    w: number,
    ci: number,
    oh: number,
    ow: number,
    kh: number,
    kw: number,
    top: number,
    left: number,
  ): void;
}

/** The geometry of one col2im: input [B, H, W, Ci], output positions OH × OW, a KH × KW filter, stride 1. */
export interface Col2imAttrs {
  b: number;
  h: number;
  w: number;
  ci: number;
  oh: number;
  ow: number;
  kh: number;
  kw: number;
  /** The forward convolution's padding above and left of x. */
  top: number;
  left: number;
}

const COL2IM = "IctCol2im";

/**
 * dx[b, y, x, c] = Σ_{i, j} cols[(i·KW + j)·Ci + c, (b, y + top − i, x + left − j)] over valid positions, the
 * taps summed in the order (i, j) with float32 additions (the SIMD kernel adds in the same order).
 */
export function col2im(cols: Float32Array, a: Col2imAttrs, dx: Float32Array): void {
  const n = a.b * a.oh * a.ow;
  dx.fill(0);
  for (let bi = 0; bi < a.b; bi++) {
    for (let i = 0; i < a.kh; i++) {
      for (let j = 0; j < a.kw; j++) {
        for (let oy = 0; oy < a.oh; oy++) {
          const y = oy - a.top + i;
          if (y < 0 || y >= a.h) continue;
          for (let ox = 0; ox < a.ow; ox++) {
            const x = ox - a.left + j;
            if (x < 0 || x >= a.w) continue;
            const src = ((i * a.kw + j) * a.ci) * n + (bi * a.oh + oy) * a.ow + ox;
            const dst = ((bi * a.h + y) * a.w + x) * a.ci;
            for (let c = 0; c < a.ci; c++) dx[dst + c] = Math.fround(dx[dst + c] + cols[src + c * n]);
          }
        }
      }
    }
  }
}

/** Register the col2im kernel on wasm: SIMD where Ci is a multiple of 4, the JavaScript loop otherwise. */
export function registerCol2im(): void {
  if (tf.getKernel(COL2IM, "wasm")) return;
  tf.registerKernel({
    kernelName: COL2IM,
    backendName: "wasm",
    kernelFunc: ({ inputs, backend: be, attrs }) => {
      const hb = be as unknown as HeapBackend;
      const { cols } = inputs as Record<string, tf.TensorInfo>;
      const a = attrs as unknown as Col2imAttrs;
      const out = hb.makeOutput([a.b, a.h, a.w, a.ci], "float32");
      if (a.ci % 4 !== 0) {
        col2im(hb.typedArrayFromHeap(cols), a, hb.typedArrayFromHeap(out));
        return out;
      }
      hb.typedArrayFromHeap(out).fill(0);
      simdModule<Col2imSimd>(be, WASM).col2im(
        heapOffset(be, cols),
        heapOffset(be, out),
        a.b,
        a.h,
        a.w,
        a.ci,
        a.oh,
        a.ow,
        a.kh,
        a.kw,
        a.top,
        a.left,
      );
      return out;
    },
  });
}

/** Does the GEMM + col2im input gradient apply (wasm, stride 1, and dyᵀ at most an eighth of the filter)? */
export function inputGradientByGemmApplies(
  n: number,
  [kh, kw, ci]: readonly number[],
  strides: [number, number],
): boolean {
  return tf.getBackend() === "wasm" && strides[0] === 1 && strides[1] === 1 && 8 * n <= kh * kw * ci &&
    tf.getKernel(COL2IM, "wasm") !== undefined;
}

/** dL/dx of a stride-1 conv2d (NHWC) from dy [B, OH, OW, Co] and filter [KH, KW, Ci, Co], by GEMM + col2im. */
export function inputGradientByGemm(
  dy: tf.Tensor4D,
  filter: tf.Tensor4D,
  inputShape: readonly number[],
  pad: { top: number; left: number },
): tf.Tensor4D {
  const [b, h, w, ci] = inputShape;
  const [kh, kw, , co] = filter.shape;
  const [oh, ow] = [dy.shape[1], dy.shape[2]];
  const n = b * oh * ow;
  return tf.tidy(() => {
    // dyᵀ [Co, N] as a 1×1 filter: IctFlipFilter of a 1×1 "filter" [1, 1, N, Co] is its transpose (SIMD).
    const dyT = tf.engine().runKernel("IctFlipFilter", { filter: dy.reshape([1, 1, n, co]) }) as tf.Tensor4D;
    const cols = tf.conv2d(filter.reshape([1, kh * kw * ci, 1, co]) as tf.Tensor4D, dyT, 1, "valid"); // [1, KH·KW·Ci, 1, N]
    const attrs: Col2imAttrs = { b, h, w, ci, oh, ow, kh, kw, top: pad.top, left: pad.left };
    return tf.engine().runKernel(COL2IM, { cols }, attrs as unknown as tf.NamedAttrMap) as tf.Tensor4D;
  });
}
