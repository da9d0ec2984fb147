// The consistency models that openai/consistency_models released (the CM paper's CD-ℓ2, CD-LPIPS and CT on
// ImageNet 64, LSUN Bedroom 256 and LSUN Cat 256), as runs of the kit.
//
// Their network is guided-diffusion's UNetModel (cm/unet.py), the same ADM family as the kit's `Adm`
// (lib/models/adm.ts): with resblock_updown the blocks come in the same order, so the import is a renaming
// plus layout changes (OIHW → HWIO convolutions, [out, in] → [in, out] linear layers, and the attention's qkv
// channels). Their consistency function is the kit's Eq. 2 with the same coefficients: KarrasDenoiser.denoise
// with distillation=True uses c_skip = σ_d²/((σ − σ_min)² + σ_d²), c_out = (σ − σ_min)σ_d/√(σ² + σ_d²),
// c_in = 1/√(σ² + σ_d²) with σ_min = 0.002, σ_d = 0.5, and c_noise = 1000·0.25·ln(σ + 1e-44) (the kit's
// `cNoisePositional`), fed to timestep_embedding (the kit's `positionalEmbedding`: [cos | sin], 10000^(−k/half)).
//
// Attention: UNetModel never passes `attention_type`, so every AttentionBlock of the released models is the
// "flash" one, whose qkv output channels are laid out "(three h d)": all q, then all k, then all v, each
// [head, channel]. The kit's SelfAttention takes [head, channel, (q, k, v)] (EDM's layout), so the qkv rows are
// permuted on import. (guided-diffusion's original QKVAttentionLegacy, "(h three d)", is not what they use.)
//
// Tested against their own code: tests/reference/openai_cm_reference.py builds a small UNetModel with random
// weights, and tests/openai_cm_test.ts checks that import + f_θ reproduce their `denoise` outputs.
import * as tf from "@tensorflow/tfjs";
import { checkStop } from "./cli.ts";
import { ConsistencyModel } from "./consistency_model.ts";
import { saveCheckpoint, type TensorEntry } from "./io/checkpoint.ts";
import { downloadWithHash, writeFileAtomic } from "./io/fs.ts";
import { readTorchFile, torchFileFormat, type TorchTensor } from "./io/torch_pickle.ts";
import type { AdmConfig } from "./models/adm.ts";
import { buildNetwork } from "./models/index.ts";
import { oneHotLabels } from "./models/network.ts";
import { EVAL } from "./nn/params.ts";
import { SIGMA_DATA } from "./parameterization.ts";
import { RHO, SIGMA_MAX, SIGMA_MIN } from "./schedules.ts";
import { preset, type TrainConfig } from "./train/config.ts";
import { checkpointPath } from "./train/run.ts";

/** cm/script_util.py: class-conditional models have 1000 classes (ImageNet). */
export const OPENAI_NUM_CLASSES = 1000;

/**
 * The model flags of cm/script_util.py (their `--image_size 64 --num_channels 192 …`), as a JSON `--arch` holds
 * them. `num_classes` is not one of their flags (create_model fixes 1000) but UNetModel's own argument.
 */
export interface OpenAiModelFlags {
  image_size: number;
  num_channels: number;
  num_res_blocks: number;
  /** Pixel resolutions, "32,16,8" (their flag) or [32, 16, 8]. */
  attention_resolutions: string | number[];
  num_heads: number;
  num_heads_upsample: number;
  num_head_channels: number;
  /** "" = their default for the image size; "1,2,3,4" or [1, 2, 3, 4]. */
  channel_mult: string | number[];
  dropout: number;
  class_cond: boolean;
  num_classes?: number;
  use_checkpoint: boolean;
  use_scale_shift_norm: boolean;
  resblock_updown: boolean;
  use_fp16: boolean;
  use_new_attention_order: boolean;
  learn_sigma: boolean;
  /** Diffusion flags that come with the model flags: σ_min must be the kit's 0.002. */
  sigma_min: number;
  sigma_max: number;
  weight_schedule: string;
}

/** cm/script_util.py model_and_diffusion_defaults(): what a flag that is not given is. */
export const OPENAI_DEFAULTS: OpenAiModelFlags = {
  sigma_min: 0.002,
  sigma_max: 80.0,
  image_size: 64,
  num_channels: 128,
  num_res_blocks: 2,
  num_heads: 4,
  num_heads_upsample: -1,
  num_head_channels: -1,
  attention_resolutions: "32,16,8",
  channel_mult: "",
  dropout: 0.0,
  class_cond: false,
  use_checkpoint: false,
  use_scale_shift_norm: true,
  resblock_updown: false,
  use_fp16: false,
  use_new_attention_order: false,
  learn_sigma: false,
  weight_schedule: "karras",
};

/** Flags from cm/script_util.py's keys that only matter to training or to their sampler: accepted, unused. */
const IGNORED_FLAGS = ["training_mode", "sampler", "ts", "steps", "generator", "batch_size", "num_samples"];

