// ADM (Dhariwal & Nichol 2021) for class-conditional ImageNet 64×64, as iCT uses it through EDM's
// DhariwalUNet: 192 channels, ch_mult (1,2,3,4), 3 residual blocks per resolution, attention at 32, 16 and 8
// with 64 channels per head, positional noise embedding of c_noise = 250·ln σ, 2×2 average-pool / nearest
// resampling, a 1000-class label embedding added to the noise embedding.
//
// Choices, and why:
// - Scale-shift norm (AdaGN) is ON by default (`scaleShift: true`): the paper's 295.9M / 495.4M parameter
//   counts are those of the network with it (the affine layers output a scale AND a shift); without it the
//   count falls by 13.7M. The sCM paper reports that AdaGN destabilized consistency training at scale, so
//   it stays a config value; set `scaleShift: false` to test that (SETTINGS.md, Networks, [U]).
// - Dropout only at feature resolutions ≤ 16 (iCT, Sec. 5 setup), rate 0.2 [U: a config value].
//
// The same class holds OpenAI's ADM (guided-diffusion's UNetModel as openai/consistency_models uses it, with
// resblock_updown): its blocks are in the same order (input_blocks = enc, middle_block = dec in0/in1,
// output_blocks = the rest of dec), its timestep_embedding is `positionalEmbedding`, and the two differences are
// config values: `normGroups: 32` (GroupNorm32 everywhere, where EDM uses min(32, C/4)) and
// `dropoutMaxResolution` ≥ the resolution (dropout in every block). lib/openai_cm.ts maps the weights.
import * as tf from "@tensorflow/tfjs";
import { positionalEmbedding } from "../embeddings.ts";
import { buildDecoder, ResBlock, type ResBlockOptions, runDecoder } from "../nn/blocks.ts";
import { Conv2d, Dense, GroupNorm, type InitMode, type Resolution, silu } from "../nn/layers.ts";
import { type ForwardContext, type Params, Scope } from "../nn/params.ts";
import { checkInputs, type Network } from "./network.ts";

export interface AdmConfig {
  family: "adm";
  resolution: number;
  channels: number;
  /** Number of classes (1000 for ImageNet), 0 = unconditional. */
  labelDim: number;
  modelChannels: number;
  channelMult: number[];
  channelMultEmb: number;
  /** Residual blocks per resolution (3 in iCT, 6 in iCT-deep). */
  numBlocks: number;
  attnResolutions: number[];
  channelsPerHead: number;
  dropout: number;
  /** Dropout is applied only in blocks whose feature resolution is at most this. */
  dropoutMaxResolution: number;
  scaleShift: boolean;
  /** GroupNorm groups of every norm layer; absent: EDM's min(32, C/4). OpenAI's ADM: 32. */
  normGroups?: number;
}

// EDM's DhariwalUNet initialization: Kaiming-uniform with gain √(1/3) (PyTorch's default), zero for the last
// convolution of each block and of the network.
const INIT: InitMode = { mode: "kaiming_uniform", weight: Math.sqrt(1 / 3), bias: Math.sqrt(1 / 3) };
const INIT_ZERO: InitMode = { mode: "kaiming_uniform", weight: 0, bias: 0 };

export class Adm implements Network {
  readonly sampleShape: readonly number[];
  readonly embedding = "positional" as const;
  readonly labelDim: number;
  readonly specs;
  readonly cost;
  private readonly mapLayer0: Dense;
  private readonly mapLayer1: Dense;
  private readonly mapLabel?: Dense;
  private readonly enc: (Conv2d | ResBlock)[] = [];
  private readonly dec: ResBlock[];
  private readonly outNorm: GroupNorm;
  private readonly outConv: Conv2d;

