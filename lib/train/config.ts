// Training configs as plain data: one per dataset, with the paper's values (../shared/paper/SETTINGS.md), and
// the one way to override any value from the command line (`--optimizer.lr 2e-4`, `--batch 2`).
// Every iCT choice of Table 1 is a field here and can be switched back to CT's choice (Section 3's ablations).
import type { DataConfig } from "../data/index.ts";
import { type ModelConfig, modelConfig } from "../models/index.ts";
import { SIGMA_DATA } from "../parameterization.ts";
import { TWO_STEP_SIGMA } from "../sampling.ts";
import { DEFAULT_OPTIMIZER, type OptimizerConfig } from "./optim.ts";

export interface TrainConfig {
  /** Which preset this came from (cifar10, imagenet64, …). */
  preset: string;
  model: ModelConfig;
  data: DataConfig;
  /** σ_data of c_skip/c_out: 0.5 for images in [−1, 1]. */
  sigmaData: number;

  // --- Eq. 5 and the choices of Table 1 (iCT value; CT value in brackets) ---
  /** θ⁻ = stopgrad(θ) ["ema": θ⁻ ← μ(k)θ⁻ + (1 − μ(k))θ]. */
  teacher: "stopgrad" | "ema";
  /** CT's μ0 of the teacher EMA μ(k) (0.9 on CIFAR-10, 0.95 on ImageNet 64); used only with teacher "ema". */
  teacherMu0: number;
  /** Pseudo-Huber, c = 0.00054·√d ["l2": squared ℓ2, the kit's stand-in for CT's LPIPS]. */
  metric: "pseudo-huber" | "l2";
  /** Pseudo-Huber's c; 0 = iCT's 0.00054·√d (d: values per sample). Set it to sweep c (Sec. 3.3). */
  pseudoHuberC: number;
  /** N(k) = min(s0·2^⌊k/K′⌋, s1) + 1 ["sqrt": CT's square-root curriculum]. */
  curriculum: "exponential" | "sqrt";
  /** Curriculum constants: iCT s0 = 10, s1 = 1280 [CT: 2, 150 on CIFAR-10, 2, 200 on ImageNet 64]. */
  s0: number;
  s1: number;
  /** Discrete lognormal p(i) ["uniform": i ~ U⟦1, N−1⟧]. */
  noise: "lognormal" | "uniform";
  pMean: number;
  pStd: number;
  /** λ(σ_i) = 1/(σ_{i+1} − σ_i) ["uniform": λ = 1]. */
  weighting: "ict" | "uniform";
  /** Student and teacher use the same dropout mask in a step [false: independent masks]. */
  sharedDropout: boolean;

  // --- optimization ---
  /** K: the length of the curriculum (the paper's total iterations); `maxSteps` may stop earlier. */
  totalIters: number;
  /** Images per optimizer step (the paper's batch). */
  batch: number;
  /**
   * Images per forward/backward pass; gradients of batch/microBatch passes are accumulated, and the step is
   * the same for any value. 0 = auto: the memory plan's (lib/train/memory_plan.ts), resolved when a run starts.
   */
  microBatch: number;
  optimizer: OptimizerConfig;
  /** Decay of the student EMA used for sampling (0.99993 on CIFAR-10). */
  emaDecay: number;
  seed: number;

  // --- sampling ---
  /** σ of the second step of two-step samples. */
  sigmaMid: number;

  // --- the loop (may change on resume) ---
  /** Stop after this many steps (0 = totalIters). */
  maxSteps: number;
  checkpointEvery: number;
  keepCheckpoints: number;
  /** Write a sample grid and the loss curve every this many steps (0 = never). */
  sampleEvery: number;
  sampleCount: number;
  logEvery: number;

