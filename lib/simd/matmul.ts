// Dense matrix products with cheap output rows (lib/simd/matmul.wat) on TF.js's wasm heap, single-threaded.
// XNNPACK's convolution (lib/wasm_kernels.ts batchMatMulByConv) transposes and packs a weight it has not seen
// (every training step makes new ones) and dispatches to its thread pool: [1, 512]·[512, 256], a time-embedding
// projection of ncsnpp-cifar10 at batch 1, costs it 1.5–2 ms, and this kernel 0.04–0.07 ms. The results are
// XNNPACK's bit for bit: its wasm GEMM also sums k in order, from a zero bias, with separate float32 products
// and sums (tfjs-backend-wasm 4.22; tests/simd_matmul_test.ts).
import type * as tf from "@tensorflow/tfjs";
import { heapOffset, simdModule, withScratch } from "./heap.ts";
import { WASM } from "./matmul.wasm.ts";

/**
 * Products whose output rows cost at most this many multiply-adds (K·N) run here (with XNNPACK's bits, the
 * bound moves time, not values). 768·1536 takes every dense layer of the kit's networks
 * (the largest: ADM-ImageNet64's 768 → 1536 embedding projections; ncsnpp-cifar10's are at most 512 × 512) and
 * leaves the Inception network's 2048 → 1008 logits (FID batches of hundreds of rows) to XNNPACK. Measured on
 * 2 threads with a new weight each call (training), convolution vs this kernel: [M, 512]·[512, 256] at M = 1
 * 1.53 vs 0.07 ms, 8: 1.16 vs 0.16, 64: 1.47 vs 0.71, 256: 2.41 vs 2.79; [M, 768]·[768, 1536] at M = 1 14.1
 * vs 0.86, 64: 13.9 vs 9.6, 256: 23.5 vs 34.5. From about 200 rows XNNPACK's two threads win, by 1.1–1.6× at
 * 256, and by 2–3.4× with a weight it packed before (sampling at batch 256: [256, 512]·[512, 256] 1.38 vs 2.93
 * ms, a small share of that forward pass). Attention's products (batched, K·N = HW·d): 16×16's
 * [256, 256]·[256, 256]ᵀ 3.10 vs 1.55 ms, 32×32's [1024, 64]·[64, 1024] 3.7 vs 6.1 ms.
 */
export const SIMD_MATMUL_ROW_MACS = 768 * 1536;

/**
 * …and at most this many rows M per product: past it XNNPACK's two threads win (see above; sampling at batch
 * 256, ADM's 32×32 attention). Choosing by M keeps a sample's result independent of its batch only because the
 * two paths give the same bits (tests/simd_matmul_test.ts checks that they do).
 */
export const SIMD_MATMUL_MAX_ROWS = 128;

/** matmul.wat's exports: pointers are heap byte offsets, strides and sizes in elements. */
interface MatMulSimd {
  transpose(src: number, dst: number, rows: number, cols: number): void;
  matmul(a: number, b: number, c: number, m: number, k: number, n: number, sam: number, sak: number): void;
}

/** One BatchMatMul's sizes: `batch` entries, a's and b's own counts (1: broadcast), op(a) [M, K], op(b) [K, N]. */
export interface MatMulDims {
  batch: number;
  aBatch: number;
  bBatch: number;
  m: number;
  k: number;
  n: number;
}

/**
 * out[e] = op(a[e])·op(b[e]) for each batch entry e (a or b with one entry is broadcast), op = transpose or
 * not, all float32 tensors on `backend`'s heap (a TF.js wasm backend), out [batch, M, N]. Each element is
 * summed over k in order in float32 (matmul.wat), the same whatever M. A transposed b is transposed into
 * scratch memory first (once when it is broadcast); a transposed a is read through strides.
 */
export function matMulSimd(
  backend: unknown,
  a: tf.TensorInfo,
  b: tf.TensorInfo,
  d: MatMulDims,
  transposeA: boolean,
  transposeB: boolean,
  out: tf.TensorInfo,
): void {
  const { m, k, n } = d;
  const mm = simdModule<MatMulSimd>(backend, WASM);
  const [pa, pb, pc] = [heapOffset(backend, a), heapOffset(backend, b), heapOffset(backend, out)];
  const [sam, sak] = transposeA ? [1, m] : [k, 1]; // a[e] is [K, M] when transposed
  const bAt = (e: number) => pb + 4 * (d.bBatch === 1 ? 0 : e) * k * n;
  const products = (bOf: (e: number) => number) => {
    // Against one b, the entries of a row-major a are the rows of one product.
    if (d.bBatch === 1 && d.aBatch === d.batch && !transposeA) {
      mm.matmul(pa, bOf(0), pc, d.batch * m, k, n, sam, sak);
      return;
    }
    for (let e = 0; e < d.batch; e++) {
      mm.matmul(pa + 4 * (d.aBatch === 1 ? 0 : e) * m * k, bOf(e), pc + 4 * e * m * n, m, k, n, sam, sak);
    }
  };
  if (!transposeB || k * n === 0) return products(bAt);
  withScratch(backend, 4 * k * n, (scratch) => {
    let held = -1; // the b entry the scratch holds, as [K, N]
    products((e) => {
      if (bAt(e) !== held) mm.transpose(bAt(e), scratch, n, k); // b[e] is [N, K]
      held = bAt(e);
      return scratch;
    });
  });
}
