// The FID Inception-v3: the 2015-12-05 TensorFlow graph (inception-2015-12-05.tgz) as pytorch-fid ports it,
// for FID (pool_3, 2048 features) and the Inception Score (1008 logits). It is torchvision's Inception-v3
// layout with the FID blocks: every 3×3 average pool in Mixed_5b–5d, 6b–6e and 7b leaves the padding out of the
// mean (count_include_pad=False), and Mixed_7c pools its pool branch with a 3×3 max instead; BatchNorm eps 1e-3;
// no auxiliary head; fc 2048 → 1008.
//
// Input: NHWC images with values in [0, 255] (uint8 data, as float32 or int32) — what the evaluator .npz files
// and quantized samples hold. pytorch-fid takes x/255 ∈ [0, 1]; the two agree exactly up to float rounding.
// Preprocessing, as pytorch-fid's (resize_input, normalize_input): bilinear resize to 299×299 with
// F.interpolate(mode="bilinear", align_corners=False) semantics — TF.js resizeBilinear with alignCorners=false,
// halfPixelCenters=true: source = (dst + 0.5)·in/out − 0.5, clamped at 0, no antialiasing — then 2x − 1.
//
// Parameters use the names and PyTorch layouts of pytorch-fid's state dict (pt_inception-2015-12-05-*.pth):
// `<layer>.conv.weight` [out, in, kh, kw] (no conv bias), `<layer>.bn.{weight,bias,running_mean,running_var}`
// [out], `fc.weight` [1008, 2048], `fc.bias` [1008]. By default BatchNorm is folded into the convolution
// (W·γ/√(var+eps), β − mean·γ/√(var+eps)) and each layer runs as one fused conv + bias + ReLU; `foldBatchNorm:
// false` keeps conv → batchNorm → ReLU (tests check that the two agree).
import * as tf from "@tensorflow/tfjs";

export const FID_INCEPTION_SIZE = 299;
export const POOL3_DIM = 2048;
export const LOGITS_DIM = 1008;
const BN_EPS = 0.001;

type Pad = "same" | "valid";
/** One BasicConv2d: conv (no bias) → BatchNorm(eps 0.001) → ReLU. "same" = torch padding (k−1)/2, stride 1. */
interface ConvDef {
  name: string;
  cin: number;
  cout: number;
  kh: number;
  kw: number;
  stride: 1 | 2;
  pad: Pad;
}

type BlockKind = "A" | "B" | "C" | "D" | "E1" | "E2";
interface BlockDef {
  kind: BlockKind;
  name: string;
}

const CONVS: ConvDef[] = [];
const BLOCKS: BlockDef[] = [];

function conv(
  name: string,
  cin: number,
  cout: number,
  k: number | [number, number],
  stride: 1 | 2 = 1,
  pad: Pad = "valid",
) {
  const [kh, kw] = typeof k === "number" ? [k, k] : k;
  CONVS.push({ name, cin, cout, kh, kw, stride, pad });
}
/** A padded conv: every one in this network pads (k−1)/2 at stride 1, i.e. TF's "same". */
const same = (name: string, cin: number, cout: number, k: number | [number, number]) =>
  conv(name, cin, cout, k, 1, "same");

// The stem, in torchvision's registration order (so INCEPTION_PARAM_SPECS follows the state dict's order).
conv("Conv2d_1a_3x3", 3, 32, 3, 2);
conv("Conv2d_2a_3x3", 32, 32, 3);
same("Conv2d_2b_3x3", 32, 64, 3);
conv("Conv2d_3b_1x1", 64, 80, 1);
conv("Conv2d_4a_3x3", 80, 192, 3);