  // --- long runs (may change on resume) ---
  /** Evaluate the EMA student (1- and 2-step samples) every this many steps (0 = never). */
  evalEvery: number;
  /** Samples per evaluation (and held-out samples they are compared with). */
  evalN: number;
  /**
   * The evaluation metric: "auto" picks FID with the real Inception weights (data/inception) for images, the
   * MNIST-FD for MNIST-sized data, sliced W1 for 2-D points; "fid-standin" asks for the stand-in Inception
   * (numbers labelled NOT FIDs).
   */
  evalMetric: "auto" | "fid" | "mnist-fd" | "sliced-w1" | "fid-standin";
  /** A loss above spikeFactor × the median of the last spikeWindow losses is a spike (0 = no spike check). */
  spikeFactor: number;
  spikeWindow: number;
  /** Roll back to the last good checkpoint at most this many times per invocation, then stop. */
  maxRollbacks: number;
  /** Stop after this many checkpoint writes in a row have failed (disk full, I/O errors). */
  maxFailedWrites: number;
}

/** Loop settings: the only values a resumed run may change. */
export const LOOP_KEYS = [
  "maxSteps",
  "microBatch", // dropout masks follow the global sample index: any split takes the same step
  "checkpointEvery",
  "keepCheckpoints",
  "sampleEvery",
  "sampleCount",
  "logEvery",
  "evalEvery",
  "evalN",
  "evalMetric",
  "spikeFactor",
  "spikeWindow",
  "maxRollbacks",
  "maxFailedWrites",
] as const;

const LOOP_DEFAULTS = {
  maxSteps: 0,
  checkpointEvery: 1000,
  keepCheckpoints: 3,
  sampleEvery: 5000,
  sampleCount: 64,
  logEvery: 100,
  evalEvery: 0,
  evalN: 1000,
  evalMetric: "auto" as TrainConfig["evalMetric"],
  spikeFactor: 20,
  spikeWindow: 100,
  maxRollbacks: 3,
  maxFailedWrites: 3,
};

/** The long-run settings of a config stored before they existed, filled with today's defaults. */
export function withLoopDefaults(c: TrainConfig): TrainConfig {
  return { ...LOOP_DEFAULTS, ...c };
}

/** iCT's choices (Table 1, right column). */
const ICT = {
  teacher: "stopgrad",
  teacherMu0: 0.9,
  metric: "pseudo-huber",
  pseudoHuberC: 0,
  curriculum: "exponential",
  s0: 10,
  s1: 1280,
  noise: "lognormal",
  pMean: -1.1,
  pStd: 2.0,
  weighting: "ict",
  sharedDropout: true,
} as const;

/** CT's choices (Table 1, left column; squared ℓ2 stands in for LPIPS), for `--recipe ct` ablations. */
export const CT_CHOICES: Partial<TrainConfig> = {
  teacher: "ema",
  metric: "l2",
  curriculum: "sqrt",
  s0: 2,
  s1: 150,
  noise: "uniform",
  weighting: "uniform",
};

const cifar10: TrainConfig = {
  preset: "cifar10",
  model: modelConfig("ncsnpp-cifar10"), // dropout 0.3
  data: { dataset: "cifar10", dir: "data/cifar10", flip: true },
  sigmaData: SIGMA_DATA,
  ...ICT,
  totalIters: 400_000,
  batch: 1024,
  microBatch: 0,
  optimizer: { ...DEFAULT_OPTIMIZER, kind: "radam", lr: 1e-4 },
  emaDecay: 0.99993,
  seed: 0,
  sigmaMid: TWO_STEP_SIGMA.cifar10,
  ...LOOP_DEFAULTS,
};

const imagenet64: TrainConfig = {
  ...cifar10,
  preset: "imagenet64",
  model: modelConfig("adm-imagenet64"), // class-conditional, dropout 0.2 at resolutions ≤ 16
  data: { dataset: "imagenet64", dir: "data/imagenet64", flip: false },
  teacherMu0: 0.95,
  totalIters: 800_000,
  batch: 4096,
  // The paper does not state ImageNet's optimizer and lr (SETTINGS.md [U]): CIFAR-10's RAdam 1e-4 is assumed.
  optimizer: { ...DEFAULT_OPTIMIZER, kind: "radam", lr: 1e-4 },
  emaDecay: 0.99997, // [U]
  sigmaMid: TWO_STEP_SIGMA.imagenet64,
};

