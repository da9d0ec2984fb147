// Every model of the kit by name, as plain config data, and the one function that builds a network.
// The four paper configs are the networks of iCT's tables (SETTINGS.md, "Networks"); the small ones are the
// same families at a size a CPU can train.
import { Adm, type AdmConfig } from "./adm.ts";
import { Mlp, type MlpConfig } from "./mlp.ts";
import { Ncsnpp, type NcsnppConfig } from "./ncsnpp.ts";
import type { Network } from "./network.ts";
import { ICT_FOURIER_SCALE } from "../embeddings.ts";

export type ModelConfig = NcsnppConfig | AdmConfig | MlpConfig;
export type { Network };

/** NCSN++ for CIFAR-10 in iCT: 56.40M parameters. */
export const NCSNPP_CIFAR10: NcsnppConfig = {
  family: "ncsnpp",
  resolution: 32,
  channels: 3,
  labelDim: 0,
  modelChannels: 128,
  channelMult: [2, 2, 2],
  channelMultEmb: 4,
  channelMultNoise: 2,
  numBlocks: 4,
  attnResolutions: [16],
  dropout: 0.3,
  fourierScale: ICT_FOURIER_SCALE,
  resampleFilter: [1, 3, 3, 1],
};

/** ADM for class-conditional ImageNet 64×64 in iCT: 295.9M parameters. */
export const ADM_IMAGENET64: AdmConfig = {
  family: "adm",
  resolution: 64,
  channels: 3,
  labelDim: 1000,
  modelChannels: 192,
  channelMult: [1, 2, 3, 4],
  channelMultEmb: 4,
  numBlocks: 3,
  attnResolutions: [32, 16, 8],
  channelsPerHead: 64,
  dropout: 0.2,
  dropoutMaxResolution: 16,
  scaleShift: true,
};

/**
 * OpenAI's ADM of the CM paper's ImageNet 64 models (openai/consistency_models, cm/unet.py with their launch.sh
 * flags): the iCT network above with GroupNorm32 everywhere and dropout (0 when sampling) in every block.
 * lib/openai_cm.ts imports their checkpoints onto it.
 */
export const ADM_IMAGENET64_OPENAI_CM: AdmConfig = {
  ...ADM_IMAGENET64,
  dropout: 0,
  dropoutMaxResolution: 64,
  normGroups: 32,
};

/** OpenAI's unconditional ADM of the CM paper's LSUN Bedroom / Cat 256 models: 256 channels, no scale-shift. */
export const ADM_LSUN256_OPENAI_CM: AdmConfig = {
  family: "adm",
  resolution: 256,
  channels: 3,
  labelDim: 0,
  modelChannels: 256,
  channelMult: [1, 1, 2, 2, 4, 4],
  channelMultEmb: 4,
  numBlocks: 2,
  attnResolutions: [32, 16, 8],
  channelsPerHead: 64,
  dropout: 0,
  dropoutMaxResolution: 256,
  scaleShift: false,
  normGroups: 32,
};

export const MODELS: Record<string, ModelConfig> = {
  "ncsnpp-cifar10": NCSNPP_CIFAR10,
  /** iCT-deep: twice the residual blocks (97.6M). */
  "ncsnpp-cifar10-deep": { ...NCSNPP_CIFAR10, numBlocks: 8 },
  "adm-imagenet64": ADM_IMAGENET64,
  /** iCT-deep: twice the residual blocks (495.4M). */
  "adm-imagenet64-deep": { ...ADM_IMAGENET64, numBlocks: 6 },
  "adm-imagenet64-openai-cm": ADM_IMAGENET64_OPENAI_CM,
  "adm-lsun256-openai-cm": ADM_LSUN256_OPENAI_CM,
  /** A small NCSN++ for 32×32 RGB (CIFAR-10 on a CPU). */
  "ncsnpp-small-32": {
    ...NCSNPP_CIFAR10,
    modelChannels: 32,
    channelMult: [1, 2, 2],
    numBlocks: 2,
    dropout: 0.1,
  },
  /** A small NCSN++ for 28×28 grayscale (MNIST, Fashion-MNIST). */
  "ncsnpp-small-28": {
    ...NCSNPP_CIFAR10,
    resolution: 28,
    channels: 1,
    modelChannels: 32,
    channelMult: [1, 2, 2],
    numBlocks: 2,
    attnResolutions: [14],
    dropout: 0.1,
  },
  /** An MLP for 2-D toy data. */
  "mlp-2d": {
    family: "mlp",
    dim: 2,
    hidden: 128,
    depth: 3,
    noiseChannels: 64,
    fourierScale: ICT_FOURIER_SCALE,
    dropout: 0,
  },
};

/** The config of a named model; the error lists the names. */
export function modelConfig(name: string): ModelConfig {
  const c = MODELS[name];
  if (!c) throw new Error(`unknown model "${name}": use one of ${Object.keys(MODELS).join(", ")}`);
  return structuredClone(c);
}

/** Build a network from its config (records parameter specs and costs; allocates no tensors). */
export function buildNetwork(config: ModelConfig): Network {
  switch (config.family) {
    case "ncsnpp":
      return new Ncsnpp(config);
    case "adm":
      return new Adm(config);
    case "mlp":
      return new Mlp(config);
  }
}
