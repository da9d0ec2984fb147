// FIR resampling by 2 (lib/simd/fir.wat) on TF.js's wasm heap: lib/wasm_kernels.ts firResample with the
// channels four at a time, in float32 (the JavaScript loop adds in float64 and rounds each store).
import type * as tf from "@tensorflow/tfjs";
import { heapOffset, heapView, simdModule, withScratch } from "./heap.ts";
import { WASM } from "./fir.wasm.ts";

interface FirSimd {
  fir(
    hi: number,
    lo: number,
    b: number,
    h: number,
    w: number,
    c: number,
    oh: number,
    ow: number,
    k: number,
    t: number,
    pad: number,
    adjoint: number,
  ): void;
}

/**
 * firResample's sums into `out` (zeroed by the caller): `hi` is [B, H, W, C], `lo` is [B, OH, OW, C]; `adjoint`
 * writes hi, else lo. False, with nothing written, where C is not a multiple of 4 or a size is 0.
 */
export function firResampleSimd(
  backend: unknown,
  hi: tf.TensorInfo,
  lo: tf.TensorInfo,
  taps: readonly number[],
  pad: number,
  adjoint: boolean,
): boolean {
  const [b, h, w, c] = hi.shape;
  const [oh, ow] = [lo.shape[1], lo.shape[2]];
  const t = taps.length;
  if (c % 4 !== 0 || b * h * w * c * oh * ow * t === 0) return false;
  withScratch(backend, 4 * t * t, (k) => {
    const table = heapView(backend, Float32Array, k, t * t);
    for (let u = 0; u < t; u++) for (let v = 0; v < t; v++) table[u * t + v] = taps[u] * taps[v];
    simdModule<FirSimd>(backend, WASM).fir(
      heapOffset(backend, hi),
      heapOffset(backend, lo),
      b,
      h,
      w,
      c,
      oh,
      ow,
      k,
      t,
      pad,
      adjoint ? 1 : 0,
    );
  });
  return true;
}