/** The flags of the released models (scripts/launch.sh, their README). */
export const OPENAI_ARCHES: Record<"imagenet64" | "bedroom256" | "cat256", Partial<OpenAiModelFlags>> = {
  imagenet64: {
    attention_resolutions: "32,16,8",
    class_cond: true,
    use_scale_shift_norm: true,
    dropout: 0.0,
    image_size: 64,
    num_channels: 192,
    num_head_channels: 64,
    num_res_blocks: 3,
    resblock_updown: true,
    use_fp16: true,
    weight_schedule: "uniform",
  },
  bedroom256: {
    attention_resolutions: "32,16,8",
    class_cond: false,
    use_scale_shift_norm: false,
    dropout: 0.0,
    image_size: 256,
    num_channels: 256,
    num_head_channels: 64,
    num_res_blocks: 2,
    resblock_updown: true,
    use_fp16: true,
    weight_schedule: "uniform",
  },
  cat256: {}, // the same network as bedroom256 (filled in below)
};
OPENAI_ARCHES.cat256 = { ...OPENAI_ARCHES.bedroom256 };

export type OpenAiArch = keyof typeof OPENAI_ARCHES;

/** A released checkpoint: where it is, its network, and CM's tuned two-step schedule (launch.sh `--ts`). */
export interface ReleasedModel {
  file: string;
  arch: OpenAiArch;
  /** CM's multistep sampler: ts = [0, mid, steps − 1] on a Karras grid of `steps` σ's. */
  ts: { mid: number; steps: number };
  /** The file's sha256 where a source for it was found; undefined: not published (see README). */
  sha256?: string;
}

export const OPENAI_CM_BASE_URL = "https://openaipublic.blob.core.windows.net/consistency/";

/**
 * The consistency models of their README. The `ts` are those of scripts/launch.sh (cd_cat256 models have no
 * line there: the bedroom values are used). OpenAI publishes no checksums for these files, so none is pinned.
 */
export const RELEASED_MODELS: Record<string, ReleasedModel> = {
  cd_imagenet64_l2: { file: "cd_imagenet64_l2.pt", arch: "imagenet64", ts: { mid: 22, steps: 40 } },
  cd_imagenet64_lpips: { file: "cd_imagenet64_lpips.pt", arch: "imagenet64", ts: { mid: 22, steps: 40 } },
  ct_imagenet64: { file: "ct_imagenet64.pt", arch: "imagenet64", ts: { mid: 106, steps: 201 } },
  cd_bedroom256_l2: { file: "cd_bedroom256_l2.pt", arch: "bedroom256", ts: { mid: 18, steps: 40 } },
  cd_bedroom256_lpips: { file: "cd_bedroom256_lpips.pt", arch: "bedroom256", ts: { mid: 17, steps: 40 } },
  ct_bedroom256: { file: "ct_bedroom256.pt", arch: "bedroom256", ts: { mid: 67, steps: 151 } },
  cd_cat256_l2: { file: "cd_cat256_l2.pt", arch: "cat256", ts: { mid: 18, steps: 40 } },
  cd_cat256_lpips: { file: "cd_cat256_lpips.pt", arch: "cat256", ts: { mid: 17, steps: 40 } },
  ct_cat256: { file: "ct_cat256.pt", arch: "cat256", ts: { mid: 62, steps: 151 } },
};

/** σ at index i of CM's Karras grid of `steps` noise levels (karras_diffusion.py stochastic_iterative_sampler). */
export function karrasSigma(i: number, steps: number): number {
  const [lo, hi] = [SIGMA_MIN ** (1 / RHO), SIGMA_MAX ** (1 / RHO)];
  return (hi + (i / (steps - 1)) * (lo - hi)) ** RHO;
}

export class OpenAiImportError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "OpenAiImportError";
  }
}

// ---- flags → the kit's config ------------------------------------------------------------------------------

const BOOL_FLAGS = new Set(
  Object.entries(OPENAI_DEFAULTS).filter(([, v]) => typeof v === "boolean").map(([k]) => k),
);

/** OpenAI's flags with their defaults filled in; unknown names and mistyped values are refused. */
export function resolveFlags(raw: Record<string, unknown>, source: string): OpenAiModelFlags {
  const known = new Set([...Object.keys(OPENAI_DEFAULTS), "num_classes"]);
  const out: Record<string, unknown> = { ...OPENAI_DEFAULTS };
  for (const [k, v] of Object.entries(raw)) {
    if (IGNORED_FLAGS.includes(k)) continue;
    if (!known.has(k)) {
      throw new OpenAiImportError(
        `${source}: unknown model flag "${k}": cm/script_util.py's model flags are ${[...known].join(", ")}`,
      );
    }
    if (BOOL_FLAGS.has(k)) {
      // Their argparse takes True/False strings (str2bool); JSON may hold booleans.
      const s = String(v).toLowerCase();
      if (["true", "t", "yes", "y", "1"].includes(s)) out[k] = true;
      else if (["false", "f", "no", "n", "0"].includes(s)) out[k] = false;
      else throw new OpenAiImportError(`${source}: ${k} must be true or false, got ${JSON.stringify(v)}`);
    } else if (["attention_resolutions", "channel_mult", "weight_schedule"].includes(k)) {
      if (typeof v !== "string" && !(Array.isArray(v) && v.every((x) => typeof x === "number"))) {
        throw new OpenAiImportError(
          `${source}: ${k} must be a comma-separated string or a list of numbers, got ${JSON.stringify(v)}`,
        );
      }
      out[k] = v;
    } else {
      const x = typeof v === "string" ? Number(v) : v;
      if (typeof x !== "number" || !Number.isFinite(x)) {
        throw new OpenAiImportError(`${source}: ${k} must be a number, got ${JSON.stringify(v)}`);
      }
      out[k] = x;
    }
  }
  return out as unknown as OpenAiModelFlags;
}

