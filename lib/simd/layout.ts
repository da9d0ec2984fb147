// The conv gradients' data-layout kernels (lib/simd/layout.wat) on TF.js's wasm heap: the filter gradient's
// im2col (IctIm2colTransposed) and the input gradient's flipped filter (IctFlipFilter), both transposes. 5–6×
// faster than the JavaScript loops of lib/wasm_kernels.ts, which they replace on wasm: Pᵀ of a [1, 32, 32, 256]
// 3×3 in 1.2 ms instead of 6.1, the flip of a [3, 3, 256, 256] filter in 0.31 ms instead of 1.9.
import type * as tf from "@tensorflow/tfjs";
import { fastPaths } from "../wasm_kernels.ts";
import { heapOffset, simdModule, withScratch } from "./heap.ts";
import { WASM } from "./layout.wasm.ts";

/** layout.wat's exports: pointers are heap byte offsets. */
interface LayoutSimd {
  im2col(
    x: number,
    b: number,
    h: number,
    w: number,
    ci: number,
    kh: number,
    kw: number,
    sh: number,
    sw: number,
    top: number,
    left: number,
    oh: number,
    ow: number,
    out: number,
    scratch: number,
  ): void;
  flip(w: number, kh: number, kw: number, ci: number, co: number, out: number, table: number): void;
}

/** The windows of im2colTransposed (lib/wasm_kernels.ts): filter size, strides, zeros above and left, output size. */
export interface Im2colWindows {
  kh: number;
  kw: number;
  sh: number;
  sw: number;
  top: number;
  left: number;
  oh: number;
  ow: number;
}

/**
 * im2colTransposed of x (float32 [B, H, W, Ci]) into out ([KH·KW·Ci, B·OH·OW]), both on `backend`'s heap (a
 * TF.js wasm backend). False, with nothing written, when fastPaths.simd is off or there is nothing to write.
 */
export function im2colTransposedSimd(
  backend: unknown,
  x: tf.TensorInfo,
  a: Im2colWindows,
  out: tf.TensorInfo,
): boolean {
  const [b, h, w, ci] = x.shape;
  const n = b * a.oh * a.ow;
  if (!fastPaths.simd || x.dtype !== "float32" || n * ci * a.kh * a.kw === 0) return false;
  const m = simdModule<LayoutSimd>(backend, WASM);
  // A zero row (the padding's source), then the table of one tap's column sources.
  withScratch(backend, 4 * (ci + n), (scratch) => {
    m.im2col(
      heapOffset(backend, x),
      b,
      h,
      w,
      ci,
      a.kh,
      a.kw,
      a.sh,
      a.sw,
      a.top,
      a.left,
      a.oh,
      a.ow,
      heapOffset(backend, out),
      scratch,
    );
  });
  return true;
}

/**
 * flipFilterInto of filter (float32 [KH, KW, Ci, Co]) into out ([KH, KW, Co, Ci]), both on `backend`'s heap.
 * False, with nothing written, when fastPaths.simd is off or the filter is empty.
 */
export function flipFilterSimd(backend: unknown, filter: tf.TensorInfo, out: tf.TensorInfo): boolean {
  const [kh, kw, ci, co] = filter.shape;
  if (!fastPaths.simd || filter.dtype !== "float32" || kh * kw * ci * co === 0) return false;
  const m = simdModule<LayoutSimd>(backend, WASM);
  withScratch(backend, 4 * ci, (table) => {
    m.flip(heapOffset(backend, filter), kh, kw, ci, co, heapOffset(backend, out), table);
  });
  return true;
}
