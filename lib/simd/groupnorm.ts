// GroupNorm (+ SiLU) by SIMD128 (lib/simd/groupnorm.wat) on TF.js's wasm heap: the IctGroupNorm and
// IctGroupNormGrad kernels of lib/wasm_kernels.ts, one wasm call each, for C a multiple of 4.
import type * as tf from "@tensorflow/tfjs";
import { heapOffset, simdModule, withScratch } from "./heap.ts";
import { WASM } from "./groupnorm.wasm.ts";

/** groupnorm.wat's exports: pointers are heap byte offsets; `work` is scratch of workBytes(C) bytes. */
export interface GroupNormSimd {
  forward(
    x: number,
    shift: number,
    gamma: number,
    beta: number,
    y: number,
    mean: number,
    rstd: number,
    batch: number,
    pixels: number,
    channels: number,
    groups: number,
    eps: number,
    flags: number,
    work: number,
  ): void;
  backward(
    dy: number,
    x: number,
    shift: number,
    gamma: number,
    beta: number,
    mean: number,
    rstd: number,
    dx: number,
    dgamma: number,
    dbeta: number,
    dshift: number,
    batch: number,
    pixels: number,
    channels: number,
    groups: number,
    flags: number,
    work: number,
  ): void;
}

/** The kernels' flags: SiLU after the affine map; shift[b, c] added to x first. */
export const GN_SILU = 1, GN_SHIFT = 2;

/** The kernels' attributes (lib/wasm_kernels.ts GroupNormAttrs). */
export interface GroupNormSimdAttrs {
  groups: number;
  eps: number;
  silu: boolean;
}

/** Scratch for a call with C channels: e^x's constants (208 bytes), then 28·C (forward) or 56·C bytes. */
export const workBytes = { forward: (c: number) => 208 + 28 * c, backward: (c: number) => 208 + 56 * c };

/** The module on `backend`'s heap (a TF.js wasm backend). */
export function groupNormSimd(backend: unknown): GroupNormSimd {
  return simdModule<GroupNormSimd>(backend, WASM);
}

/** [B, H·W, C] of an NHWC x the kernels take (C a multiple of 4 and of the groups, x not empty), or null. */
function layout(x: tf.TensorInfo, groups: number): [number, number, number] | null {
  const [b, h, w, c] = x.shape;
  const ok = x.shape.length === 4 && x.dtype === "float32" && c % 4 === 0 && c % groups === 0 &&
    b * h * w * c > 0;
  return ok ? [b, h * w, c] : null;
}

/**
 * IctGroupNorm's arithmetic on the heap: y, mean and rstd (outputs already allocated there) from x, γ, β and
 * the optional shift [B, 1, 1, C]. False, with nothing written, where the SIMD kernel does not apply.
 */
export function groupNormForwardSimd(
  backend: unknown,
  ins: { x: tf.TensorInfo; gamma: tf.TensorInfo; beta: tf.TensorInfo; shift?: tf.TensorInfo },
  attrs: GroupNormSimdAttrs,
  outs: { y: tf.TensorInfo; mean: tf.TensorInfo; rstd: tf.TensorInfo },
): boolean {
  const dims = layout(ins.x, attrs.groups);
  if (!dims) return false;
  const [b, p, c] = dims;
  const at = (t: tf.TensorInfo) => heapOffset(backend, t);
  const flags = (attrs.silu ? GN_SILU : 0) | (ins.shift ? GN_SHIFT : 0);
  withScratch(backend, workBytes.forward(c), (work) =>
    groupNormSimd(backend).forward(
      at(ins.x),
      ins.shift ? at(ins.shift) : 0,
      at(ins.gamma),
      at(ins.beta),
      at(outs.y),
      at(outs.mean),
      at(outs.rstd),
      b,
      p,
      c,
      attrs.groups,
      attrs.eps,
      flags,
      work,
    ));
  return true;
}

/**
 * IctGroupNormGrad's arithmetic on the heap: dx, dγ, dβ and, with a shift, dshift (outputs already allocated
 * there). False, with nothing written, where the SIMD kernel does not apply.
 */
export function groupNormBackwardSimd(
  backend: unknown,
  ins: {
    dy: tf.TensorInfo;
    x: tf.TensorInfo;
    gamma: tf.TensorInfo;
    beta: tf.TensorInfo;
    mean: tf.TensorInfo;
    rstd: tf.TensorInfo;
    shift?: tf.TensorInfo;
  },
  attrs: GroupNormSimdAttrs,
  outs: { dx: tf.TensorInfo; dgamma: tf.TensorInfo; dbeta: tf.TensorInfo; dshift?: tf.TensorInfo },
): boolean {
  const dims = layout(ins.x, attrs.groups);
  if (!dims || !ins.shift !== !outs.dshift) return false;
  const [b, p, c] = dims;
  const at = (t: tf.TensorInfo) => heapOffset(backend, t);
  const flags = (attrs.silu ? GN_SILU : 0) | (ins.shift ? GN_SHIFT : 0);
  withScratch(backend, workBytes.backward(c), (work) =>
    groupNormSimd(backend).backward(
      at(ins.dy),
      at(ins.x),
      ins.shift ? at(ins.shift) : 0,
      at(ins.gamma),
      at(ins.beta),
      at(ins.mean),
      at(ins.rstd),
      at(outs.dx),
      at(outs.dgamma),
      at(outs.dbeta),
      outs.dshift ? at(outs.dshift) : 0,
      b,
      p,
      c,
      attrs.groups,
      flags,
      work,
    ));
  return true;
}
