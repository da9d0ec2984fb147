// deno task gpu:check [--backend NAME] [--quick] [--json] [--max-micro-batch N] [--steps N]
// What a GPU owner runs first. It says which backend and device the kit uses and their limits; checks that
// the tiny NCSN++ and ADM give the same outputs and gradients there as on `cpu` (a wrong kernel shows up here,
// not as a training run that silently diverges); then times the paper's NCSN++ iCT step at micro-batches
// 1, 2, 4, … (a warm-up, then --steps timed steps each): images/s, achieved TFLOP/s and peak tensor memory.
// Doubling stops at the memory plan's micro-batch (lib/train/memory_plan.ts) or --max-micro-batch, when the
// next size's projected memory exceeds what the device has, or at the first error (out of memory, a webgpu
// size limit). --quick runs the tiny models only.
import * as tf from "@tensorflow/tfjs";
import {
  type BackendName,
  backendRequest,
  type DeviceLimits,
  deviceLimits,
  formatBytes,
  initBackend,
} from "../lib/backend.ts";
import { BACKEND_FLAG, parseTaskFlags, runTask } from "../lib/cli.ts";
import { buildNetwork, modelConfig } from "../lib/models/index.ts";
import { allocateModel, timeIctStep } from "../lib/step_timing.ts";
import { preset } from "../lib/train/config.ts";
import { planLimits, planMemory } from "../lib/train/memory_plan.ts";
import { outputsAndGrads, tinyCases } from "../tests/reference/tiny_networks.ts";

const USAGE =
  "usage: deno task gpu:check [--backend NAME] [--quick] [--json] [--max-micro-batch N] [--steps N]";
/** Largest error relative to the largest |cpu value| that still counts as agreeing (TF32 convs are ~1e-3). */
const AGREE = 1e-2;
const PAPER_MODEL = "ncsnpp-cifar10";

interface TinyCheck {
  model: string;
  outputError: number;
  gradError: number;
  worstParam: string;
  agrees: boolean;
}

interface StepRow {
  microBatch: number;
  stepSeconds: number[];
  imagesPerSecond: number;
  tflops: number;
  peakTensorBytes: number;
  /** webgpu: bytes TF.js's buffer pool holds on the GPU (it never frees, so this is the footprint). */
  gpuBufferBytes?: number;
}

const maxAbs = (a: ArrayLike<number>) => {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
};
const maxDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]) || (a[i] === b[i] ? 0 : Infinity));
  return m;
};

/** Tiny NCSN++ and ADM, forward and backward (training mode, dropout on), on `backend` against cpu. */
async function checkTiny(backend: BackendName): Promise<TinyCheck[]> {
  const rows: TinyCheck[] = [];
  for (const c of tinyCases()) {
    const ref = await outputsAndGrads("cpu", c, true);
    const got = await outputsAndGrads(backend, c, true);
    const outputError = maxDiff(got.out, ref.out) / Math.max(1e-12, maxAbs(ref.out));
    let [gradError, worstParam] = [0, ""];
    for (const [name, g] of ref.grads) {
      const e = maxDiff(got.grads.get(name)!, g) / Math.max(1e-12, maxAbs(g));
      if (!(e <= gradError)) [gradError, worstParam] = [e, name];
    }
    rows.push({
      model: c.name,
      outputError,
      gradError,
      worstParam,
      agrees: outputError <= AGREE && gradError <= AGREE,
    });
  }
  return rows;
}

interface Sweep {
  rows: StepRow[];
  stopped: string;
}

/** The paper's NCSN++ iCT step at micro-batches 1, 2, 4, … on the current backend. */
async function sweepMicroBatches(
  maxFlag: number | undefined,
  steps: number,
  limits: DeviceLimits,
  log: (s: string) => void,
): Promise<Sweep> {
  const config = modelConfig(PAPER_MODEL);
  const net = buildNetwork(config);
  const memoryBytes = limits.memoryBytes;
  // Up to the micro-batch the trainer would plan for the paper's batch on this device (the plan counts the
  // optimizer's copies too, so it is conservative here); --max-micro-batch overrides it.
  const paper = preset("cifar10");
  let plan: number;
  try {
    plan = planMemory(net, { ...paper, microBatch: 0 }, planLimits(limits)).microBatch;
  } catch {
    plan = 1; // the plan says not even one image fits: measure that one
  }
  const [maxMicroBatch, limitText] = maxFlag === undefined
    ? [
      plan,
      `the memory plan's micro-batch ${plan} for batch ${paper.batch} (--max-micro-batch N goes further)`,
    ]
    : [maxFlag, `--max-micro-batch ${maxFlag}`];
  const m = allocateModel(net);
  const rows: StepRow[] = [];
  const flopsPerImage = 4 * net.cost.flops; // student forward + backward (≈ 2 forwards) + teacher forward
  try {
    for (let mb = 1;; mb *= 2) {
      if (mb > maxMicroBatch) return { rows, stopped: `${limitText} reached` };
      const last = rows.at(-1);
      if (last && memoryBytes && 2 * last.peakTensorBytes > memoryBytes) {
        return {
          rows,
          stopped: `micro-batch ${mb} would need ≈ ${formatBytes(2 * last.peakTensorBytes)} of tensors, ` +
            `over the ${formatBytes(memoryBytes)} this device has`,
        };
      }
      try {
        await timeIctStep(m, config, mb); // warm-up: kernel compilation, buffer pool, autotuning
        const runs = [];
        for (let i = 0; i < steps; i++) runs.push(await timeIctStep(m, config, mb, 2 + i));
        const mean = runs.reduce((a, r) => a + r.seconds, 0) / steps;
        const gpu = (tf.memory() as { numBytesAllocatedInGPU?: number }).numBytesAllocatedInGPU;
        const row: StepRow = {
          microBatch: mb,
          stepSeconds: runs.map((r) => r.seconds),
          imagesPerSecond: mb / mean,
          tflops: (flopsPerImage * mb) / mean / 1e12,
          peakTensorBytes: Math.max(...runs.map((r) => r.peakBytes)),
          gpuBufferBytes: gpu,
        };
        rows.push(row);
        log(formatRow(row));
      } catch (e) {
        const message = `micro-batch ${mb} failed: ${(e as Error).message}`.replace(/\s+/g, " ");
        if (mb === 1) throw new Error(message);
        return { rows, stopped: message };
      }
    }
  } finally {
    tf.dispose([...m.params.values()]);
  }
}

