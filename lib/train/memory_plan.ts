// The memory plan of a training step: from (network, batch, device limits, memory budget) to the micro-batch
// and the estimated peak memory. Pure: nothing is allocated, so `train --plan` answers instantly for any
// preset on any machine.
//
// The estimate is calibrated against measured peaks (TF.js's own tensor count during one step, see
// `deno task plan:calibrate` and README "Memory plan"):
//   peak(m) ≈ 4·P·copies + m · BYTES_PER_ACTIVATION · A
// P: parameter values; copies: student, its EMA, Adam's two moments, the gradient, the gradient being
// accumulated, CT's teacher when used; A: layer-output values per sample (Network.cost.activations), of which
// TF.js keeps many more intermediates for the backward pass than the layer outputs alone.
import { numel } from "../nn/params.ts";
import type { Network } from "../models/network.ts";
import type { TrainConfig } from "./config.ts";

/**
 * Bytes per counted activation value per sample in one training step (student forward + backward, teacher
 * forward): measured 75.1 on ncsnpp-small-32, 76.1 on ncsnpp-small-28 and 77 on ncsnpp-cifar10 (wasm; the
 * slope of the peak over the micro-batch, `deno task plan:calibrate`). Rounded up for headroom.
 */
export const BYTES_PER_ACTIVATION = 80;
/** The share of a budget the plan fills: allocators fragment, and backends keep pools. */
const FILL = 0.9;
/** Budgets assumed when the backend cannot tell its memory (override with --memory-gib). */
const DEFAULT_GIB: Record<string, number> = { tensorflow: 16, webgpu: 16, wasm: 4, cpu: 8 };

/** What the plan must fit in. */
export interface PlanLimits {
  backend: string;
  /** Memory the step may use, bytes. */
  budgetBytes: number;
  /** Where the budget comes from, in words. */
  budgetSource: string;
  /** WebGPU: the largest single tensor one op may bind or allocate (min of the two limits). */
  maxTensorBytes?: number;
  /** Which limit maxTensorBytes is. */
  maxTensorSource?: string;
}

/** Device facts as lib/backend.ts `deviceLimits()` reports them. */
export interface DeviceFacts {
  backend: string;
  memoryBytes?: number;
  memorySource: string;
  maxBindingBytes?: number;
  maxBufferBytes?: number;
}

/** The plan's limits: `--memory-gib` if given, else what the device reports, else a stated default. */
export function planLimits(device: DeviceFacts, memoryGiB?: number): PlanLimits {
  const [bytes, source] = memoryGiB !== undefined
    ? [memoryGiB * 2 ** 30, `--memory-gib ${memoryGiB}`]
    : device.memoryBytes !== undefined
    ? [device.memoryBytes, device.memorySource]
    : [
      (DEFAULT_GIB[device.backend] ?? 8) * 2 ** 30,
      `default for ${device.backend} (${device.memorySource}); set --memory-gib`,
    ];
  if (!(bytes > 0)) throw new Error(`--memory-gib must be > 0, got ${memoryGiB}`);
  const limits: PlanLimits = {
    backend: device.backend,
    budgetBytes: bytes * FILL,
    budgetSource: `${Math.round(FILL * 100)}% of ${(bytes / 2 ** 30).toFixed(1)} GiB, ${source}`,
  };
  const perTensor = [
    [device.maxBindingBytes, "maxStorageBufferBindingSize"],
    [device.maxBufferBytes, "maxBufferSize"],
  ].filter(([v]) => v !== undefined) as [number, string][];
  if (perTensor.length) {
    const [v, name] = perTensor.reduce((a, b) => (b[0] < a[0] ? b : a));
    limits.maxTensorBytes = v;
    limits.maxTensorSource = name;
  }
  return limits;
}

