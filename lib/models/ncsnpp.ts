// NCSN++ (Song et al. 2021, score_sde), as configured for CIFAR-10 in CM/iCT and as EDM writes it (SongUNet
// with encoder "residual", decoder "standard"): BigGAN residual blocks with FIR [1,3,3,1] up/down-sampling,
// a residual progressive input path (the image, downsampled, is added back at every resolution), attention
// at 16×16, Gaussian Fourier noise embedding. iCT changes the Fourier scale from 16 to 0.02 (Sec. 3.1).
import * as tf from "@tensorflow/tfjs";
import { fourierFeatures } from "../embeddings.ts";
import { buildDecoder, ResBlock, type ResBlockOptions, runDecoder } from "../nn/blocks.ts";
import { Conv2d, Dense, GroupNorm, type InitMode, type Resolution, silu } from "../nn/layers.ts";
import { type ForwardContext, get, type Params, Scope } from "../nn/params.ts";
import { checkInputs, type Network } from "./network.ts";

export interface NcsnppConfig {
  family: "ncsnpp";
  /** Image side (square images). */
  resolution: number;
  /** Image channels in and out. */
  channels: number;
  /** Number of classes, 0 = unconditional. */
  labelDim: number;
  modelChannels: number;
  /** Channels per resolution, as multiples of modelChannels; one entry per resolution. */
  channelMult: number[];
  /** Embedding width = modelChannels·channelMultEmb. */
  channelMultEmb: number;
  /** Fourier features = modelChannels·channelMultNoise (half sines, half cosines). */
  channelMultNoise: number;
  /** Residual blocks per resolution (4 in iCT, 8 in iCT-deep). */
  numBlocks: number;
  attnResolutions: number[];
  dropout: number;
  /** Std of the fixed Fourier frequencies: 0.02 in iCT, 16 in CM. */
  fourierScale: number;
  resampleFilter: number[];
}

const XAVIER: InitMode = { mode: "xavier_uniform", weight: 1, bias: 0 };
const XAVIER_ZERO: InitMode = { mode: "xavier_uniform", weight: 1e-5, bias: 0 };
const XAVIER_ATTN: InitMode = { mode: "xavier_uniform", weight: Math.sqrt(0.2), bias: 0 };

type EncoderEntry =
  | { kind: "conv"; layer: Conv2d }
  | { kind: "block"; layer: ResBlock }
  | { kind: "auxResidual"; layer: Conv2d };

export class Ncsnpp implements Network {
  readonly sampleShape: readonly number[];
  readonly embedding = "fourier" as const;
  readonly labelDim: number;
  readonly specs;
  readonly cost;
  private readonly freqs: string;
  private readonly mapLabel?: Dense;
  private readonly mapLayer0: Dense;
  private readonly mapLayer1: Dense;
  private readonly enc: EncoderEntry[] = [];
  private readonly dec: ResBlock[];
  private readonly outNorm: GroupNorm;
  private readonly outConv: Conv2d;

