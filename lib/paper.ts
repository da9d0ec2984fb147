// The paper's numbers the notebooks compare the kit with, transcribed from ../shared/paper/SETTINGS.md with
// the line each comes from, and the comparisons themselves: presets against the paper's recipe, the kit's
// networks against the paper's parameter and GFLOP counts. `checkTranscription` re-reads SETTINGS.md (when the
// shared folder is there) and reports any value that is no longer on its cited line.
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { TrainConfig } from "./train/config.ts";

/** Where the paper's settings live: ../shared/paper/SETTINGS.md beside the repository. */
export const SETTINGS_PATH = join(
  dirname(fileURLToPath(import.meta.url)),
  "..",
  "..",
  "shared",
  "paper",
  "SETTINGS.md",
);

/** [C] confirmed in the paper or two implementations; [U] one weak source (SETTINGS.md's marks). */
export type Status = "C" | "U";

/** A transcribed value: `text` must appear on line `line` of SETTINGS.md. */
export interface Cited {
  line: number;
  text: string;
  status: Status;
}

export interface PaperNetwork {
  /** The kit's model name (lib/models/index.ts). */
  model: string;
  paperName: string;
  params: number;
  gflopsPerImage: number;
  source: Cited;
}

export const PAPER_NETWORKS: PaperNetwork[] = [
  {
    model: "ncsnpp-cifar10",
    paperName: "NCSN++ CIFAR-10 (iCT)",
    params: 56.40e6,
    gflopsPerImage: 42.8,
    source: { line: 42, text: "| 56.40M | 42.8 |", status: "C" },
  },
  {
    model: "ncsnpp-cifar10-deep",
    paperName: "NCSN++ deep (iCT-deep)",
    params: 97.6e6,
    gflopsPerImage: 76.7,
    source: { line: 43, text: "| 97.6M | 76.7 |", status: "U" },
  },
  {
    model: "adm-imagenet64",
    paperName: "ADM ImageNet 64 (iCT)",
    params: 295.9e6,
    gflopsPerImage: 219.3,
    source: { line: 44, text: "| 295.9M | 219.3 |", status: "C" },
  },
  {
    model: "adm-imagenet64-deep",
    paperName: "ADM deep (iCT-deep)",
    params: 495.4e6,
    gflopsPerImage: 362.9,
    source: { line: 45, text: "| 495.4M | 362.9 |", status: "U" },
  },
];

/** One row of the paper's FID table (50k samples, lower is better). */
export interface PaperFid {
  model: string;
  cifar10: [number, number];
  imagenet64: [number, number];
  source: Cited;
}

export const PAPER_FID: PaperFid[] = [
  {
    model: "iCT",
    cifar10: [2.83, 2.46],
    imagenet64: [4.02, 3.20],
    source: { line: 59, text: "| iCT | 2.83 | 2.46 | 4.02 | 3.20 |", status: "C" },
  },
  {
    model: "iCT-deep",
    cifar10: [2.51, 2.24],
    imagenet64: [3.25, 2.77],
    source: { line: 60, text: "| iCT-deep | 2.51 | 2.24 | 3.25 | 2.77 |", status: "C" },
  },
  {
    model: "CT (LPIPS), prior work",
    cifar10: [8.70, 5.83],
    imagenet64: [13.0, 11.1],
    source: { line: 61, text: "| 8.70 | 5.83 | 13.0 | 11.1 |", status: "U" },
  },
  {
    model: "CD (LPIPS), prior work",
    cifar10: [3.55, 2.93],
    imagenet64: [6.20, 4.70],
    source: { line: 62, text: "| 3.55 | 2.93 | 6.20 | 4.70 |", status: "C" },
  },
];

/**
 * The paper's value of a config setting for the CIFAR-10 and ImageNet 64 recipes (`undefined`: the paper
 * gives none for that dataset). Keys are TrainConfig paths as `flattenConfig` writes them.
 */