/** Every preset by name. The CPU presets are not in the paper: sizes chosen so a laptop trains them. */
export const PRESETS: Record<string, TrainConfig> = {
  cifar10,
  "cifar10-deep": { ...cifar10, preset: "cifar10-deep", model: modelConfig("ncsnpp-cifar10-deep") },
  imagenet64,
  "imagenet64-deep": { ...imagenet64, preset: "imagenet64-deep", model: modelConfig("adm-imagenet64-deep") },
  mnist: {
    ...cifar10,
    preset: "mnist",
    model: modelConfig("ncsnpp-small-28"),
    data: { dataset: "mnist", flip: false },
    totalIters: 20_000,
    batch: 64,
    optimizer: { ...DEFAULT_OPTIMIZER, kind: "radam", lr: 2e-4 },
    emaDecay: 0.999,
    checkpointEvery: 500,
    sampleEvery: 500,
    logEvery: 20,
  },
  toy2d: {
    ...cifar10,
    preset: "toy2d",
    model: modelConfig("mlp-2d"),
    data: { dataset: "toy2d", toy: "8gaussians", size: 20_000, flip: false },
    totalIters: 4000,
    batch: 256,
    optimizer: { ...DEFAULT_OPTIMIZER, kind: "radam", lr: 1e-3 },
    emaDecay: 0.995,
    checkpointEvery: 1000,
    sampleEvery: 1000,
    sampleCount: 2000,
    logEvery: 50,
  },
};

/** A preset by name, as a fresh copy; the error lists the names. */
export function preset(name: string): TrainConfig {
  const c = PRESETS[name];
  if (!c) throw new Error(`unknown config "${name}": use one of ${Object.keys(PRESETS).join(", ")}`);
  return structuredClone(c);
}

/** The steps this run makes: maxSteps, or the whole curriculum. */
export function stepsOf(c: TrainConfig): number {
  return c.maxSteps > 0 ? c.maxSteps : c.totalIters;
}

/** Images per forward/backward pass. */
export function microBatchOf(c: TrainConfig): number {
  return c.microBatch > 0 ? c.microBatch : c.batch;
}

/** Refuse configs that cannot run, saying which value to change. */
export function validateConfig(c: TrainConfig): void {
  const problems: string[] = [];
  const positiveInt = (k: keyof TrainConfig) => {
    const v = c[k] as number;
    if (!Number.isInteger(v) || v < 1) problems.push(`${k} must be an integer >= 1, got ${v}`);
  };
  positiveInt("totalIters");
  positiveInt("batch");
  positiveInt("checkpointEvery");
  positiveInt("keepCheckpoints");
  positiveInt("logEvery");
  positiveInt("evalN");
  positiveInt("spikeWindow");
  positiveInt("maxFailedWrites");
  if (!Number.isInteger(c.evalEvery) || c.evalEvery < 0) problems.push(`evalEvery must be an integer >= 0`);
  if (!Number.isInteger(c.maxRollbacks) || c.maxRollbacks < 0) {
    problems.push(`maxRollbacks must be an integer >= 0, got ${c.maxRollbacks}`);
  }
  if (!(c.spikeFactor === 0 || c.spikeFactor > 1)) {
    problems.push(`spikeFactor must be 0 (no spike check) or > 1, got ${c.spikeFactor}`);
  }
  const metrics = ["auto", "fid", "mnist-fd", "sliced-w1", "fid-standin"];
  if (!metrics.includes(c.evalMetric)) {
    problems.push(`evalMetric must be one of ${metrics.join(", ")}, got "${c.evalMetric}"`);
  }
  if (c.batch % microBatchOf(c) !== 0) {
    problems.push(`batch ${c.batch} must be a multiple of microBatch ${c.microBatch}`);
  }
  if (!(c.emaDecay >= 0 && c.emaDecay < 1)) problems.push(`emaDecay must be in [0, 1), got ${c.emaDecay}`);
  if (!(c.optimizer.lr > 0)) problems.push(`optimizer.lr must be > 0, got ${c.optimizer.lr}`);
  if (!(c.sigmaData > 0)) problems.push(`sigmaData must be > 0, got ${c.sigmaData}`);
  if (!((c.pseudoHuberC ?? 0) >= 0)) {
    problems.push(`pseudoHuberC must be >= 0 (0: 0.00054·√d), got ${c.pseudoHuberC}`);
  }
  if (!(c.s1 >= c.s0 && c.s0 >= 1)) {
    problems.push(`curriculum needs 1 <= s0 <= s1, got s0=${c.s0}, s1=${c.s1}`);
  }
  if (problems.length) throw new Error(`bad training config: ${problems.join("; ")}`);
}

