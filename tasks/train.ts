// deno task train:toy | train:mnist | train:cifar10 | train:imagenet64  [--run DIR] [--resume] [--backend NAME]
//                                                                       [--config NAME] [--SETTING VALUE …]
// Trains a consistency model with iCT (or any mix of CT's choices) from a preset config; every setting can be
// overridden by a flag (`--batch 2 --max-steps 10 --optimizer.lr 2e-4 --recipe ct`). Ctrl-C saves a checkpoint
// and stops; `--resume` continues the run exactly where it stopped.
import { checkPresetBackend, initBackend } from "../lib/backend.ts";
import { readCheckpointInfo } from "../lib/checkpoint.ts";
import {
  applyOverrides,
  checkResumeFlags,
  parseFlags,
  preset,
  PRESETS,
  type TrainConfig,
} from "../lib/train/config.ts";
import { latestCheckpoint, runTraining } from "../lib/train/run.ts";
import { runTask } from "../lib/cli.ts";

await runTask(async () => {
  const TASK_FLAGS = ["config", "run", "resume", "backend", "help"];
  const flags = parseFlags(Deno.args, ["resume", "help"]);
  const get = (k: string) => flags.findLast(([key]) => key === k)?.[1];
  if (get("help")) {
    console.log(
      `usage: deno task train:<preset> [--run DIR] [--resume] [--backend NAME] [--SETTING VALUE …]\n` +
        `presets: ${Object.keys(PRESETS).join(", ")} (--config NAME picks another)\n` +
        `settings: see lib/train/config.ts, e.g. --batch 2 --max-steps 10 --optimizer.lr 2e-4 --recipe ct`,
    );
    Deno.exit(0);
  }
  const name = get("config") ?? "toy2d";
  const resume = get("resume") === "true";
  const settings = flags.filter(([k]) => !TASK_FLAGS.includes(k));
  const runDir = get("run") ?? `runs/${name}`;
  // A resumed run continues with its own config (from its newest checkpoint); only loop settings may change.
  if (resume) checkResumeFlags(settings);
  const config = resume
    ? (await readCheckpointInfo(await latestCheckpoint(runDir))).config as TrainConfig
    : preset(name);
  applyOverrides(config, settings);
  checkPresetBackend(config.preset, await initBackend()); // reads --backend; no paper preset on a CPU auto picked
  const result = await runTraining(config, { runDir, resume });
  console.log(`run: ${runDir}  step ${result.step}  checkpoint ${result.lastCheckpoint}`);
});
