// The optimizer's SIMD128 passes (lib/simd/optimizer.wat) on TF.js's wasm heap.
import { simdModule } from "./heap.ts";
import { WASM } from "./optimizer.wasm.ts";

/** optimizer.wat's exports: pointers are heap byte offsets, n element counts. */
export interface OptimizerSimd {
  sumsq(x: number, n: number): number;
  adam(
    p: number,
    m: number,
    v: number,
    g: number,
    pOut: number,
    mOut: number,
    vOut: number,
    n: number,
    beta1: number,
    beta2: number,
    oneMinusBeta1: number,
    oneMinusBeta2: number,
    weightDecay: number,
    eps: number,
    stepSize: number,
    sqrtBc2: number,
    flags: number,
  ): void;
  ema(target: number, source: number, out: number, n: number, decay: number, oneMinusDecay: number): void;
}

/** adam's flags. */
export const ADAM_DECAY = 1, ADAM_ADAPTIVE = 2, ADAM_ADAM = 4;

/** The kernels on `backend`'s heap (a TF.js wasm backend). */
export function optimizerSimd(backend: unknown): OptimizerSimd {
  return simdModule<OptimizerSimd>(backend, WASM);
}
