// deno task train:toy | train:mnist | train:cifar10 | train:imagenet64  [--run DIR] [--resume] [--backend NAME]
//                                                                       [--config NAME] [--init RUN|FILE]
//                                                                       [--SETTING VALUE …]
// Trains a consistency model with iCT (or any mix of CT's choices) from a preset config; every setting can be
// overridden by a flag (`--batch 2 --max-steps 10 --optimizer.lr 2e-4 --recipe ct`). Ctrl-C (or SIGTERM) saves a
// checkpoint after the current step and stops, a second one exits at once; `--resume` continues the run exactly
// where it stopped. See README "Long runs" for divergence rollbacks, failed writes and the run lock.
import {
  type BackendRequest,
  checkPresetBackend,
  type DeviceLimits,
  deviceLimits,
  initBackend,
} from "../lib/backend.ts";
import { buildNetwork } from "../lib/models/index.ts";
import { planLimits, planMemory } from "../lib/train/memory_plan.ts";
import { readCheckpointInfo } from "../lib/io/checkpoint.ts";
import {
  applyOverrides,
  checkResumeFlags,
  preset,
  PRESETS,
  type TrainConfig,
  withLoopDefaults,
} from "../lib/train/config.ts";
import { latestCheckpoint, runTraining } from "../lib/train/run.ts";
import { communicatorFor, rankEnvironment } from "../lib/distributed/mpi.ts";
import { BACKEND_FLAG, parseTaskFlags, runTask, type TaskSpec } from "../lib/cli.ts";

const TRAIN_SPEC: TaskSpec = {
  usage:
    "deno task train:<preset> [--run DIR] [--resume | --init RUN|FILE] [--backend NAME] [--memory-gib G] " +
    "[--SETTING VALUE …]\n" +
    "       deno task train:<preset> --plan [--backend NAME] [--memory-gib G] [--json]   (the memory plan only)\n" +
    "       mpirun -np N deno task train:<preset> … [--distributed mpi|none|auto]   (data parallel)",
  flags: [
    {
      name: "config",
      value: "NAME",
      default: "toy2d",
      help: `the preset: ${Object.keys(PRESETS).join(", ")}`,
    },
    { name: "run", value: "DIR", help: "the run directory (default runs/<preset>)" },
    { name: "resume", help: "continue the newest checkpoint in --run (only loop settings may change)" },
    {
      name: "init",
      value: "RUN|FILE",
      help: "start a new run from another run's weights (its newest checkpoint, or a .safetensors file): " +
        "student and EMA start there, fresh optimizer, step 0; the network must be the source's",
    },
    { name: "init-weights", value: "ema|params", default: "ema", help: "with --init: which of its weights" },
    BACKEND_FLAG,
    { name: "memory-gib", value: "G", help: "the memory the plan may use" },
    { name: "plan", help: "print the memory plan and exit" },
    { name: "json", help: "with --plan: one JSON line" },
    { name: "distributed", value: "mpi|none|auto", default: "auto", help: "data parallel over MPI" },
  ],
  settings: "any config value, e.g. --batch 2 --max-steps 10 --optimizer.lr 2e-4 --recipe ct " +
    "--eval-every 1000 --eval-n 1000 --spike-factor 20 --max-rollbacks 3 (lib/train/config.ts)",
};