export interface PaperSetting {
  key: string;
  cifar10?: unknown;
  imagenet64?: unknown;
  /** Status and line of each dataset's value (one cite when both share a line). */
  cifar10Source?: Cited;
  imagenet64Source?: Cited;
}

const c = (line: number, text: string, status: Status = "C"): Cited => ({ line, text, status });
const both = (key: string, value: unknown, src: Cited): PaperSetting => ({
  key,
  cifar10: value,
  imagenet64: value,
  cifar10Source: src,
  imagenet64Source: src,
});

export const PAPER_SETTINGS: PaperSetting[] = [
  both("sigmaData", 0.5, c(9, "sigma_data = 0.5")),
  both("teacher", "stopgrad", c(21, "no EMA: theta_minus = stopgrad(theta)")),
  both("metric", "pseudo-huber", c(22, "Pseudo-Huber")),
  both("curriculum", "exponential", c(23, "min(s0 2^floor(k/K'), s1) + 1")),
  both("s0", 10, c(26, "s0=10")),
  both("s1", 1280, c(26, "s1=1280")),
  both("noise", "lognormal", c(24, "p(i) ∝ erf")),
  both("pMean", -1.1, c(26, "P_mean=-1.1")),
  both("pStd", 2, c(26, "P_std=2.0")),
  both("weighting", "ict", c(25, "1 / (sigma_{i+1} - sigma_i)")),
  both("sharedDropout", true, c(31, "SAME dropout mask")),
  {
    key: "teacherMu0",
    cifar10: 0.9,
    imagenet64: 0.95,
    cifar10Source: c(26, "mu0=0.9 (CIFAR-10)"),
    imagenet64Source: c(26, "mu0=0.95 (ImageNet 64)"),
  },
  {
    key: "model.dropout",
    cifar10: 0.3,
    imagenet64: 0.2,
    cifar10Source: c(30, "Dropout: 0.3 on CIFAR-10 [C]"),
    imagenet64Source: c(30, "rate 0.2 [U]", "U"),
  },
  {
    key: "model.dropoutMaxResolution",
    imagenet64: 16,
    imagenet64Source: c(30, "only at feature resolutions <= 16 [C]"),
  },
  {
    key: "model.fourierScale",
    cifar10: 0.02,
    cifar10Source: c(29, "16 in CM -> 0.02 in iCT"),
  },
  {
    key: "emaDecay",
    cifar10: 0.99993,
    imagenet64: 0.99997,
    cifar10Source: c(32, "0.99993 on CIFAR-10 [C]"),
    imagenet64Source: c(32, "0.99997 on ImageNet 64 [U]", "U"),
  },
  {
    key: "optimizer.kind",
    cifar10: "radam",
    cifar10Source: c(35, "RAdam"),
    imagenet64Source: c(36, "optimizer [U]", "U"),
  },
  {
    key: "optimizer.lr",
    cifar10: 1e-4,
    cifar10Source: c(35, "lr 1e-4"),
    imagenet64Source: c(36, "lr [U]", "U"),
  },
  {
    key: "batch",
    cifar10: 1024,
    imagenet64: 4096,
    cifar10Source: c(35, "batch 1024"),
    imagenet64Source: c(36, "batch 4096"),
  },
  {
    key: "totalIters",
    cifar10: 400_000,
    imagenet64: 800_000,
    cifar10Source: c(35, "400,000 iterations"),
    imagenet64Source: c(36, "800,000 iterations"),
  },
  {
    key: "sigmaMid",
    cifar10: 0.821,
    imagenet64: 1.526,
    cifar10Source: c(54, "0.821 on CIFAR-10 [C]"),
    imagenet64Source: c(54, "1.526 on ImageNet 64 [C, indirect]"),
  },
  {
    key: "model.numBlocks",
    cifar10: 4,
    imagenet64: 3,
    cifar10Source: c(42, "4 res blocks per resolution"),
    imagenet64Source: c(44, "3 res blocks"),
  },
  {
    key: "model.modelChannels",
    cifar10: 128,
    imagenet64: 192,
    cifar10Source: c(42, "nf 128"),
    imagenet64Source: c(44, "192 channels"),
  },
  {
    key: "model.channelMult",
    cifar10: [2, 2, 2],
    imagenet64: [1, 2, 3, 4],
    cifar10Source: c(42, "ch_mult (2,2,2)"),
    imagenet64Source: c(44, "ch_mult (1,2,3,4)"),
  },
  {
    key: "model.attnResolutions",
    cifar10: [16],
    imagenet64: [32, 16, 8],
    cifar10Source: c(42, "attention at 16x16"),
    imagenet64Source: c(44, "attention at 32/16/8"),
  },
  {
    key: "model.scaleShift",
    imagenet64Source: c(49, "AdaGN (scale-shift norm) made CM training diverge", "U"),
  },
  {
    key: "model.resampleFilter",
    cifar10: [1, 3, 3, 1],
    cifar10Source: c(42, "FIR [1,3,3,1] resampling"),
  },
  {
    key: "model.labelDim",
    cifar10: 0,
    imagenet64: 1000,
    cifar10Source: c(35, "unconditional"),
    imagenet64Source: c(36, "class-conditional"),
  },
];