function numberList(v: string | number[], name: string): number[] {
  const list = Array.isArray(v) ? v : v.split(",").filter((s) => s.trim() !== "").map(Number);
  if (list.some((x) => !Number.isFinite(x) || x <= 0)) {
    throw new OpenAiImportError(`${name} must list positive numbers, got ${JSON.stringify(v)}`);
  }
  return list;
}

/**
 * The kit's AdmConfig of OpenAI's model flags (cm/script_util.py create_model → UNetModel). What the kit's
 * `Adm` cannot express is refused with the flag that would have to change.
 */
export function admConfigFromFlags(flags: OpenAiModelFlags): AdmConfig {
  const f = flags;
  const refuse = (why: string) => {
    throw new OpenAiImportError(`unsupported OpenAI model flags: ${why}`);
  };
  for (const k of ["image_size", "num_channels", "num_res_blocks"] as const) {
    if (!Number.isInteger(f[k]) || f[k] < 1) refuse(`${k} must be a positive integer, got ${f[k]}`);
  }
  if (f.learn_sigma) {
    refuse("learn_sigma true (6 output channels, a diffusion model's variance): consistency models have 3");
  }
  if (!f.resblock_updown) {
    refuse(
      "resblock_updown false (strided-convolution Downsample / Upsample layers): the kit's ADM resamples " +
        "inside residual blocks, as every released consistency model does (resblock_updown true)",
    );
  }
  if (!(f.num_head_channels > 0)) {
    refuse(
      `num_head_channels ${f.num_head_channels} (a fixed number of heads, num_heads): the kit's ADM splits ` +
        "attention into heads of num_head_channels channels, as the released models do (64)",
    );
  }
  if (f.sigma_min !== SIGMA_MIN) {
    refuse(`sigma_min ${f.sigma_min}: the kit's consistency function has σ_min = ${SIGMA_MIN}`);
  }
  if (!(f.dropout >= 0 && f.dropout < 1)) refuse(`dropout must be in [0, 1), got ${f.dropout}`);
  let mult: number[];
  if (f.channel_mult === "" || (Array.isArray(f.channel_mult) && f.channel_mult.length === 0)) {
    const byRes: Record<number, number[]> = {
      512: [0.5, 1, 1, 2, 2, 4, 4],
      256: [1, 1, 2, 2, 4, 4],
      128: [1, 1, 2, 3, 4],
      64: [1, 2, 3, 4],
    };
    mult = byRes[f.image_size] ??
      refuse(`image_size ${f.image_size} has no default channel_mult (cm/script_util.py): give channel_mult`);
  } else {
    mult = numberList(f.channel_mult, "channel_mult");
    // create_model parses the flag with int(); a JSON list of numbers is taken as UNetModel's argument.
  }
  for (const m of mult) {
    const ch = Math.trunc(m * f.num_channels);
    if (ch % 32 !== 0) {
      refuse(
        `channel_mult ${m} × num_channels ${f.num_channels} = ${ch} channels: GroupNorm32 needs a multiple of 32`,
      );
    }
    if (ch % f.num_head_channels !== 0) {
      refuse(`${ch} channels do not split into heads of num_head_channels ${f.num_head_channels}`);
    }
    if (ch !== m * f.num_channels) {
      refuse(`channel_mult ${m} × num_channels ${f.num_channels} is not an integer`);
    }
  }
  const levels = mult.length;
  if (f.image_size % 2 ** (levels - 1) !== 0) {
    refuse(`image_size ${f.image_size} is not divisible by 2^${levels - 1} (${levels} resolutions)`);
  }
  const resolutions = new Set(mult.map((_, i) => f.image_size / 2 ** i));
  const attn = numberList(f.attention_resolutions, "attention_resolutions");
  // create_model turns each into a downsampling rate image_size // res; UNetModel puts attention where ds matches.
  const attnRes = attn.map((r) => f.image_size / Math.floor(f.image_size / r)).filter((r) =>
    resolutions.has(r)
  );
  const numClasses = f.class_cond ? (f.num_classes ?? OPENAI_NUM_CLASSES) : 0;
  if (f.class_cond && !(Number.isInteger(numClasses) && numClasses >= 1)) {
    refuse(`num_classes must be a positive integer, got ${f.num_classes}`);
  }
  return {
    family: "adm",
    resolution: f.image_size,
    channels: 3,
    labelDim: numClasses,
    modelChannels: f.num_channels,
    channelMult: mult,
    channelMultEmb: 4,
    numBlocks: f.num_res_blocks,
    attnResolutions: [...new Set(attnRes)].sort((a, b) => b - a),
    channelsPerHead: f.num_head_channels,
    dropout: f.dropout,
    // OpenAI's ResBlock has dropout at every resolution.
    dropoutMaxResolution: f.image_size,
    scaleShift: f.use_scale_shift_norm,
    normGroups: 32,
  };
}