function blockA(name: string, cin: number, poolFeatures: number) {
  BLOCKS.push({ kind: "A", name });
  conv(`${name}.branch1x1`, cin, 64, 1);
  conv(`${name}.branch5x5_1`, cin, 48, 1);
  same(`${name}.branch5x5_2`, 48, 64, 5);
  conv(`${name}.branch3x3dbl_1`, cin, 64, 1);
  same(`${name}.branch3x3dbl_2`, 64, 96, 3);
  same(`${name}.branch3x3dbl_3`, 96, 96, 3);
  conv(`${name}.branch_pool`, cin, poolFeatures, 1);
  return 64 + 64 + 96 + poolFeatures;
}
function blockB(name: string, cin: number) {
  BLOCKS.push({ kind: "B", name });
  conv(`${name}.branch3x3`, cin, 384, 3, 2);
  conv(`${name}.branch3x3dbl_1`, cin, 64, 1);
  same(`${name}.branch3x3dbl_2`, 64, 96, 3);
  conv(`${name}.branch3x3dbl_3`, 96, 96, 3, 2);
  return 384 + 96 + cin;
}
function blockC(name: string, cin: number, c7: number) {
  BLOCKS.push({ kind: "C", name });
  conv(`${name}.branch1x1`, cin, 192, 1);
  conv(`${name}.branch7x7_1`, cin, c7, 1);
  same(`${name}.branch7x7_2`, c7, c7, [1, 7]);
  same(`${name}.branch7x7_3`, c7, 192, [7, 1]);
  conv(`${name}.branch7x7dbl_1`, cin, c7, 1);
  same(`${name}.branch7x7dbl_2`, c7, c7, [7, 1]);
  same(`${name}.branch7x7dbl_3`, c7, c7, [1, 7]);
  same(`${name}.branch7x7dbl_4`, c7, c7, [7, 1]);
  same(`${name}.branch7x7dbl_5`, c7, 192, [1, 7]);
  conv(`${name}.branch_pool`, cin, 192, 1);
  return 4 * 192;
}
function blockD(name: string, cin: number) {
  BLOCKS.push({ kind: "D", name });
  conv(`${name}.branch3x3_1`, cin, 192, 1);
  conv(`${name}.branch3x3_2`, 192, 320, 3, 2);
  conv(`${name}.branch7x7x3_1`, cin, 192, 1);
  same(`${name}.branch7x7x3_2`, 192, 192, [1, 7]);
  same(`${name}.branch7x7x3_3`, 192, 192, [7, 1]);
  conv(`${name}.branch7x7x3_4`, 192, 192, 3, 2);
  return 320 + 192 + cin;
}
function blockE(name: string, cin: number, kind: "E1" | "E2") {
  BLOCKS.push({ kind, name });
  conv(`${name}.branch1x1`, cin, 320, 1);
  conv(`${name}.branch3x3_1`, cin, 384, 1);
  same(`${name}.branch3x3_2a`, 384, 384, [1, 3]);
  same(`${name}.branch3x3_2b`, 384, 384, [3, 1]);
  conv(`${name}.branch3x3dbl_1`, cin, 448, 1);
  same(`${name}.branch3x3dbl_2`, 448, 384, 3);
  same(`${name}.branch3x3dbl_3a`, 384, 384, [1, 3]);
  same(`${name}.branch3x3dbl_3b`, 384, 384, [3, 1]);
  conv(`${name}.branch_pool`, cin, 192, 1);
  return 320 + 2 * 384 + 2 * 384 + 192;
}

{
  let c = blockA("Mixed_5b", 192, 32);
  c = blockA("Mixed_5c", c, 64);
  c = blockA("Mixed_5d", c, 64);
  c = blockB("Mixed_6a", c);
  c = blockC("Mixed_6b", c, 128);
  c = blockC("Mixed_6c", c, 160);
  c = blockC("Mixed_6d", c, 160);
  c = blockC("Mixed_6e", c, 192);
  c = blockD("Mixed_7a", c);
  c = blockE("Mixed_7b", c, "E1");
  c = blockE("Mixed_7c", c, "E2");
  if (c !== POOL3_DIM) throw new Error(`internal: Mixed_7c gives ${c} channels, not ${POOL3_DIM}`);
}

const BN_FIELDS = ["weight", "bias", "running_mean", "running_var"] as const;

/** Every parameter of the state dict, in its order: name and PyTorch shape. */
export const INCEPTION_PARAM_SPECS: readonly { name: string; shape: number[] }[] = Object.freeze([
  ...CONVS.flatMap((c) => [
    { name: `${c.name}.conv.weight`, shape: [c.cout, c.cin, c.kh, c.kw] },
    ...BN_FIELDS.map((f) => ({ name: `${c.name}.bn.${f}`, shape: [c.cout] })),
  ]),
  { name: "fc.weight", shape: [LOGITS_DIM, POOL3_DIM] },
  { name: "fc.bias", shape: [LOGITS_DIM] },
]);

