// Column sums (lib/simd/reduce.wat) on TF.js's wasm heap: Sum over every axis but the last. TF.js's wasm Sum
// reduces only innermost axes, so it first transposes [B, H, W, C] to [C, B·H·W]: a conv bias gradient of
// [1, 32, 32, 256] took 0.74 ms, the column sum ~0.05 ms.
import type * as tf from "@tensorflow/tfjs";
import { heapOffset, simdModule } from "./heap.ts";
import { WASM } from "./reduce.wasm.ts";

interface ReduceSimd {
  colsum(x: number, rows: number, c: number, out: number): void;
}

/** out[c] = Σ_r x[r, c] for x of `rows` × C floats (C = out's size), each channel summed in row order. */
export function columnSumSimd(backend: unknown, x: tf.TensorInfo, rows: number, out: tf.TensorInfo): void {
  const c = out.shape.reduce((a, b) => a * b, 1);
  simdModule<ReduceSimd>(backend, WASM).colsum(heapOffset(backend, x), rows, c, heapOffset(backend, out));
}