/** `--arch`: a released architecture's name, or a JSON file of OpenAI's model flags. */
export async function archFlags(arch: string): Promise<{ name: string; flags: OpenAiModelFlags }> {
  if (arch in OPENAI_ARCHES) {
    return { name: arch, flags: resolveFlags(OPENAI_ARCHES[arch as OpenAiArch], `--arch ${arch}`) };
  }
  if (!arch.endsWith(".json")) {
    throw new OpenAiImportError(
      `--arch "${arch}": use one of ${Object.keys(OPENAI_ARCHES).join(", ")} or a JSON file of OpenAI's ` +
        `model flags (e.g. {"image_size": 64, "num_channels": 192, …})`,
    );
  }
  let text: string;
  try {
    text = await Deno.readTextFile(arch);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new OpenAiImportError(`--arch ${arch}: file not found`);
    throw e;
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new OpenAiImportError(`--arch ${arch}: not valid JSON (${(e as Error).message})`);
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new OpenAiImportError(`--arch ${arch}: must hold a JSON object of model flags`);
  }
  return { name: arch, flags: resolveFlags(raw as Record<string, unknown>, arch) };
}

// ---- parameter names and layouts ---------------------------------------------------------------------------

/** How a tensor changes from OpenAI's layout to the kit's. */
type Layout = "vector" | "linear" | "conv" | "qkv" | "embedding";

export interface ParamPair {
  kit: string;
  openai: string;
  layout: Layout;
}

/** OpenAI's module path of each residual block (and its attention block), in the order UNetModel runs them. */
function openAiBlocks(c: AdmConfig): { res: string; attn?: string }[] {
  const levels = c.channelMult.length;
  const out: { res: string; attn?: string }[] = [];
  let k = 1; // input_blocks.0 is the first convolution
  for (let level = 0; level < levels; level++) {
    const res = c.resolution / 2 ** level;
    for (let i = 0; i < c.numBlocks; i++, k++) {
      out.push({
        res: `input_blocks.${k}.0`,
        attn: c.attnResolutions.includes(res) ? `input_blocks.${k}.1` : undefined,
      });
    }
    if (level !== levels - 1) out.push({ res: `input_blocks.${k++}.0` });
  }
  out.push({ res: "middle_block.0", attn: "middle_block.1" }, { res: "middle_block.2" });
  k = 0;
  for (let level = levels - 1; level >= 0; level--) {
    const res = c.resolution / 2 ** level;
    for (let i = 0; i <= c.numBlocks; i++, k++) {
      const attention = c.attnResolutions.includes(res);
      out.push({ res: `output_blocks.${k}.0`, attn: attention ? `output_blocks.${k}.1` : undefined });
      if (level > 0 && i === c.numBlocks) out.push({ res: `output_blocks.${k}.${attention ? 2 : 1}` });
    }
  }
  return out;
}

const RES_PARTS: [string, string, Layout][] = [
  ["norm0.weight", "in_layers.0.weight", "vector"],
  ["norm0.bias", "in_layers.0.bias", "vector"],
  ["conv0.weight", "in_layers.2.weight", "conv"],
  ["conv0.bias", "in_layers.2.bias", "vector"],
  ["affine.weight", "emb_layers.1.weight", "linear"],
  ["affine.bias", "emb_layers.1.bias", "vector"],
  ["norm1.weight", "out_layers.0.weight", "vector"],
  ["norm1.bias", "out_layers.0.bias", "vector"],
  ["conv1.weight", "out_layers.3.weight", "conv"],
  ["conv1.bias", "out_layers.3.bias", "vector"],
  ["skip.weight", "skip_connection.weight", "conv"],
  ["skip.bias", "skip_connection.bias", "vector"],
];
const ATTN_PARTS: [string, string, Layout][] = [
  ["norm2.weight", "norm.weight", "vector"],
  ["norm2.bias", "norm.bias", "vector"],
  ["qkv.weight", "qkv.weight", "qkv"],
  ["qkv.bias", "qkv.bias", "qkv"],
  ["proj.weight", "proj_out.weight", "conv"],
  ["proj.bias", "proj_out.bias", "vector"],
];