await runTask(async () => {
  const args = parseTaskFlags(TRAIN_SPEC);
  const get = (k: string) => args.values[k];
  const name = get("config")!;
  const resume = args.flag("resume");
  const settings = args.settings;
  const runDir = get("run") ?? `runs/${name}`;
  const init = get("init");
  const initWeights = get("init-weights")!;
  if (initWeights !== "ema" && initWeights !== "params") {
    throw new Error(
      `--init-weights takes ema (the source's EMA) or params (its student), got "${initWeights}"`,
    );
  }
  if (args.given("init-weights") && !init) throw new Error("--init-weights goes with --init RUN|FILE");
  if (init && resume) {
    throw new Error(
      "--init starts a new run from another run's weights and --resume continues this one: give one of them",
    );
  }
  // A resumed run continues with its own config (from its newest checkpoint); only loop settings may change.
  if (resume) checkResumeFlags(settings);
  const config = resume
    ? withLoopDefaults((await readCheckpointInfo(await latestCheckpoint(runDir))).config as TrainConfig)
    : preset(name);
  applyOverrides(config, settings);
  // On resume the memory plan chooses again (other devices, other ranks) unless --micro-batch is given.
  if (resume && !settings.some(([k]) => /^micro-?batch$/i.test(k))) config.microBatch = 0;
  const memoryGiB = args.number("memory-gib");
  if (args.flag("plan")) {
    return await printPlan(
      config,
      get("backend") as BackendRequest | undefined,
      memoryGiB,
      args.flag("json"),
    );
  }
  // Data parallel under mpirun (or --distributed mpi): each rank takes its own GPU, or its share of the cores.
  const comm = communicatorFor(get("distributed")!);
  for (
    const [k, v] of Object.entries(rankEnvironment(comm, Deno.env.toObject(), navigator.hardwareConcurrency))
  ) {
    Deno.env.set(k, v);
  }
  try {
    checkPresetBackend(config.preset, await initBackend()); // reads --backend; no paper preset on a CPU auto picked
    const limits = planLimits(await deviceLimits(), memoryGiB);
    const result = await runTraining(config, {
      runDir,
      resume,
      init: init ? { from: init, weights: initWeights } : undefined,
      limits,
      comm,
    });
    if (comm.rank === 0) {
      console.log(`run: ${runDir}  step ${result.step}  checkpoint ${result.lastCheckpoint}`);
    }
  } finally {
    comm.finalize();
  }
}, { stoppable: true });

/**
 * `--plan`: the resolved config, the micro-batch, the estimated peak and the GFLOP per step, then exit. The
 * backend is initialized to read its limits when it can be; one that is not installed (tensorflow on a
 * machine without tfjs-node) is planned for from --memory-gib or its stated default.
 */
async function printPlan(
  config: TrainConfig,
  backend: BackendRequest | undefined,
  memoryGiB?: number,
  json = false,
) {
  let device: Pick<
    DeviceLimits,
    "backend" | "memoryBytes" | "memorySource" | "maxBindingBytes" | "maxBufferBytes"
  >;
  try {
    await initBackend({ backend, quiet: json });
    device = await deviceLimits();
  } catch (e) {
    if (!backend || backend === "auto") throw e;
    device = { backend, memorySource: `not initialized here: ${(e as Error).message.split("\n")[0]}` };
  }
  const limits = planLimits(device, memoryGiB);
  const net = buildNetwork(config.model);
  const plan = planMemory(net, config, limits);
  const report = {
    config: { ...config, microBatch: plan.microBatch },
    backend: device.backend,
    limits,
    ...plan,
  };
  if (json) return console.log(JSON.stringify(report));
  console.log(JSON.stringify(report.config, null, 2));
  console.log(
    `plan for ${config.preset} on ${device.backend}: budget ${
      (limits.budgetBytes / 2 ** 30).toFixed(1)
    } GiB ` +
      `(${limits.budgetSource})` +
      (limits.maxTensorBytes
        ? `, largest tensor ≤ ${(limits.maxTensorBytes / 2 ** 30).toFixed(2)} GiB (${limits.maxTensorSource})`
        : "") +
      `\n  batch ${config.batch} in passes of ${plan.microBatch} (${plan.passes} per step): ${
        plan.notes.join("; ")
      }` +
      `\n  estimated peak ${plan.peakGiB.toFixed(2)} GiB = parameter copies ${
        (plan.fixedBytes / 2 ** 30).toFixed(2)
      } GiB ` +
      `+ ${(plan.perSampleBytes / 2 ** 30).toFixed(3)} GiB per image of a pass; largest tensor ` +
      `${(plan.largestTensorBytes / 2 ** 30).toFixed(3)} GiB` +
      `\n  ${plan.gflopsPerStep.toFixed(0)} GFLOP per step (${
        (plan.gflopsPerStep / config.batch).toFixed(1)
      } per image: ` +
      `student forward and backward, teacher forward)`,
  );
}