export type StateDict = ReadonlyMap<string, { shape: readonly number[]; data: Float32Array }>;

export interface FromStateDictOptions {
  /** Fold BatchNorm into the convolutions (default true); false applies conv → batchNorm → ReLU. */
  foldBatchNorm?: boolean;
}

/** A conv layer ready to run: folded (filter + bias) or with its BatchNorm kept apart. */
interface Layer {
  def: ConvDef;
  filter: tf.Tensor4D; // [kh, kw, in, out]
  bias?: tf.Tensor1D; // folded
  bn?: { mean: tf.Tensor1D; variance: tf.Tensor1D; gamma: tf.Tensor1D; beta: tf.Tensor1D };
}

const sameShape = (a: readonly number[], b: readonly number[]) =>
  a.length === b.length && a.every((v, i) => v === b[i]);

/** Checks every name, shape and length; one error lists every problem found. */
function validateStateDict(weights: StateDict) {
  const problems: string[] = [];
  const known = new Set(INCEPTION_PARAM_SPECS.map((s) => s.name));
  const missing: string[] = [];
  for (const spec of INCEPTION_PARAM_SPECS) {
    const t = weights.get(spec.name);
    if (!t) {
      missing.push(spec.name);
      continue;
    }
    if (!sameShape(t.shape, spec.shape)) {
      problems.push(`${spec.name}: shape [${t.shape.join(", ")}], expected [${spec.shape.join(", ")}]`);
    } else if (t.data.length !== spec.shape.reduce((a, b) => a * b, 1)) {
      problems.push(`${spec.name}: ${t.data.length} values for shape [${spec.shape.join(", ")}]`);
    }
  }
  // BatchNorm's num_batches_tracked counter is a buffer of the state dict but plays no part in inference.
  const unexpected = [...weights.keys()].filter((k) =>
    !known.has(k) &&
    !(k.endsWith(".bn.num_batches_tracked") && known.has(k.replace(/num_batches_tracked$/, "weight")))
  );
  const list = (names: string[]) => names.slice(0, 8).join(", ") + (names.length > 8 ? ", …" : "");
  if (missing.length) problems.push(`${missing.length} missing: ${list(missing)}`);
  if (unexpected.length) problems.push(`${unexpected.length} unexpected: ${list(unexpected)}`);
  if (!problems.length) return;
  let hint = "";
  const prefixed = [...weights.keys()].find((k) => /^(module|model)\./.test(k));
  if (missing.length && prefixed) {
    hint = ` (names carry a prefix such as "${prefixed.split(".")[0]}."; strip it)`;
  } else if (weights.get("fc.weight")?.shape[0] === 1000) {
    hint =
      " (this looks like torchvision's ImageNet Inception-v3; FID needs pytorch-fid's pt_inception-2015-12-05)";
  }
  throw new Error(
    `FID Inception state dict does not match (${INCEPTION_PARAM_SPECS.length} parameters expected)${hint}:\n  ` +
      problems.join("\n  "),
  );
}

/** [out, in, kh, kw] (× per-out scale) → [kh, kw, in, out]. */
function convFilter(def: ConvDef, w: Float32Array, scale?: Float64Array): tf.Tensor4D {
  const { cout, cin, kh, kw } = def;
  const out = new Float32Array(w.length);
  for (let o = 0; o < cout; o++) {
    const s = scale ? scale[o] : 1;
    for (let i = 0; i < cin; i++) {
      for (let y = 0; y < kh; y++) {
        for (let x = 0; x < kw; x++) {
          out[((y * kw + x) * cin + i) * cout + o] = w[((o * cin + i) * kh + y) * kw + x] * s;
        }
      }
    }
  }
  return tf.tensor4d(out, [kh, kw, cin, cout]);
}

/**
 * Bilinear resize with PyTorch's F.interpolate(mode="bilinear", align_corners=False) semantics (no antialias):
 * source coordinate (dst + 0.5)·in/out − 0.5, clamped to the image. NHWC.
 */