/** The iCT-deep presets differ from their base only in depth (SETTINGS.md lines 43 and 45, both [U]). */
export const PAPER_DEEP_BLOCKS = {
  "cifar10-deep": { numBlocks: 8, source: c(43, "8 res blocks per resolution [U", "U") },
  "imagenet64-deep": { numBlocks: 6, source: c(45, "6 res blocks [U]", "U") },
} as const;

/** Every value of a config as dotted paths (`optimizer.lr`, `model.channelMult`), in the config's order. */
export function flattenConfig(value: unknown, prefix = ""): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    if (v !== null && typeof v === "object" && !Array.isArray(v)) {
      Object.assign(out, flattenConfig(v, `${prefix}${k}.`));
    } else out[`${prefix}${k}`] = v;
  }
  return out;
}

/** Which paper recipe a preset follows (the CPU presets follow CIFAR-10's, as config.ts builds them). */
export function paperDatasetOf(presetName: string): "cifar10" | "imagenet64" {
  return presetName.startsWith("imagenet64") ? "imagenet64" : "cifar10";
}

const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

export interface SettingComparison {
  key: string;
  /** The value in each preset, by preset name. */
  values: Record<string, unknown>;
  /** The paper's value for CIFAR-10 and ImageNet 64, with their SETTINGS.md status and line. */
  paper: { cifar10?: unknown; imagenet64?: unknown };
  sources: { cifar10?: Cited; imagenet64?: Cited };
  /**
   * Per paper preset: "agrees", "DIFFERS", "[U] <value>" (the paper's value is unstated or weak and the kit
   * assumes one), or "not in the paper", or "—" when the preset has no such setting.
   */
  verdict: Record<string, string>;
}

/**
 * Every setting of `presets` (flattened) against the paper's recipe. Only presets whose names are paper
 * recipes (cifar10, cifar10-deep, imagenet64, imagenet64-deep) get a verdict; the CPU presets are listed for
 * reference. The deep presets are judged on their depth by PAPER_DEEP_BLOCKS.
 */
