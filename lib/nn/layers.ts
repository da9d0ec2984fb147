// The layers of NCSN++ and ADM, NHWC, one style: a layer is built on a Scope (which records its parameters
// and cost) and applied with a parameter map. Only ops whose gradients are right on every TF.js backend are
// used: no resizeNearestNeighbor, no maxPool, no depthwise conv (FIR resampling is written with pad/slice/
// reshape instead), and conv2d only with stride 1 and "same" padding (its gradients on wasm come from
// lib/wasm_kernels.ts). On wasm, GroupNorm (+ SiLU) and FIR resampling run as the kit's own fused kernels
// (lib/wasm_kernels.ts), tested against these ops on cpu.
import * as tf from "@tensorflow/tfjs";
import { get, type Init, type Params, type Scope } from "./params.ts";
import { fusedFir, fusedGroupNorm, hasFusedFir, hasFusedGroupNorm } from "../wasm_kernels.ts";

/** An initializer family as EDM writes it: mode, and gains for the weight and the bias. */
export interface InitMode {
  mode: "xavier_uniform" | "kaiming_uniform" | "kaiming_normal";
  weight: number;
  bias: number;
}

function makeInit(m: InitMode, fanIn: number, fanOut: number, gain: number): Init {
  if (m.mode === "xavier_uniform") return { kind: "xavier_uniform", fanIn, fanOut, gain };
  return { kind: m.mode, fanIn, gain };
}

export const silu = (x: tf.Tensor): tf.Tensor => tf.mul(x, tf.sigmoid(x));

/** Fully connected layer: x·W + b, W is [in, out]. */
export class Dense {
  readonly weight: string;
  readonly bias?: string;
  constructor(
    scope: Scope,
    readonly inFeatures: number,
    readonly outFeatures: number,
    init: InitMode,
    bias = true,
  ) {
    this.weight = scope.param(
      "weight",
      [inFeatures, outFeatures],
      makeInit(init, inFeatures, outFeatures, init.weight),
    );
    if (bias) {
      this.bias = scope.param("bias", [outFeatures], makeInit(init, inFeatures, outFeatures, init.bias));
    }
    scope.addCost(2 * inFeatures * outFeatures, outFeatures);
  }

  apply(p: Params, x: tf.Tensor2D): tf.Tensor2D {
    const y = tf.matMul(x, get(p, this.weight) as tf.Tensor2D);
    return (this.bias ? tf.add(y, get(p, this.bias)) : y) as tf.Tensor2D;
  }
}

/** A spatial size [height, width]. */
export type Resolution = readonly [number, number];

// ---- FIR resampling (NCSN++'s [1,3,3,1]; [1,1] is ADM's 2×2 average pool / nearest upsampling) ----------

function padAlong(x: tf.Tensor4D, axis: 1 | 2, lo: number, hi: number): tf.Tensor4D {
  if (lo === 0 && hi === 0) return x;
  const p: [number, number][] = [[0, 0], [0, 0], [0, 0], [0, 0]];
  p[axis] = [lo, hi];
  return tf.pad(x, p);
}

function sliceAlong(x: tf.Tensor4D, axis: 1 | 2 | 3, start: number, length: number): tf.Tensor4D {
  const begin = [0, 0, 0, 0];
  const size = [-1, -1, -1, -1];
  begin[axis] = start;
  size[axis] = length;
  return tf.slice(x, begin, size);
}

/** Length after downsampling by 2 with a T-tap filter and `pad` zeros on each side. */
export function downLength(n: number, taps: number, pad: number): number {
  return Math.floor((n + 2 * pad - taps) / 2) + 1;
}

/**
 * y[i] = Σ_k f[k]·x_pad[2i + k] along one axis (a stride-2 FIR filter; f sums to 1). The padded axis is
 * folded into pairs (even, odd) so every tap is a slice: x_pad[2i + k] = pair[i + ⌊k/2⌋][k mod 2].
 */