export function resizeBilinearTorch(images: tf.Tensor4D, size: [number, number]): tf.Tensor4D {
  return tf.image.resizeBilinear(images, size, false, true);
}

/** pytorch-fid's preprocessing of [0, 255] NHWC images: resize to 299×299 (as above), then to [−1, 1]. */
export function fidPreprocess(images: tf.Tensor4D): tf.Tensor4D {
  return tf.tidy(() => {
    let x = images.dtype === "float32" ? images : tf.cast(images, "float32");
    if (x.shape[1] !== FID_INCEPTION_SIZE || x.shape[2] !== FID_INCEPTION_SIZE) {
      x = resizeBilinearTorch(x, [FID_INCEPTION_SIZE, FID_INCEPTION_SIZE]);
    }
    return tf.sub(tf.mul(x, 2 / 255), 1);
  });
}

export class FidInception {
  readonly #layers: Map<string, Layer>;
  readonly #fcW: tf.Tensor2D; // [2048, 1008]
  readonly #fcB: tf.Tensor1D;
  /** Whether BatchNorm was folded into the convolutions. */
  readonly foldedBatchNorm: boolean;
  #disposed = false;

  private constructor(layers: Map<string, Layer>, fcW: tf.Tensor2D, fcB: tf.Tensor1D, folded: boolean) {
    this.#layers = layers;
    this.#fcW = fcW;
    this.#fcB = fcB;
    this.foldedBatchNorm = folded;
  }

  /** Builds the network from pytorch-fid's state dict (names and PyTorch layouts); validates it first. */
  static fromStateDict(weights: StateDict, opts: FromStateDictOptions = {}): FidInception {
    validateStateDict(weights);
    const fold = opts.foldBatchNorm ?? true;
    const get = (name: string) => weights.get(name)!.data;
    const layers = new Map<string, Layer>();
    try {
      for (const def of CONVS) {
        const w = get(`${def.name}.conv.weight`);
        const [gamma, beta, mean, variance] = BN_FIELDS.map((f) => get(`${def.name}.bn.${f}`));
        if (fold) {
          const scale = new Float64Array(def.cout);
          const bias = new Float32Array(def.cout);
          for (let o = 0; o < def.cout; o++) {
            scale[o] = gamma[o] / Math.sqrt(variance[o] + BN_EPS);
            bias[o] = beta[o] - mean[o] * scale[o];
          }
          layers.set(def.name, { def, filter: convFilter(def, w, scale), bias: tf.tensor1d(bias) });
        } else {
          layers.set(def.name, {
            def,
            filter: convFilter(def, w),
            bn: {
              mean: tf.tensor1d(mean),
              variance: tf.tensor1d(variance),
              gamma: tf.tensor1d(gamma),
              beta: tf.tensor1d(beta),
            },
          });
        }
      }
    } catch (e) {
      for (const l of layers.values()) tf.dispose([l.filter, l.bias, ...Object.values(l.bn ?? {})]);
      throw e;
    }
    const fw = get("fc.weight");
    const fcT = new Float32Array(fw.length);
    for (let o = 0; o < LOGITS_DIM; o++) {
      for (let i = 0; i < POOL3_DIM; i++) fcT[i * LOGITS_DIM + o] = fw[o * POOL3_DIM + i];
    }
    return new FidInception(
      layers,
      tf.tensor2d(fcT, [POOL3_DIM, LOGITS_DIM]),
      tf.tensor1d(get("fc.bias")),
      fold,
    );
  }