  constructor(readonly config: AdmConfig) {
    const c = config;
    const levels = c.channelMult.length;
    if (c.resolution % 2 ** (levels - 1) !== 0) {
      throw new Error(
        `ADM: resolution ${c.resolution} must be divisible by 2^${levels - 1} (${levels} resolutions)`,
      );
    }
    const scope = Scope.root();
    this.sampleShape = [c.resolution, c.resolution, c.channels];
    this.labelDim = c.labelDim;
    const embChannels = c.modelChannels * c.channelMultEmb;
    const block = (res: Resolution, extra: Partial<ResBlockOptions> = {}): ResBlockOptions => ({
      embChannels,
      channelsPerHead: c.channelsPerHead,
      dropout: res[0] <= c.dropoutMaxResolution ? c.dropout : 0,
      skipScale: 1,
      eps: 1e-5,
      resampleFilter: [1, 1],
      resampleProj: false,
      scaleShift: c.scaleShift,
      normGroups: c.normGroups,
      init: INIT,
      initZero: INIT_ZERO,
      initAttn: INIT,
      ...extra,
    });

    this.mapLayer0 = new Dense(scope.child("map_layer0"), c.modelChannels, embChannels, INIT);
    this.mapLayer1 = new Dense(scope.child("map_layer1"), embChannels, embChannels, INIT);
    if (c.labelDim) {
      this.mapLabel = new Dense(scope.child("map_label"), c.labelDim, embChannels, {
        mode: "kaiming_normal",
        weight: Math.sqrt(c.labelDim),
        bias: 0,
      }, false);
    }

    const enc = scope.child("enc");
    const skips: number[] = [];
    let cout = c.channels;
    let res: Resolution = [c.resolution, c.resolution];
    const name = () => `${res[0]}x${res[1]}`;
    c.channelMult.forEach((mult, level) => {
      if (level === 0) {
        const cin = cout;
        cout = c.modelChannels * mult;
        this.enc.push(new Conv2d(enc.child(`${name()}_conv`), cin, cout, res, { kernel: 3, init: INIT }));
      } else {
        const prev = res;
        res = [prev[0] / 2, prev[1] / 2];
        this.enc.push(
          new ResBlock(enc.child(`${name()}_down`), cout, cout, prev, block(res, { down: true })),
        );
      }
      skips.push(cout);
      for (let idx = 0; idx < c.numBlocks; idx++) {
        const cin = cout;
        cout = c.modelChannels * mult;
        const attention = c.attnResolutions.includes(res[0]);
        this.enc.push(
          new ResBlock(enc.child(`${name()}_block${idx}`), cin, cout, res, block(res, { attention })),
        );
        skips.push(cout);
      }
    });

    const dec = buildDecoder(
      scope.child("dec"),
      { channels: cout, resolution: res },
      c,
      skips,
      (r) => block(r, { attention: c.attnResolutions.includes(r[0]) }),
    );
    this.dec = dec.blocks;
    [cout, res] = [dec.channels, dec.resolution];
    this.outNorm = new GroupNorm(scope.child("out_norm"), cout, res, 1e-5, c.normGroups);
    this.outConv = new Conv2d(scope.child("out_conv"), cout, c.channels, res, { kernel: 3, init: INIT_ZERO });
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
      let emb = positionalEmbedding(cNoise, this.config.modelChannels);
      emb = silu(this.mapLayer0.apply(p, emb)) as tf.Tensor2D;
      emb = this.mapLayer1.apply(p, emb);
      if (this.mapLabel && labels) emb = tf.add(emb, this.mapLabel.apply(p, labels));
      emb = silu(emb) as tf.Tensor2D;

      const skips: tf.Tensor4D[] = [];
      let h = x as tf.Tensor4D;
      for (const layer of this.enc) {
        h = layer instanceof Conv2d ? layer.apply(p, h) : layer.apply(p, h, emb, ctx);
        skips.push(h);
      }
      h = runDecoder(this.dec, p, h, skips, emb, ctx);
      return this.outConv.apply(p, this.outNorm.apply(p, h, "silu"));
    });
  }
}