  constructor(readonly config: NcsnppConfig) {
    const c = config;
    const scope = Scope.root();
    const levels = c.channelMult.length;
    if (c.resolution % 2 ** (levels - 1) !== 0) {
      throw new Error(
        `NCSN++: resolution ${c.resolution} must be divisible by 2^${levels - 1} (${levels} resolutions)`,
      );
    }
    this.sampleShape = [c.resolution, c.resolution, c.channels];
    this.labelDim = c.labelDim;
    const embChannels = c.modelChannels * c.channelMultEmb;
    const noiseChannels = c.modelChannels * c.channelMultNoise;
    const block: ResBlockOptions = {
      embChannels,
      heads: 1,
      dropout: c.dropout,
      skipScale: Math.SQRT1_2,
      eps: 1e-6,
      resampleFilter: c.resampleFilter,
      resampleProj: true,
      scaleShift: false,
      init: XAVIER,
      initZero: XAVIER_ZERO,
      initAttn: XAVIER_ATTN,
    };

    // Mapping: Fourier features of c_noise (+ label) → two dense layers.
    this.freqs = scope.child("map_noise").param("freqs", [noiseChannels / 2], {
      kind: "normal",
      std: c.fourierScale,
    }, false);
    if (c.labelDim) this.mapLabel = new Dense(scope.child("map_label"), c.labelDim, noiseChannels, XAVIER);
    this.mapLayer0 = new Dense(scope.child("map_layer0"), noiseChannels, embChannels, XAVIER);
    this.mapLayer1 = new Dense(scope.child("map_layer1"), embChannels, embChannels, XAVIER);

    // Encoder.
    const enc = scope.child("enc");
    const skips: number[] = [];
    let cout = c.channels;
    let caux = c.channels;
    let res: Resolution = [c.resolution, c.resolution];
    c.channelMult.forEach((mult, level) => {
      if (level === 0) {
        const conv = new Conv2d(enc.child(`${res[0]}x${res[1]}_conv`), cout, c.modelChannels, res, {
          kernel: 3,
          init: XAVIER,
        });
        cout = c.modelChannels;
        this.enc.push({ kind: "conv", layer: conv });
        skips.push(cout);
      } else {
        const prev = res;
        res = [prev[0] / 2, prev[1] / 2];
        const down = new ResBlock(enc.child(`${res[0]}x${res[1]}_down`), cout, cout, prev, {
          ...block,
          down: true,
        });
        this.enc.push({ kind: "block", layer: down });
        skips.push(cout);
        const aux = new Conv2d(enc.child(`${res[0]}x${res[1]}_aux_residual`), caux, cout, prev, {
          kernel: 3,
          down: true,
          fusedDown: true,
          resampleFilter: c.resampleFilter,
          init: XAVIER,
        });
        this.enc.push({ kind: "auxResidual", layer: aux });
        caux = cout;
      }
      for (let idx = 0; idx < c.numBlocks; idx++) {
        const cin = cout;
        cout = c.modelChannels * mult;
        const b = new ResBlock(enc.child(`${res[0]}x${res[1]}_block${idx}`), cin, cout, res, {
          ...block,
          attention: c.attnResolutions.includes(res[0]),
        });
        this.enc.push({ kind: "block", layer: b });
        skips.push(cout);
      }
    });

    // Decoder: attention only in the last block of a resolution.
    const dec = scope.child("dec");
    const decoder = buildDecoder(dec, { channels: cout, resolution: res }, c, skips, (r, idx) => ({
      ...block,
      attention: idx === c.numBlocks && c.attnResolutions.includes(r[0]),
    }));
    this.dec = decoder.blocks;
    [cout, res] = [decoder.channels, decoder.resolution];
    this.outNorm = new GroupNorm(dec.child(`${res[0]}x${res[1]}_aux_norm`), cout, res, 1e-6);
    this.outConv = new Conv2d(dec.child(`${res[0]}x${res[1]}_aux_conv`), cout, c.channels, res, {
      kernel: 3,
      init: XAVIER_ZERO,
    });
    this.specs = scope.specs;
    this.cost = scope.cost;
  }

  apply(
    p: Params,
    x: tf.Tensor,
    cNoise: tf.Tensor1D,
    ctx: ForwardContext,
    labels?: tf.Tensor2D,
  ): tf.Tensor4D {
    checkInputs(this, x, cNoise, labels);
    return tf.tidy(() => {
      let emb = fourierFeatures(cNoise, get(p, this.freqs) as tf.Tensor1D);
      // Class labels (if any): one-hot scaled by √labelDim, as in EDM's SongUNet.
      if (this.mapLabel && labels) {
        emb = tf.add(emb, this.mapLabel.apply(p, tf.mul(labels, Math.sqrt(this.labelDim))));
      }
      emb = silu(this.mapLayer0.apply(p, emb)) as tf.Tensor2D;
      emb = silu(this.mapLayer1.apply(p, emb)) as tf.Tensor2D;

      const skips: tf.Tensor4D[] = [];
      let h = x as tf.Tensor4D;
      let aux = x as tf.Tensor4D;
      for (const e of this.enc) {
        if (e.kind === "auxResidual") {
          h = aux = tf.mul(tf.add(h, e.layer.apply(p, aux)), Math.SQRT1_2); // residual progressive input
          skips[skips.length - 1] = h;
        } else {
          h = e.kind === "conv" ? e.layer.apply(p, h) : e.layer.apply(p, h, emb, ctx);
          skips.push(h);
        }
      }
      h = runDecoder(this.dec, p, h, skips, emb, ctx);
      return this.outConv.apply(p, this.outNorm.apply(p, h, "silu"));
    });
  }
}
