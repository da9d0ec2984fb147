// deno task ablate --figure 1|2a|2b|3|4|5|all [--seeds N] [--steps N] [--eval-n N] [--out FILE]
// Single-factor ablations of Section 3 on the 2-D toy data (lib/ablation.ts): each variant changes one Table 1
// choice of the iCT toy2d preset, is trained with seeds 0 … N−1 and scored by the sliced W1 of its one-step
// samples against held-out points; each alternative is judged against the paper's choice (agrees, disagrees
// or inconclusive: the 95% t-interval of the paired difference). Writes a JSON file with the command and date.
import { initBackend } from "../lib/backend.ts";
import { ablationFile, DEFAULT_SETTINGS, FIGURES, parseFigures, summaryRows } from "../lib/ablation.ts";
import { writeFileAtomic } from "../lib/io/fs.ts";
import { Logger } from "../lib/log.ts";
import { BACKEND_FLAG, parseTaskFlags, runTask } from "../lib/cli.ts";

await runTask(async () => {
  const args = parseTaskFlags({
    usage: "deno task ablate --figure 1|2a|2b|3|4|5|all [--seeds N] [--steps N] [--eval-n N] [--out FILE]",
    flags: [
      {
        name: "figure",
        value: FIGURES.join("|") + "|all",
        help: "which figure's ablation (a comma list works)",
      },
      {
        name: "seeds",
        value: "N",
        default: String(DEFAULT_SETTINGS.seeds),
        help: "seeds per variant (>= 2)",
      },
      { name: "steps", value: "N", default: String(DEFAULT_SETTINGS.steps), help: "training steps per run" },
      { name: "eval-n", value: "N", default: String(DEFAULT_SETTINGS.evalN), help: "samples scored per run" },
      { name: "out", value: "FILE", help: "the JSON to write (default runs/ablations/figure-ID.json)" },
      BACKEND_FLAG,
    ],
    notes: "The toy MLP trains fastest on one wasm thread: ICT_WASM_THREADS defaults to 1 here.",
  });
  if (!args.values.figure) throw new Error("--figure is required (see --help)");
  const figures = parseFigures(args.values.figure);
  const settings = {
    seeds: args.int("seeds", 2)!,
    steps: args.int("steps", 1)!,
    evalN: args.int("eval-n", 2)!,
  };
  // A tiny MLP step is dominated by per-op overhead; a second thread only adds synchronization.
  if (!Deno.env.get("ICT_WASM_THREADS")) Deno.env.set("ICT_WASM_THREADS", "1");
  const backend = await initBackend();
  const log = new Logger();
  const out = args.values.out ?? `runs/ablations/figure-${figures.join("-")}.json`;
  const command = ["deno task ablate", ...Deno.args].join(" ");
  log.info(`${command}: ${settings.seeds} seeds × ${settings.steps} steps per variant`);
  const file = await ablationFile(figures, settings, command, backend.name, (line) => log.info(line));
  const dir = out.includes("/") ? out.slice(0, out.lastIndexOf("/")) : ".";
  await Deno.mkdir(dir, { recursive: true });
  await writeFileAtomic(out, JSON.stringify(file, null, 1) + "\n");
  console.table(summaryRows(file.figures));
  log.info(`wrote ${out}`);
});