/** Every parameter of the kit's network for `config`, with OpenAI's name for it and the layout change. */
export function openAiParamPairs(config: AdmConfig): ParamPair[] {
  const net = buildNetwork(config);
  const names = new Set(net.specs.map((s) => s.name));
  // The kit's residual blocks, in the order they were built (= the order they run).
  const kitBlocks = net.specs.filter((s) => s.name.endsWith(".norm0.weight")).map((s) =>
    s.name.slice(0, -".norm0.weight".length)
  );
  const theirs = openAiBlocks(config);
  if (kitBlocks.length !== theirs.length) {
    throw new Error(`internal: ${kitBlocks.length} kit blocks, ${theirs.length} OpenAI blocks`);
  }
  const pairs: ParamPair[] = [];
  const add = (kit: string, openai: string, layout: Layout) => {
    if (names.has(kit)) pairs.push({ kit, openai, layout });
  };
  add("map_layer0.weight", "time_embed.0.weight", "linear");
  add("map_layer0.bias", "time_embed.0.bias", "vector");
  add("map_layer1.weight", "time_embed.2.weight", "linear");
  add("map_layer1.bias", "time_embed.2.bias", "vector");
  add("map_label.weight", "label_emb.weight", "embedding");
  const first = `enc.${config.resolution}x${config.resolution}_conv`;
  add(`${first}.weight`, "input_blocks.0.0.weight", "conv");
  add(`${first}.bias`, "input_blocks.0.0.bias", "vector");
  kitBlocks.forEach((kit, i) => {
    const { res, attn } = theirs[i];
    for (const [k, o, layout] of RES_PARTS) add(`${kit}.${k}`, `${res}.${o}`, layout);
    const kitHasAttn = names.has(`${kit}.qkv.weight`);
    if (kitHasAttn !== (attn !== undefined)) {
      throw new Error(`internal: attention of ${kit} (${kitHasAttn}) vs ${res} (${attn !== undefined})`);
    }
    if (attn) { for (const [k, o, layout] of ATTN_PARTS) add(`${kit}.${k}`, `${attn}.${o}`, layout); }
  });
  add("out_norm.weight", "out.0.weight", "vector");
  add("out_norm.bias", "out.0.bias", "vector");
  add("out_conv.weight", "out.2.weight", "conv");
  add("out_conv.bias", "out.2.bias", "vector");
  if (pairs.length !== names.size) {
    const mapped = new Set(pairs.map((p) => p.kit));
    throw new Error(`internal: no OpenAI name for ${[...names].filter((n) => !mapped.has(n)).join(", ")}`);
  }
  return pairs;
}

/** OpenAI's shape of a tensor the kit holds with shape `kit`. */
function theirShape(kit: readonly number[], layout: Layout): number[] {
  switch (layout) {
    case "vector":
    case "embedding":
      return [...kit];
    case "linear":
      return [kit[1], kit[0]];
    case "conv":
      return [kit[3], kit[2], kit[0], kit[1]];
    case "qkv":
      return kit.length === 1 ? [...kit] : [kit[3], kit[2], 1, 1];
  }
}

/** The names and shapes of the state_dict OpenAI's UNetModel has for `config` (PyTorch layouts). */
export function openAiStateShapes(config: AdmConfig): Map<string, number[]> {
  const shapes = new Map(buildNetwork(config).specs.map((s) => [s.name, s.shape]));
  return new Map(openAiParamPairs(config).map((p) => [p.openai, theirShape(shapes.get(p.kit)!, p.layout)]));
}

/**
 * The qkv row permutation: the kit's output channel (h·d + j)·3 + t ([head, channel, (q, k, v)], EDM) takes
 * OpenAI's row t·C + h·d + j ("(three h d)", the flash attention layout of cm/unet.py).
 */
export function qkvSourceRow(kitRow: number, channels: number): number {
  const t = kitRow % 3;
  const hj = (kitRow - t) / 3;
  return t * channels + hj;
}

function toKitLayout(src: Float32Array, kitShape: readonly number[], layout: Layout): Float32Array {
  switch (layout) {
    case "vector":
    case "embedding":
      return src;
    case "linear": { // [out, in] → [in, out]
      const [nin, nout] = kitShape;
      const dst = new Float32Array(src.length);
      for (let o = 0; o < nout; o++) for (let i = 0; i < nin; i++) dst[i * nout + o] = src[o * nin + i];
      return dst;
    }
    case "conv": { // [O, I, KH, KW] → [KH, KW, I, O]
      const [kh, kw, nin, nout] = kitShape;
      const dst = new Float32Array(src.length);
      for (let o = 0; o < nout; o++) {
        for (let i = 0; i < nin; i++) {
          for (let y = 0; y < kh; y++) {
            for (let x = 0; x < kw; x++) {
              dst[((y * kw + x) * nin + i) * nout + o] = src[((o * nin + i) * kh + y) * kw + x];
            }
          }
        }
      }
      return dst;
    }
    case "qkv": {
      const rows = kitShape[kitShape.length - 1];
      const channels = rows / 3;
      const nin = kitShape.length === 1 ? 1 : kitShape[2];
      const dst = new Float32Array(src.length);
      for (let r = 0; r < rows; r++) {
        const s = qkvSourceRow(r, channels);
        if (kitShape.length === 1) dst[r] = src[s];
        else for (let i = 0; i < nin; i++) dst[i * rows + r] = src[s * nin + i];
      }
      return dst;
    }
  }
}