function downsample1d(x: tf.Tensor4D, axis: 1 | 2, f: readonly number[], pad: number): tf.Tensor4D {
  const n = x.shape[axis] + 2 * pad;
  const m = downLength(x.shape[axis], f.length, pad);
  if (m < 1) throw new Error(`cannot downsample an axis of ${x.shape[axis]} with a ${f.length}-tap filter`);
  const pairs = m + Math.floor((f.length - 1) / 2);
  let xp = padAlong(x, axis, pad, pad + Math.max(0, 2 * pairs - n));
  xp = sliceAlong(xp, axis, 0, 2 * pairs);
  const [b, h, w, c] = xp.shape;
  // axis 1: [B, pairs, 2·W, C], parity = which half of the merged axis; axis 2: [B, H, pairs, 2·C].
  const folded = axis === 1
    ? xp.reshape([b, pairs, 2 * w, c])
    : xp.reshape([b, h, pairs, 2 * c]) as tf.Tensor4D;
  const half = axis === 1 ? w : c;
  const parityAxis = axis === 1 ? 2 : 3;
  let y: tf.Tensor4D | null = null;
  f.forEach((fk, k) => {
    const tap = sliceAlong(
      sliceAlong(folded as tf.Tensor4D, axis, Math.floor(k / 2), m),
      parityAxis,
      (k % 2) * half,
      half,
    );
    const term = tf.mul(tap, fk) as tf.Tensor4D;
    y = y ? tf.add(y, term) : term;
  });
  return y!;
}

/**
 * The transpose of downsampling by 2 with 2·f (EDM's conv_transpose2d(x, 4·f⊗f, stride 2, padding ⌊(T−1)/2⌋)),
 * along one axis: y[2j + r] = Σ_{t ≡ r+p (mod 2)} 2f[t]·x[j + (r + p − t)/2], x zero outside, p = ⌊(T−1)/2⌋.
 */
function upsample1d(x: tf.Tensor4D, axis: 1 | 2, f: readonly number[]): tf.Tensor4D {
  const n = x.shape[axis];
  const p = Math.floor((f.length - 1) / 2);
  const terms = [0, 1].map((r) =>
    f.map((ft, t) => ({ g: 2 * ft, d: (r + p - t) / 2 })).filter(({ d }) => Number.isInteger(d))
  );
  const ds = terms.flat().map(({ d }) => d);
  const lo = Math.max(0, -Math.min(...ds));
  const hi = Math.max(0, Math.max(...ds));
  const xp = padAlong(x, axis, lo, hi);
  const phases = terms.map((ts) => {
    let y: tf.Tensor4D | null = null;
    for (const { g, d } of ts) {
      const term = tf.mul(sliceAlong(xp, axis, lo + d, n), g) as tf.Tensor4D;
      y = y ? tf.add(y, term) : term;
    }
    return y!;
  });
  const [b, h, w, c] = x.shape;
  // Interleave the two phases: concat on the next axis, then unfold.
  return axis === 1
    ? tf.concat(phases, 2).reshape([b, 2 * h, w, c])
    : tf.concat(phases, 3).reshape([b, h, 2 * w, c]);
}

/** Normalized 1-D taps of a separable resampling filter: [1,3,3,1] → [1,3,3,1]/8 (2-D filter = f⊗f). */
export function filterTaps(filter: readonly number[]): number[] {
  const s = filter.reduce((a, b) => a + b, 0);
  return filter.map((v) => v / s);
}

/** Downsample by 2 with the separable FIR filter f⊗f, `pad` zeros each side (EDM: pad = ⌊(T−1)/2⌋). */
export function firDownsample(x: tf.Tensor4D, filter: readonly number[], pad?: number): tf.Tensor4D {
  const f = filterTaps(filter);
  const p = pad ?? Math.floor((f.length - 1) / 2);
  if (x.dtype === "float32" && hasFusedFir()) {
    for (const n of [x.shape[1], x.shape[2]]) {
      if (downLength(n, f.length, p) < 1) {
        throw new Error(`cannot downsample an axis of ${n} with a ${f.length}-tap filter`);
      }
    }
    return fusedFir(x, { taps: f, pad: p, size: [x.shape[1], x.shape[2]] }, false);
  }
  return downsample1d(downsample1d(x, 1, f, p), 2, f, p);
}

/** Upsample by 2 with the separable FIR filter (4·f⊗f transposed; [1,1] is nearest-neighbour). */
export function firUpsample(x: tf.Tensor4D, filter: readonly number[]): tf.Tensor4D {
  const f = filterTaps(filter);
  if (x.dtype === "float32" && hasFusedFir()) {
    // The adjoint of downsampling [2H, 2W] with 2f per axis and ⌊(T−1)/2⌋ zeros (EDM's conv_transpose2d).
    const size: [number, number] = [2 * x.shape[1], 2 * x.shape[2]];
    return fusedFir(x, { taps: f.map((v) => 2 * v), pad: Math.floor((f.length - 1) / 2), size }, true);
  }
  return upsample1d(upsample1d(x, 1, f), 2, f);
}