export interface MemoryPlan {
  /** Images per forward/backward pass. */
  microBatch: number;
  /** Passes per optimizer step. */
  passes: number;
  /** Estimated peak bytes of the step at this micro-batch. */
  peakBytes: number;
  /** The same in GiB. */
  peakGiB: number;
  /** Parameter copies (student, EMA, moments, gradients, teacher), bytes. */
  fixedBytes: number;
  /** Bytes per image of a pass. */
  perSampleBytes: number;
  /** The largest single layer output of a pass, bytes (WebGPU's per-buffer limit applies to it). */
  largestTensorBytes: number;
  /** FLOPs of one optimizer step (student forward, backward ≈ 2×, teacher forward: 4× the forward), in GFLOP. */
  gflopsPerStep: number;
  /** Whether the plan fits the limits (a --micro-batch override may not). */
  fits: boolean;
  /** Why this micro-batch. */
  notes: string[];
  /** What will likely fail (a --micro-batch override over the limits). */
  warnings: string[];
}

/**
 * The micro-batch of a step and its estimated peak. With `config.microBatch` > 0 that micro-batch is taken as
 * asked, with a warning when it will not fit; with 0 ("auto") the largest divisor of the batch that fits the
 * budget and, on WebGPU, the per-tensor limit. Throws when not even one image fits, saying what to do.
 */
export function planMemory(
  net: Pick<Network, "specs" | "cost">,
  config: Pick<TrainConfig, "batch" | "microBatch" | "teacher">,
  limits: PlanLimits,
): MemoryPlan {
  const paramValues = net.specs.reduce((n, s) => n + numel(s.shape), 0);
  const copies = config.teacher === "ema" ? 7 : 6;
  const fixedBytes = 4 * paramValues * copies;
  const perSampleBytes = BYTES_PER_ACTIVATION * net.cost.activations;
  const largestPerSample = 4 * net.cost.largest;
  const at = (m: number) => ({ peak: fixedBytes + m * perSampleBytes, largest: m * largestPerSample });
  const fitsAt = (m: number) =>
    at(m).peak <= limits.budgetBytes &&
    (limits.maxTensorBytes === undefined || at(m).largest <= limits.maxTensorBytes);
  const gib = (b: number) => `${(b / 2 ** 30).toFixed(2)} GiB`;
  const notes: string[] = [];
  const warnings: string[] = [];
  let m: number;
  if (config.microBatch > 0) {
    m = config.microBatch;
    notes.push(`micro-batch ${m} as asked (--micro-batch)`);
    if (!fitsAt(m)) {
      warnings.push(
        `micro-batch ${m} needs about ${gib(at(m).peak)} (largest tensor ${gib(at(m).largest)}), ` +
          `over the budget of ${gib(limits.budgetBytes)}` +
          (limits.maxTensorBytes
            ? ` or the ${limits.maxTensorSource} of ${gib(limits.maxTensorBytes)}`
            : "") +
          `: expect an out-of-memory error; drop --micro-batch to let the plan choose`,
      );
    }
  } else {
    m = config.batch;
    while (m > 1 && (config.batch % m !== 0 || !fitsAt(m))) m--;
    if (!fitsAt(m)) {
      const why = at(1).peak > limits.budgetBytes
        ? `about ${gib(at(1).peak)}, over the budget of ${gib(limits.budgetBytes)} (${limits.budgetSource})`
        : `a largest tensor of ${gib(at(1).largest)}, over WebGPU's ${limits.maxTensorSource} of ` +
          gib(limits.maxTensorBytes!);
      throw new Error(
        `one training image of this model needs ${why}: use a device with more memory (or say how much it ` +
          `has with --memory-gib), or a backend without that limit`,
      );
    }
    notes.push(
      m === config.batch
        ? `the whole batch fits`
        : `the largest divisor of the batch ${config.batch} that fits ${
          gib(limits.budgetBytes)
        } (${limits.budgetSource})`,
    );
  }
  const { peak, largest } = at(m);
  return {
    microBatch: m,
    passes: Math.ceil(config.batch / m),
    peakBytes: peak,
    peakGiB: peak / 2 ** 30,
    fixedBytes,
    perSampleBytes,
    largestTensorBytes: largest,
    gflopsPerStep: (4 * net.cost.flops * config.batch) / 1e9,
    fits: fitsAt(m),
    notes,
    warnings,
  };
}