/**
 * OpenAI's state_dict (parameter name → tensor) as the kit's parameters for `config`. Every parameter the
 * network needs must be there with OpenAI's shape for it, and every tensor of the file must be used; the error
 * lists what is wrong (up to 10 items) and says to check --arch.
 */
export function convertOpenAiState(
  tensors: ReadonlyMap<string, TorchTensor>,
  config: AdmConfig,
  source: string,
): Map<string, TensorEntry> {
  const pairs = openAiParamPairs(config);
  const shapes = new Map(buildNetwork(config).specs.map((s) => [s.name, s.shape]));
  const problems: string[] = [];
  const out = new Map<string, TensorEntry>();
  for (const { kit, openai, layout } of pairs) {
    const t = tensors.get(openai);
    const kitShape = shapes.get(kit)!;
    const want = theirShape(kitShape, layout);
    if (!t) {
      problems.push(`${openai} is missing`);
      continue;
    }
    if (t.shape.join(",") !== want.join(",")) {
      problems.push(`${openai} has shape [${t.shape}], the architecture needs [${want}]`);
      continue;
    }
    if (t.dtype !== "F32" && t.dtype !== "F64") {
      problems.push(`${openai} is ${t.dtype}, not a floating-point tensor`);
      continue;
    }
    const src = t.data instanceof Float32Array ? t.data : Float32Array.from(t.data as Float64Array);
    out.set(kit, { dtype: "F32", shape: [...kitShape], data: toKitLayout(src, kitShape, layout) });
  }
  const used = new Set(pairs.map((p) => p.openai));
  for (const name of tensors.keys()) {
    if (!used.has(name)) problems.push(`${name} is not part of the architecture`);
  }
  if (problems.length) {
    const shown = problems.slice(0, 10).join("; ") +
      (problems.length > 10 ? `; … ${problems.length - 10} more` : "");
    throw new OpenAiImportError(
      `${source} does not match the architecture (check --arch): ${shown}`,
    );
  }
  return out;
}

// ---- a run directory -------------------------------------------------------------------------------------

export interface ImportOptions {
  checkpoint: string;
  /** imagenet64 | bedroom256 | cat256 | FILE.json */
  arch: string;
  out: string;
  /** Replace the checkpoints of a run directory that already has some (they are deleted). */
  force?: boolean;
}

export interface ImportRecord {
  format: "ict-kit-openai-cm-import-1";
  source: string;
  sourceBytes: number;
  sha256: string;
  /** The released model this file is, when its name is one (sets the two-step σ). */
  releasedModel?: string;
  arch: string;
  flags: OpenAiModelFlags;
  parameters: number;
  importedAt: string;
}

async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * The run config of an imported model: the imagenet64 preset (σ_data 0.5, the loop settings) with the imported
 * network, and as two-step σ CM's tuned one for a released model (launch.sh `--ts`), else the preset's.
 */
export function importedRunConfig(model: AdmConfig, released?: ReleasedModel): TrainConfig {
  const c = preset("imagenet64");
  c.preset = "openai-cm";
  c.model = model;
  c.sigmaData = SIGMA_DATA;
  if (released) c.sigmaMid = karrasSigma(released.ts.mid, released.ts.steps);
  return c;
}

/**
 * `deno task import:openai-cm`: reads a torch.save file of OpenAI's UNetModel with the kit's safe unpickler,
 * converts it for `--arch`, and writes a run directory that `sample`, `denoise`, `fid` and the notebooks read:
 *   OUT/config.json                        the run config (the imported network in `model`)
 *   OUT/checkpoints/step-00000000.safetensors   the weights as the `ema` group (what sampling uses)
 *   OUT/import.json                        the source file, its sha256 and size, the flags
 */