  #conv(name: string, x: tf.Tensor4D): tf.Tensor4D {
    const l = this.#layers.get(name);
    if (!l) throw new Error(`internal: no layer ${name}`);
    const { stride, pad } = l.def;
    if (l.bias) {
      return tf.fused.conv2d({ x, filter: l.filter, strides: stride, pad, bias: l.bias, activation: "relu" });
    }
    const { mean, variance, gamma, beta } = l.bn!;
    return tf.relu(tf.batchNorm(tf.conv2d(x, l.filter, stride, pad), mean, variance, beta, gamma, BN_EPS));
  }

  #block({ kind, name }: BlockDef, x: tf.Tensor4D): tf.Tensor4D {
    const c = (branch: string, input: tf.Tensor4D) => this.#conv(`${name}.${branch}`, input);
    // count_include_pad=False 3×3 average: TF's "same" average pooling leaves the padding out of the mean.
    const avg3 = (t: tf.Tensor4D) => tf.avgPool(t, 3, 1, "same");
    switch (kind) {
      case "A": {
        const b5 = c("branch5x5_2", c("branch5x5_1", x));
        const b3 = c("branch3x3dbl_3", c("branch3x3dbl_2", c("branch3x3dbl_1", x)));
        return tf.concat([c("branch1x1", x), b5, b3, c("branch_pool", avg3(x))], 3);
      }
      case "B": {
        const b3 = c("branch3x3dbl_3", c("branch3x3dbl_2", c("branch3x3dbl_1", x)));
        return tf.concat([c("branch3x3", x), b3, tf.maxPool(x, 3, 2, "valid")], 3);
      }
      case "C": {
        const b7 = c("branch7x7_3", c("branch7x7_2", c("branch7x7_1", x)));
        let d = c("branch7x7dbl_1", x);
        for (const i of [2, 3, 4, 5]) d = c(`branch7x7dbl_${i}`, d);
        return tf.concat([c("branch1x1", x), b7, d, c("branch_pool", avg3(x))], 3);
      }
      case "D": {
        const b3 = c("branch3x3_2", c("branch3x3_1", x));
        let b7 = c("branch7x7x3_1", x);
        for (const i of [2, 3, 4]) b7 = c(`branch7x7x3_${i}`, b7);
        return tf.concat([b3, b7, tf.maxPool(x, 3, 2, "valid")], 3);
      }
      case "E1":
      case "E2": {
        const b3 = c("branch3x3_1", x);
        const d = c("branch3x3dbl_2", c("branch3x3dbl_1", x));
        // Mixed_7c (E_2): max pooling, padding 1 (torch pads with −∞, i.e. "same" max pooling).
        const pooled = kind === "E1" ? avg3(x) : tf.maxPool(x, 3, 1, "same");
        return tf.concat([
          c("branch1x1", x),
          c("branch3x3_2a", b3),
          c("branch3x3_2b", b3),
          c("branch3x3dbl_3a", d),
          c("branch3x3dbl_3b", d),
          c("branch_pool", pooled),
        ], 3);
      }
    }
  }

  /**
   * pool_3 features [N, 2048] and logits [N, 1008] of NHWC RGB images with values in [0, 255] (float32 or
   * int32, any size: resized to 299×299 as pytorch-fid does). The softmax over all 1008 logits is the class
   * distribution of the Inception Score. Nothing but the two results stays allocated.
   */
  features(images: tf.Tensor4D): { pool3: tf.Tensor2D; logits: tf.Tensor2D } {
    if (this.#disposed) throw new Error("FidInception: used after dispose()");
    if (images.rank !== 4 || images.shape[3] !== 3) {
      throw new Error(
        `FidInception.features: expected NHWC RGB images [N, H, W, 3] with values in [0, 255], ` +
          `got shape [${images.shape.join(", ")}]`,
      );
    }
    if (images.dtype !== "float32" && images.dtype !== "int32") {
      throw new Error(`FidInception.features: expected float32 or int32 images, got ${images.dtype}`);
    }
    // Stage by stage, each in its own tidy: only one block's activations are alive at a time (≈ 10 MB per
    // image at the widest, against ≈ 55 MB when the whole pass shares one tidy).
    const stages: ((t: tf.Tensor4D) => tf.Tensor4D)[] = [
      (t) => this.#conv("Conv2d_1a_3x3", t),
      (t) => this.#conv("Conv2d_2a_3x3", t),
      (t) => tf.maxPool(this.#conv("Conv2d_2b_3x3", t), 3, 2, "valid"),
      (t) => this.#conv("Conv2d_4a_3x3", this.#conv("Conv2d_3b_1x1", t)),
      (t) => tf.maxPool(t, 3, 2, "valid"),
      ...BLOCKS.map((b) => (t: tf.Tensor4D) => this.#block(b, t)),
    ];
    let x = fidPreprocess(images);
    try {
      for (const stage of stages) {
        const y = tf.tidy(() => stage(x));
        x.dispose();
        x = y;
      }
      return tf.tidy(() => {
        const pool3 = tf.mean(x, [1, 2]) as tf.Tensor2D;
        const logits = tf.add(tf.matMul(pool3, this.#fcW), this.#fcB) as tf.Tensor2D;
        return { pool3, logits };
      });
    } finally {
      x.dispose();
    }
  }

  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    for (const l of this.#layers.values()) tf.dispose([l.filter, l.bias, ...Object.values(l.bn ?? {})]);
    tf.dispose([this.#fcW, this.#fcB]);
  }
}

/** The same as FidInception.fromStateDict. */
export function inceptionFromStateDict(weights: StateDict, opts: FromStateDictOptions = {}): FidInception {
  return FidInception.fromStateDict(weights, opts);
}

// ---------------------------------------------------------------------------------------------------------------
// Synthetic weights: a formula, reproduced bit for bit by tests/reference/inception_reference.py, so the parity
// test and the bench need no 91 MB weights file. Not a trained network: its features mean nothing.

/** FNV-1a of the name's UTF-8 bytes: the seed of one parameter. */
export function fnv1a32(s: string): number {
  let h = 0x811c9dc5;
  for (const b of new TextEncoder().encode(s)) h = Math.imul(h ^ b, 0x01000193) >>> 0;
  return h >>> 0;
}

/** The 32-bit hash of (index, seed): golden-ratio spread, then murmur3's finalizer. */
export function hash32(i: number, seed: number): number {
  let x = (Math.imul(i, 0x9e3779b1) + seed) >>> 0;
  x ^= x >>> 16;
  x = Math.imul(x, 0x85ebca6b);
  x ^= x >>> 13;
  x = Math.imul(x, 0xc2b2ae35);
  x ^= x >>> 16;
  return x >>> 0;
}

/** Uniform on [−1, 1) in steps of 2⁻²³ (exact in float32) from hash32's top 24 bits. */
export const hashUniform = (i: number, seed: number) => (hash32(i, seed) >>> 8) / 8388608 - 1;

/**
 * Deterministic weights for every parameter, u = hashUniform(i, fnv1a32(name)) at flat index i (PyTorch layout):
 * conv weights u·√(6/fan_in) (He-uniform: activations stay O(1) through the depth), BN γ = 1 + 0.25u,
 * β = 0.2u, mean = 0.2u, var = 1 + 0.5u, fc weight u·√(3/2048), fc bias 0.1u; each computed in float64, then
 * rounded to float32.
 */
export function syntheticInceptionStateDict(): Map<string, { shape: number[]; data: Float32Array }> {
  const out = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const { name, shape } of INCEPTION_PARAM_SPECS) {
    const n = shape.reduce((a, b) => a * b, 1);
    const field = name.slice(name.lastIndexOf(".") + 1);
    let f: (u: number) => number;
    if (name === "fc.weight") {
      const a = Math.sqrt(3 / POOL3_DIM);
      f = (u) => u * a;
    } else if (name === "fc.bias") f = (u) => 0.1 * u;
    else if (name.endsWith(".conv.weight")) {
      const a = Math.sqrt(6 / (shape[1] * shape[2] * shape[3]));
      f = (u) => u * a;
    } else if (field === "weight") f = (u) => 1 + 0.25 * u;
    else if (field === "bias" || field === "running_mean") f = (u) => 0.2 * u;
    else if (field === "running_var") f = (u) => 1 + 0.5 * u;
    else throw new Error(`internal: no formula for ${name}`);
    const seed = fnv1a32(name);
    const data = new Float32Array(n);
    for (let i = 0; i < n; i++) data[i] = f(hashUniform(i, seed));
    out.set(name, { shape: [...shape], data });
  }
  return out;
}

/** Deterministic test images [n, h, w, 3], integer values 0…255 (hash32's top byte), as float32. */
export function syntheticImages(n: number, h: number, w: number, name: string): Float32Array {
  const seed = fnv1a32(name);
  return Float32Array.from({ length: n * h * w * 3 }, (_, i) => hash32(i, seed) >>> 24);
}