export function compareWithPaper(presets: Record<string, TrainConfig>): SettingComparison[] {
  const flat = Object.fromEntries(Object.entries(presets).map(([name, p]) => [name, flattenConfig(p)]));
  const keys = [...new Set(Object.values(flat).flatMap((f) => Object.keys(f)))];
  const byKey = new Map(PAPER_SETTINGS.map((s) => [s.key, s]));
  return keys.map((key) => {
    const s = byKey.get(key);
    const verdict: Record<string, string> = {};
    for (const name of Object.keys(presets)) {
      if (!(name in PAPER_DEEP_BLOCKS) && name !== "cifar10" && name !== "imagenet64") continue;
      const kit = flat[name][key];
      if (kit === undefined) {
        verdict[name] = "—";
        continue;
      }
      const deep = PAPER_DEEP_BLOCKS[name as keyof typeof PAPER_DEEP_BLOCKS];
      if (deep && key === "model.numBlocks") {
        verdict[name] = same(kit, deep.numBlocks) ? `agrees [U]` : `DIFFERS (paper ${deep.numBlocks} [U])`;
        continue;
      }
      const ds = paperDatasetOf(name);
      const paper = s?.[ds];
      const src = ds === "cifar10" ? s?.cifar10Source : s?.imagenet64Source;
      if (paper === undefined) {
        verdict[name] = src ? `[U] kit assumes ${JSON.stringify(kit)}` : "not in the paper";
      } else if (!same(kit, paper)) verdict[name] = `DIFFERS (paper ${JSON.stringify(paper)})`;
      else verdict[name] = src?.status === "U" ? "agrees [U]" : "agrees";
    }
    return {
      key,
      values: Object.fromEntries(Object.keys(presets).map((n) => [n, flat[n][key]])),
      paper: { cifar10: s?.cifar10, imagenet64: s?.imagenet64 },
      sources: { cifar10: s?.cifar10Source, imagenet64: s?.imagenet64Source },
      verdict,
    };
  });
}

/** Every citation of this file, for `checkTranscription`. */
export function allCitations(): { what: string; cite: Cited }[] {
  const out: { what: string; cite: Cited }[] = [];
  for (const n of PAPER_NETWORKS) out.push({ what: `network ${n.model}`, cite: n.source });
  for (const f of PAPER_FID) out.push({ what: `FID ${f.model}`, cite: f.source });
  for (const s of PAPER_SETTINGS) {
    if (s.cifar10Source) out.push({ what: `${s.key} (CIFAR-10)`, cite: s.cifar10Source });
    if (s.imagenet64Source) out.push({ what: `${s.key} (ImageNet 64)`, cite: s.imagenet64Source });
  }
  for (const [name, d] of Object.entries(PAPER_DEEP_BLOCKS)) {
    out.push({ what: `${name} depth`, cite: d.source });
  }
  return out;
}

/**
 * Checks every transcribed value against the text of SETTINGS.md: each cited text must be on its line, and
 * a [U] citation must have a [U] mark on its line or the two after it (the FID table marks its rows below it). Returns the problems (none: the transcription
 * still matches).
 */
export function checkTranscription(settingsText: string): string[] {
  const lines = settingsText.split("\n");
  const problems: string[] = [];
  for (const { what, cite } of allCitations()) {
    const text = lines[cite.line - 1] ?? "";
    if (!text.includes(cite.text)) {
      problems.push(`${what}: line ${cite.line} does not contain "${cite.text}"`);
    } else if (
      cite.status === "U" && !lines.slice(cite.line - 1, cite.line + 2).some((l) => /\[U|\bU\]/.test(l))
    ) {
      problems.push(`${what}: marked [U] but lines ${cite.line}-${cite.line + 2} carry no [U] mark`);
    }
  }
  return problems;
}

/** SETTINGS.md's text, or null when ../shared is not beside the repository (a user's machine). */
export async function readSettings(path = SETTINGS_PATH): Promise<string | null> {
  try {
    return await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
}

/**
 * What an EMA of decay μ averages over, in optimizer steps: the half-life ln ½ / ln μ (the newest steps that
 * carry half the weight) and the mean age of its weight μ/(1 − μ).
 */
export function emaHorizon(decay: number): { halfLifeSteps: number; meanAgeSteps: number } {
  if (!(decay > 0 && decay < 1)) throw new Error(`EMA decay must be in (0, 1), got ${decay}`);
  return { halfLifeSteps: Math.log(0.5) / Math.log(decay), meanAgeSteps: decay / (1 - decay) };
}