export async function importOpenAiCheckpoint(
  opts: ImportOptions,
): Promise<{ runDir: string; checkpoint: string; record: ImportRecord }> {
  const { name: archName, flags } = await archFlags(opts.arch);
  const config = admConfigFromFlags(flags);
  const ckpt = checkpointPath(opts.out, 0);
  if (!opts.force) {
    try {
      await Deno.stat(`${opts.out}/checkpoints`);
      throw new OpenAiImportError(
        `${opts.out} already holds checkpoints: choose another --out, or pass --force to replace them`,
      );
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
  }
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(opts.checkpoint);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new OpenAiImportError(
        `--checkpoint ${opts.checkpoint}: file not found (deno task data:openai-cm --model NAME downloads one)`,
      );
    }
    throw e;
  }
  const fileName = opts.checkpoint.split("/").pop()!;
  if (fileName.startsWith("edm_")) {
    throw new OpenAiImportError(
      `${opts.checkpoint}: ${fileName} is one of their EDM diffusion models (the distillation teachers), not a ` +
        "consistency model: its denoiser uses EDM's scalings without σ_min and needs an ODE solver to sample. " +
        "Import a cd_* or ct_* file.",
    );
  }
  const sha256 = await sha256Hex(bytes);
  const sourceBytes = bytes.length;
  let tensors: Map<string, TorchTensor> | undefined = readTorchFile(bytes, opts.checkpoint);
  bytes = new Uint8Array(0);
  const converted = convertOpenAiState(tensors, config, opts.checkpoint);
  tensors = undefined;
  const base = fileName.replace(/\.pt$/, "");
  const releasedModel = base in RELEASED_MODELS ? base : undefined;
  const released = releasedModel ? RELEASED_MODELS[releasedModel] : undefined;
  if (released) {
    const want = released.sha256;
    if (want && want !== sha256) {
      throw new OpenAiImportError(
        `${opts.checkpoint}: sha256 ${sha256} is not that of the released ${released.file} (${want}): ` +
          "download it again (deno task data:openai-cm)",
      );
    }
  }
  const runConfig = importedRunConfig(config, released);
  let parameters = 0;
  for (const t of converted.values()) parameters += t.data.length;
  const record: ImportRecord = {
    format: "ict-kit-openai-cm-import-1",
    source: opts.checkpoint,
    sourceBytes,
    sha256,
    releasedModel,
    arch: archName,
    flags,
    parameters,
    importedAt: new Date().toISOString(),
  };
  // --force: the imported weights become the run's only checkpoint (an older, later step would be "newest").
  if (opts.force) await Deno.remove(`${opts.out}/checkpoints`, { recursive: true }).catch(() => {});
  await Deno.mkdir(`${opts.out}/checkpoints`, { recursive: true });
  const params = new Map<string, tf.Tensor>();
  for (const [name, t] of converted) params.set(name, tf.tensor(t.data as Float32Array, t.shape, "float32"));
  converted.clear();
  try {
    await saveCheckpoint(ckpt, {
      config: runConfig,
      groups: { ema: params },
      state: { step: 0, importedFrom: { source: record.source, sha256, arch: archName } },
    });
  } finally {
    for (const t of params.values()) t.dispose();
  }
  await writeFileAtomic(`${opts.out}/config.json`, JSON.stringify(runConfig, null, 2) + "\n");
  await writeFileAtomic(`${opts.out}/import.json`, JSON.stringify(record, null, 2) + "\n");
  return { runDir: opts.out, checkpoint: ckpt, record };
}

/**
 * The committed parity fixture (tests/reference/openai_cm_reference.py: a 355k-parameter UNetModel of their code
 * with random weights, 16×16, 10 classes). `importOpenAiCheckpoint({ ...TINY_OPENAI_CM_FIXTURE, out })` makes a
 * run directory of it in well under a second: what notebook 06 samples in CI (the images are noise-like).
 */
export const TINY_OPENAI_CM_FIXTURE = {
  checkpoint: new URL("../tests/fixtures/openai_cm/tiny_unet.pt", import.meta.url).pathname,
  arch: new URL("../tests/fixtures/openai_cm/tiny_unet.json", import.meta.url).pathname,
} as const;

// ---- downloading a released checkpoint ---------------------------------------------------------------------

export interface DownloadOptions {
  /** Folder to write into (default data/openai_cm). */
  dir?: string;
  /** The sha256 the file must have (overrides the pinned one; none is pinned today). */
  sha256?: string;
  /** Where the files are (default OPENAI_CM_BASE_URL; tests use a local server). */
  baseUrl?: string;
  /** Download again even if a file with the expected sha256 is there. */
  force?: boolean;
  onProgress?: (received: number, total?: number) => void;
}

export interface DownloadResult {
  path: string;
  sha256: string;
  bytes: number;
  /** Whether the sha256 was checked against a known one (--sha256 or a pinned one), or only recorded. */
  verified: boolean;
  /** True when the file was already there with the expected sha256. */
  cached: boolean;
}

/**
 * `deno task data:openai-cm`: downloads a released checkpoint into DIR/FILE.pt, atomically, and records its
 * sha256 next to it (FILE.pt.sha256, sha256sum's format). With an expected sha256 a mismatch is refused and
 * nothing is written; without one, the file must still be a complete PyTorch zip archive (an HTML error page or
 * a cut-off transfer is refused) and its sha256 is printed so the user can pin it with --sha256.
 */