// ---- Convolution ----------------------------------------------------------------------------------------

export interface Conv2dOptions {
  /** 0: no convolution (a pure resampling layer without parameters). */
  kernel: number;
  init: InitMode;
  bias?: boolean;
  up?: boolean;
  down?: boolean;
  resampleFilter?: readonly number[];
  /** Downsample after the convolution, which then sees (k−1)/2 + ⌊(T−1)/2⌋ zeros of padding (EDM's fused_resample). */
  fusedDown?: boolean;
}

/**
 * 2-D convolution (EDM's Conv2d): optional FIR up/down resampling before it, "same" padding, stride 1.
 * The weight is [k, k, in, out].
 */
export class Conv2d {
  readonly weight?: string;
  readonly bias?: string;
  readonly outResolution: Resolution;
  private readonly filter: readonly number[];
  private readonly fPad: number;
  constructor(
    scope: Scope,
    readonly inChannels: number,
    readonly outChannels: number,
    readonly resolution: Resolution,
    readonly opts: Conv2dOptions,
  ) {
    const { kernel, init, bias = true, up = false, down = false } = opts;
    if (up && down) throw new Error("a convolution resamples up or down, not both");
    if (kernel === 0 && inChannels !== outChannels) {
      throw new Error("a 0-kernel layer cannot change channels");
    }
    if (kernel > 0 && kernel % 2 === 0) throw new Error(`kernel ${kernel}: only odd kernels keep the size`);
    if (opts.fusedDown && !(down && kernel > 0)) throw new Error("fusedDown needs down: true and a kernel");
    this.filter = opts.resampleFilter ?? [1, 1];
    const taps = this.filter.length;
    this.fPad = Math.floor((taps - 1) / 2);
    const [h, w] = resolution;
    let convRes: Resolution = [h, w];
    if (up) convRes = this.outResolution = [2 * h, 2 * w];
    else if (down && opts.fusedDown) {
      convRes = [h + 2 * this.fPad, w + 2 * this.fPad];
      this.outResolution = [downLength(convRes[0], taps, 0), downLength(convRes[1], taps, 0)];
    } else if (down) {
      convRes = this.outResolution = [downLength(h, taps, this.fPad), downLength(w, taps, this.fPad)];
    } else this.outResolution = [h, w];
    if (kernel > 0) {
      const fanIn = inChannels * kernel * kernel;
      const fanOut = outChannels * kernel * kernel;
      this.weight = scope.param(
        "weight",
        [kernel, kernel, inChannels, outChannels],
        makeInit(init, fanIn, fanOut, init.weight),
      );
      if (bias) this.bias = scope.param("bias", [outChannels], makeInit(init, fanIn, fanOut, init.bias));
      const positions = convRes[0] * convRes[1];
      scope.addCost(2 * kernel * kernel * inChannels * outChannels * positions, outChannels * positions);
    }
    if (up || down) { // the FIR filter as a depthwise convolution
      const c = opts.fusedDown ? outChannels : inChannels;
      const positions = this.outResolution[0] * this.outResolution[1];
      scope.addCost(2 * taps * taps * c * positions, c * positions);
    }
  }

  apply(p: Params, x: tf.Tensor4D): tf.Tensor4D {
    const { up = false, down = false, fusedDown = false } = this.opts;
    if (up) x = firUpsample(x, this.filter);
    if (down && !fusedDown) x = firDownsample(x, this.filter);
    if (this.weight) {
      if (fusedDown) x = padAlong(padAlong(x, 1, this.fPad, this.fPad), 2, this.fPad, this.fPad);
      // The bias inside the convolution (XNNPACK adds it in its output pass; wasm's broadcast add is a pass of
      // its own, single-threaded).
      x = tf.fused.conv2d({
        x,
        filter: get(p, this.weight) as tf.Tensor4D,
        strides: 1,
        pad: "same",
        bias: this.bias ? get(p, this.bias) : undefined,
      });
    }
    if (down && fusedDown) x = firDownsample(x, this.filter, 0);
    return x;
  }
}

// ---- Normalization, attention, dropout ------------------------------------------------------------------