/** Settings a resumed run may change: the loop, and where its data lives. */
export const RESUME_KEYS: readonly string[] = [...LOOP_KEYS, "data.dir"];

/** A resumed run keeps its config: refuse flags that would change anything but RESUME_KEYS. */
export function checkResumeFlags(flags: [string, string][]): void {
  const fixed = flags.filter(([k]) => !RESUME_KEYS.includes(k.split(".").map(camel).join(".")));
  if (fixed.length) {
    throw new Error(
      `--resume continues a run with its own config; only ${RESUME_KEYS.join(", ")} may change. ` +
        `Drop ${fixed.map(([k]) => "--" + k).join(", ")}, or start a new run with --run DIR`,
    );
  }
}

/**
 * Apply overrides (from lib/cli.ts's `parseFlags`) to a config. Dotted keys reach nested values (`--optimizer.lr 2e-4`,
 * `--model.dropout 0.1`, `--data.dir /data/cifar10`); `--model NAME` swaps in a whole model from MODELS and
 * `--recipe ct` switches every Table 1 choice to CT's. A value is parsed as the type of the value it replaces.
 * Returns the keys that were set.
 */
export function applyOverrides(config: TrainConfig, flags: [string, string][]): string[] {
  for (const [key, value] of flags) {
    if (key === "model") config.model = modelConfig(value);
    else if (key === "recipe") {
      if (value === "ct") Object.assign(config, structuredClone(CT_CHOICES));
      else if (value !== "ict") throw new Error(`--recipe takes ict or ct, got "${value}"`);
    } else setPath(config, key, value);
  }
  validateConfig(config);
  return flags.map(([k]) => k);
}

/** `max-steps` → `maxSteps`: flags may be written in kebab case. */
function camel(s: string): string {
  return s.replace(/-([a-z])/g, (_, ch: string) => ch.toUpperCase());
}

function setPath(config: TrainConfig, path: string, raw: string): void {
  const parts = path.split(".").map(camel);
  let parent = config as unknown as Record<string, unknown>;
  for (const part of parts.slice(0, -1)) {
    const next = parent[part];
    if (typeof next !== "object" || next === null || Array.isArray(next)) throw unknownKey(config, path);
    parent = next as Record<string, unknown>;
  }
  const last = parts[parts.length - 1];
  if (!(last in parent)) throw unknownKey(config, path);
  const old = parent[last];
  parent[last] = parseLike(old, raw, path);
}

function parseLike(old: unknown, raw: string, path: string): unknown {
  const bad = (what: string) => new Error(`--${path} takes ${what}, got "${raw}"`);
  if (typeof old === "number") {
    const n = Number(raw.replaceAll("_", ""));
    if (raw.trim() === "" || !Number.isFinite(n)) throw bad("a number");
    return n;
  }
  if (typeof old === "boolean") {
    if (raw === "true" || raw === "1") return true;
    if (raw === "false" || raw === "0") return false;
    throw bad("true or false");
  }
  if (Array.isArray(old)) {
    const values = raw === "" ? [] : raw.split(",").map(Number);
    if (values.some((v) => !Number.isFinite(v))) throw bad("comma-separated numbers");
    return values;
  }
  if (typeof old === "string") return raw;
  throw bad("a value this flag cannot parse");
}

function unknownKey(config: TrainConfig, path: string): Error {
  const keys: string[] = [];
  const walk = (v: Record<string, unknown>, prefix: string) => {
    for (const [k, x] of Object.entries(v)) {
      if (typeof x === "object" && x !== null && !Array.isArray(x)) {
        walk(x as Record<string, unknown>, `${prefix}${k}.`);
      } else keys.push(`${prefix}${k}`);
    }
  };
  walk(config as unknown as Record<string, unknown>, "");
  return new Error(
    `unknown setting --${path}. Settings: ${keys.join(", ")}, and --model NAME, --recipe ict|ct`,
  );
}
