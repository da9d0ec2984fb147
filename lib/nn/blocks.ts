// The residual block both U-Nets are made of (EDM's UNetBlock), with the options that make it NCSN++'s
// BigGAN block or ADM's block:
//   h = conv0(SiLU(GN0(x)))            up/down-sampling (FIR) before conv0, in the BigGAN style
//   h = SiLU(GN1(h) · (1 + scale) + shift)   scale-shift ("AdaGN", ADM)   |   h = SiLU(GN1(h + e))   (NCSN++)
//   h = conv1(dropout(h));  x = (h + skip(x)) · skipScale
//   [x = (x + proj(attention(GN2(x)))) · skipScale]
import * as tf from "@tensorflow/tfjs";
import {
  Conv2d,
  Dense,
  Dropout,
  GroupNorm,
  type InitMode,
  type Resolution,
  SelfAttention,
  silu,
} from "./layers.ts";
import type { ForwardContext, Params, Scope } from "./params.ts";

export interface ResBlockOptions {
  embChannels: number;
  up?: boolean;
  down?: boolean;
  attention?: boolean;
  /** Attention heads: a fixed count (NCSN++: 1) … */
  heads?: number;
  /** … or one head per this many channels (ADM: 64). */
  channelsPerHead?: number;
  dropout: number;
  /** 1/√2 in NCSN++, 1 in ADM. */
  skipScale: number;
  eps: number;
  resampleFilter: readonly number[];
  /** A 1×1 convolution on the skip path of up/down blocks even when channels match (NCSN++). */
  resampleProj: boolean;
  /** ADM's scale-shift norm (the embedding gives a scale and a shift) instead of adding it (NCSN++). */
  scaleShift: boolean;
  /** GroupNorm groups: EDM's min(32, C/4) when absent; OpenAI's ADM (guided-diffusion, CM) uses 32 everywhere. */
  normGroups?: number;
  init: InitMode;
  initZero: InitMode;
  initAttn: InitMode;
}

export class ResBlock {
  readonly outResolution: Resolution;
  private readonly norm0: GroupNorm;
  private readonly conv0: Conv2d;
  private readonly affine: Dense;
  private readonly norm1: GroupNorm;
  private readonly dropout: Dropout;
  private readonly conv1: Conv2d;
  private readonly skip?: Conv2d;
  private readonly attention?: SelfAttention;

  constructor(
    scope: Scope,
    readonly inChannels: number,
    readonly outChannels: number,
    resolution: Resolution,
    readonly opts: ResBlockOptions,
  ) {
    const { up = false, down = false, eps, init, initZero, resampleFilter, normGroups } = opts;
    this.norm0 = new GroupNorm(scope.child("norm0"), inChannels, resolution, eps, normGroups);
    this.conv0 = new Conv2d(scope.child("conv0"), inChannels, outChannels, resolution, {
      kernel: 3,
      up,
      down,
      resampleFilter,
      init,
    });
    const res = this.outResolution = this.conv0.outResolution;
    const affineOut = outChannels * (opts.scaleShift ? 2 : 1);
    this.affine = new Dense(scope.child("affine"), opts.embChannels, affineOut, init);
    this.norm1 = new GroupNorm(scope.child("norm1"), outChannels, res, eps, normGroups);
    this.dropout = new Dropout(scope, opts.dropout);
    this.conv1 = new Conv2d(scope.child("conv1"), outChannels, outChannels, res, {
      kernel: 3,
      init: initZero,
    });
    if (outChannels !== inChannels || up || down) {
      const kernel = opts.resampleProj || outChannels !== inChannels ? 1 : 0;
      this.skip = new Conv2d(scope.child("skip"), inChannels, outChannels, resolution, {
        kernel,
        up,
        down,
        resampleFilter,
        init,
      });
    }
    if (opts.attention) {
      const heads = opts.heads ?? outChannels / (opts.channelsPerHead ?? 64);
      if (!Number.isInteger(heads) || heads < 1) {
        throw new Error(
          `attention: ${outChannels} channels do not split into heads of ${opts.channelsPerHead}`,
        );
      }
      this.attention = new SelfAttention(scope, outChannels, heads, res, {
        eps,
        init: opts.initAttn,
        initZero,
        groups: normGroups,
      });
    }
  }