/** GroupNorm with min(32, C/4) groups (EDM) or a given count (OpenAI's ADM: 32), per-channel scale and shift. */
export class GroupNorm {
  readonly weight: string;
  readonly bias: string;
  readonly groups: number;
  constructor(
    scope: Scope,
    readonly channels: number,
    resolution: Resolution,
    readonly eps = 1e-5,
    groups?: number,
  ) {
    this.groups = groups ?? Math.min(32, Math.floor(channels / 4));
    if (this.groups < 1 || channels % this.groups !== 0) {
      throw new Error(`GroupNorm: ${channels} channels cannot be split into ${this.groups} groups`);
    }
    this.weight = scope.param("weight", [channels], { kind: "constant", value: 1 });
    this.bias = scope.param("bias", [channels], { kind: "constant", value: 0 });
    scope.addCost(0, channels * resolution[0] * resolution[1]);
  }

  /**
   * GroupNorm, then SiLU when `act` is "silu" (one fused kernel each way where the backend has it: wasm). With
   * `shift` ([B, 1, 1, C]), the GroupNorm of x + shift (inside the fused kernels).
   */
  apply(p: Params, x: tf.Tensor4D, act: "none" | "silu" = "none", shift?: tf.Tensor4D): tf.Tensor4D {
    const [gamma, beta] = [get(p, this.weight), get(p, this.bias)];
    if (x.dtype === "float32" && hasFusedGroupNorm()) {
      const attrs = { groups: this.groups, eps: this.eps, silu: act === "silu" };
      return fusedGroupNorm(x, gamma, beta, attrs, shift);
    }
    if (shift) x = tf.add(x, shift);
    const [b, h, w, c] = x.shape;
    const g = x.reshape([b, h * w, this.groups, c / this.groups]);
    const { mean, variance } = tf.moments(g, [1, 3], true);
    const normed = tf.mul(tf.sub(g, mean), tf.rsqrt(tf.add(variance, this.eps))).reshape([b, h, w, c]);
    const y = tf.add(tf.mul(normed, gamma), beta) as tf.Tensor4D;
    return act === "silu" ? silu(y) as tf.Tensor4D : y;
  }
}

/**
 * Self-attention over the H·W positions (EDM's UNetBlock attention): GroupNorm → 1×1 qkv → softmax(qᵀk/√d) →
 * 1×1 projection. Channels of qkv are laid out [head, channel, (q,k,v)] as in EDM, so weights convert 1:1.
 * Returns the projection; the block adds the residual.
 */
export class SelfAttention {
  readonly norm: GroupNorm;
  readonly qkv: Conv2d;
  readonly proj: Conv2d;
  constructor(
    scope: Scope,
    readonly channels: number,
    readonly heads: number,
    resolution: Resolution,
    opts: { eps: number; init: InitMode; initZero: InitMode; groups?: number },
  ) {
    if (channels % heads !== 0) throw new Error(`attention: ${channels} channels over ${heads} heads`);
    this.norm = new GroupNorm(scope.child("norm2"), channels, resolution, opts.eps, opts.groups);
    this.qkv = new Conv2d(scope.child("qkv"), channels, 3 * channels, resolution, {
      kernel: 1,
      init: opts.init,
    });
    this.proj = new Conv2d(scope.child("proj"), channels, channels, resolution, {
      kernel: 1,
      init: opts.initZero,
    });
    const hw = resolution[0] * resolution[1];
    scope.addCost(2 * 2 * hw * hw * channels, heads * hw * hw + channels * hw, heads * hw * hw); // [heads, HW, HW]
  }

  apply(p: Params, x: tf.Tensor4D): tf.Tensor4D {
    const [b, h, w, c] = x.shape;
    const d = c / this.heads;
    // [B·HW·heads·d, 3] → [3, …], then each of q, k, v [B, HW, heads, d] → [B, heads, HW, d]: transposes of
    // rank ≤ 4 only. wasm's Transpose of rank 5 is a generic per-element loop: 1.1 s for [4, 1024, 6, 64, 3]
    // (the ImageNet 64 ADM's 32×32 attention at batch 4), where these take 0.09 s with the split.
    const qkv = this.qkv.apply(p, this.norm.apply(p, x)).reshape([b * h * w * c, 3]).transpose([1, 0]);
    const [q, k, v] = tf.split(qkv, 3, 0).map((t) =>
      t.reshape([b, h * w, this.heads, d]).transpose([0, 2, 1, 3])
    ) as tf.Tensor4D[];
    const weights = tf.softmax(tf.matMul(q, tf.mul(k, 1 / Math.sqrt(d)), false, true)); // [B, heads, HW, HW]
    const a = tf.matMul(weights, v).transpose([0, 2, 1, 3]).reshape([b, h, w, c]) as tf.Tensor4D;
    return this.proj.apply(p, a);
  }
}

export { Dropout, dropoutMask } from "./dropout.ts"; // masks made on the device, the same however the batch is split