function formatRow(r: StepRow): string {
  const mean = r.stepSeconds.reduce((a, b) => a + b, 0) / r.stepSeconds.length;
  return `  micro-batch ${String(r.microBatch).padStart(3)}: ${
    mean.toFixed(2)
  } s/step (${r.stepSeconds.length} timed), ` +
    `${r.imagesPerSecond.toPrecision(3)} images/s, ${r.tflops.toPrecision(3)} TFLOP/s, ` +
    `peak ${formatBytes(r.peakTensorBytes)} of tensors` +
    (r.gpuBufferBytes ? `, ${formatBytes(r.gpuBufferBytes)} of GPU buffers` : "");
}

await runTask(async () => {
  const args = parseTaskFlags({
    usage: USAGE.replace(/^usage: /, ""),
    flags: [
      BACKEND_FLAG,
      { name: "quick", help: "the correctness checks only, no step timing" },
      { name: "json", help: "one JSON object on stdout (human lines on stderr)" },
      {
        name: "max-micro-batch",
        value: "M",
        help: "largest micro-batch to time (default: the memory plan's)",
      },
      { name: "steps", value: "S", default: "3", help: "timed steps per micro-batch (>= 3)" },
    ],
  });
  const values = { backend: args.values.backend, quick: args.flag("quick"), json: args.flag("json") };
  const steps = args.int("steps", 3)!;
  const maxMicroBatch = args.int("max-micro-batch", 1);
  // Human lines go to stderr with --json, so stdout is the JSON alone.
  const log = (s: string) => values.json ? console.error(s) : console.log(s);

  const choice = await initBackend({
    backend: backendRequest(values.backend ? ["--backend", values.backend] : []),
  });
  const limits = await deviceLimits();
  log(`backend   ${choice.name}${choice.request === "auto" ? " (auto)" : ""}`);
  log(`device    ${limits.device}`);
  if (limits.maxBindingBytes) {
    log(
      `limits    one tensor ≤ ${
        formatBytes(limits.maxBindingBytes)
      } (maxStorageBufferBindingSize), one buffer ≤ ${formatBytes(limits.maxBufferBytes!)} (maxBufferSize)`,
    );
  }
  log(
    `memory    ${limits.memoryBytes ? formatBytes(limits.memoryBytes) : "unknown"} (${limits.memorySource})`,
  );
  for (const p of choice.probes) log(`  ${p.available ? "✓" : "✗"} ${p.name.padEnd(10)} ${p.detail}`);

  log(`\ntiny NCSN++ and ADM on ${choice.name} against cpu (largest error / largest |cpu value|):`);
  const tiny = await checkTiny(choice.name);
  for (const t of tiny) {
    log(
      `  ${t.model.padEnd(7)} output ${t.outputError.toExponential(1)}, gradients ${
        t.gradError.toExponential(1)
      } ` +
        `(worst: ${t.worstParam}) — ${t.agrees ? "agree" : `DISAGREE (over ${AGREE})`}`,
    );
  }
  if (!(await tf.setBackend(choice.name))) throw new Error(`could not switch back to ${choice.name}`);

  let sweep: Sweep | undefined;
  if (!values.quick) {
    log(`\n${PAPER_MODEL} iCT step (a warm-up, then ${steps} timed steps per micro-batch):`);
    sweep = await sweepMicroBatches(maxMicroBatch, steps, limits, log);
    log(`  stopped: ${sweep.stopped}`);
  }
  if (values.json) {
    console.log(
      JSON.stringify({ backend: choice.name, reason: choice.reason, limits, tiny, steps: sweep }, null, 2),
    );
  }
  if (tiny.some((t) => !t.agrees)) {
    throw new Error(`${choice.name} disagrees with cpu on the tiny networks (above)`);
  }
});