export async function downloadReleased(model: string, opts: DownloadOptions = {}): Promise<DownloadResult> {
  const released = RELEASED_MODELS[model];
  if (!released) {
    throw new OpenAiImportError(
      `unknown model "${model}": the released consistency models are ${
        Object.keys(RELEASED_MODELS).join(", ")
      }`,
    );
  }
  const want = (opts.sha256 ?? released.sha256)?.toLowerCase();
  if (want !== undefined && !/^[0-9a-f]{64}$/.test(want)) {
    throw new OpenAiImportError(`--sha256 takes 64 hexadecimal digits, got "${opts.sha256}"`);
  }
  const dir = opts.dir ?? "data/openai_cm";
  const path = `${dir}/${released.file}`;
  if (want && !opts.force) {
    try {
      const have = await sha256Hex(await Deno.readFile(path));
      if (have === want) {
        return { path, sha256: have, bytes: (await Deno.stat(path)).size, verified: true, cached: true };
      }
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
  }
  const url = `${(opts.baseUrl ?? OPENAI_CM_BASE_URL).replace(/\/?$/, "/")}${released.file}`;
  let total: number | undefined;
  const { bytes, digest } = await downloadWithHash(url, "sha256", (received, t) => {
    total = t;
    opts.onProgress?.(received, t);
  });
  if (total !== undefined && bytes.length !== total) {
    throw new OpenAiImportError(`${url}: received ${bytes.length} of ${total} bytes; nothing was written`);
  }
  if (want && digest !== want) {
    throw new OpenAiImportError(
      `${url}: sha256 ${digest}, expected ${want}: the download is corrupt (or not the file that was pinned); ` +
        "nothing was written. Run the command again.",
    );
  }
  if (torchFileFormat(bytes) !== "zip" || !zipIsComplete(bytes)) {
    throw new OpenAiImportError(
      `${url}: the ${bytes.length} bytes received are not a complete PyTorch zip archive (a cut-off download ` +
        "or an error page); nothing was written. Run the command again.",
    );
  }
  await Deno.mkdir(dir, { recursive: true });
  await writeFileAtomic(path, bytes);
  await writeFileAtomic(`${path}.sha256`, `${digest}  ${released.file}\n`);
  return { path, sha256: digest, bytes: bytes.length, verified: want !== undefined, cached: false };
}

/** A zip archive ends with its end-of-central-directory record (22 bytes + comment): a cut-off file does not. */
function zipIsComplete(bytes: Uint8Array): boolean {
  for (let i = bytes.length - 22; i >= Math.max(0, bytes.length - 22 - 0xffff); i--) {
    if (bytes[i] === 0x50 && bytes[i + 1] === 0x4b && bytes[i + 2] === 0x05 && bytes[i + 3] === 0x06) {
      return true;
    }
  }
  return false;
}

// ---- f_θ(x, σ) on given images -------------------------------------------------------------------------

/**
 * f_θ(x, σ) (Eq. 2) for images x [N, H, W, C] (float32, NHWC) at per-sample σ, in batches; `classes` for
 * class-conditional models. Returns the outputs [N, H, W, C].
 */
export async function denoiseImages(
  model: ConsistencyModel,
  params: Map<string, tf.Tensor>,
  x: Float32Array,
  n: number,
  sigmas: readonly number[],
  classes?: readonly number[],
  batch = 16,
): Promise<Float32Array> {
  const shape = model.network.sampleShape;
  const per = shape.reduce((a, b) => a * b, 1);
  if (x.length !== n * per) throw new Error(`${x.length} values for ${n} images of shape [${shape}]`);
  if (sigmas.length !== n) throw new Error(`${sigmas.length} σ for ${n} images`);
  const labelDim = model.network.labelDim;
  if (labelDim > 0 && (!classes || classes.length !== n)) {
    throw new Error(`the model is class-conditional (${labelDim} classes): give a class for every image`);
  }
  if (labelDim === 0 && classes) throw new Error("the model is unconditional: it takes no classes");
  const out = new Float32Array(n * per);
  for (let i = 0; i < n; i += batch) {
    const b = Math.min(batch, n - i);
    const y = tf.tidy(() => {
      const xb = tf.tensor(x.subarray(i * per, (i + b) * per), [b, ...shape]);
      const labels = labelDim > 0 ? oneHotLabels(classes!.slice(i, i + b), labelDim) : undefined;
      return model.apply(params, xb, Float64Array.from(sigmas.slice(i, i + b)), EVAL, labels);
    });
    out.set(await y.data() as Float32Array, i * per);
    y.dispose();
    await checkStop("denoise"); // a signal ends the task here, between batches
  }
  return out;
}

/** NCHW ↔ NHWC for [N, C, H, W] data (toNhwc) and back. */
export function nchwToNhwc(x: Float32Array, n: number, c: number, h: number, w: number): Float32Array {
  const out = new Float32Array(x.length);
  for (let b = 0; b < n; b++) {
    for (let k = 0; k < c; k++) {
      for (let i = 0; i < h * w; i++) out[(b * h * w + i) * c + k] = x[(b * c + k) * h * w + i];
    }
  }
  return out;
}

export function nhwcToNchw(x: Float32Array, n: number, h: number, w: number, c: number): Float32Array {
  const out = new Float32Array(x.length);
  for (let b = 0; b < n; b++) {
    for (let k = 0; k < c; k++) {
      for (let i = 0; i < h * w; i++) out[(b * c + k) * h * w + i] = x[(b * h * w + i) * c + k];
    }
  }
  return out;
}