  /**
   * x: [B, H, W, in]; emb: [B, embChannels] (already through its activation). In a tidy of its own: the
   * block's intermediates are freed when it returns, not when the whole network does (the full-size ImageNet 64
   * ADM's peaked at 1.25 GiB above its weights at batch 1, now 0.24 GiB; a gradient's saved tensors are the
   * engine's own copies).
   */
  apply(p: Params, x: tf.Tensor4D, emb: tf.Tensor2D, ctx: ForwardContext): tf.Tensor4D {
    return tf.tidy(() => this.applyUntidied(p, x, emb, ctx));
  }

  private applyUntidied(p: Params, x: tf.Tensor4D, emb: tf.Tensor2D, ctx: ForwardContext): tf.Tensor4D {
    const orig = x;
    let h = this.conv0.apply(p, this.norm0.apply(p, x, "silu"));
    const e = this.affine.apply(p, emb).reshape([emb.shape[0], 1, 1, -1]);
    if (this.opts.scaleShift) {
      const [scale, shift] = tf.split(e, 2, 3);
      h = silu(tf.add(tf.mul(this.norm1.apply(p, h), tf.add(scale, 1)), shift)) as tf.Tensor4D;
    } else {
      h = this.norm1.apply(p, h, "silu", e as tf.Tensor4D); // GroupNorm of h + e
    }
    h = this.conv1.apply(p, this.dropout.apply(h, ctx) as tf.Tensor4D);
    x = tf.mul(tf.add(h, this.skip ? this.skip.apply(p, orig) : orig), this.opts.skipScale);
    if (this.attention) x = tf.mul(tf.add(x, this.attention.apply(p, x)), this.opts.skipScale);
    return x;
  }
}

/** The decoder both U-Nets share (EDM's SongUNet / DhariwalUNet), built from the lowest resolution up. */
export interface Decoder {
  blocks: ResBlock[];
  channels: number;
  resolution: Resolution;
}

/**
 * At the lowest resolution two blocks (`in0` with attention, `in1`), at every other one an upsampling block
 * (`up`); then numBlocks + 1 blocks per resolution, each concatenating one encoder skip (`block{idx}`).
 * `options(res, idx)` gives a block's options (idx = −1 for in0/in1/up).
 */
export function buildDecoder(
  scope: Scope,
  start: { channels: number; resolution: Resolution },
  config: { channelMult: readonly number[]; modelChannels: number; numBlocks: number },
  skips: number[],
  options: (res: Resolution, idx: number) => ResBlockOptions,
): Decoder {
  const blocks: ResBlock[] = [];
  let cout = start.channels;
  let res = start.resolution;
  const name = (suffix: string) => scope.child(`${res[0]}x${res[1]}_${suffix}`);
  for (let level = config.channelMult.length - 1; level >= 0; level--) {
    if (level === config.channelMult.length - 1) {
      blocks.push(new ResBlock(name("in0"), cout, cout, res, { ...options(res, -1), attention: true }));
      blocks.push(new ResBlock(name("in1"), cout, cout, res, { ...options(res, -1), attention: false }));
    } else {
      const prev = res;
      res = [2 * prev[0], 2 * prev[1]];
      blocks.push(
        new ResBlock(name("up"), cout, cout, prev, { ...options(res, -1), up: true, attention: false }),
      );
    }
    for (let idx = 0; idx <= config.numBlocks; idx++) {
      const cin = cout + skips.pop()!;
      cout = config.modelChannels * config.channelMult[level];
      blocks.push(new ResBlock(name(`block${idx}`), cin, cout, res, options(res, idx)));
    }
  }
  return { blocks, channels: cout, resolution: res };
}

/** Runs the decoder: before a block that takes more channels than h has, the last encoder skip is appended. */
export function runDecoder(
  blocks: readonly ResBlock[],
  p: Params,
  h: tf.Tensor4D,
  skips: tf.Tensor4D[],
  emb: tf.Tensor2D,
  ctx: ForwardContext,
): tf.Tensor4D {
  for (const b of blocks) {
    if (h.shape[3] !== b.inChannels) h = tf.concat([h, skips.pop()!], 3);
    h = b.apply(p, h, emb, ctx);
  }
  return h;
}
