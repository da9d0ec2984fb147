// deno task import:openai-cm --checkpoint FILE.pt --arch imagenet64|bedroom256|cat256|FILE.json --out RUN_DIR
//                            [--force]
// Imports a consistency model released by openai/consistency_models (or any checkpoint of their UNetModel) as a
// run directory of the kit: RUN/config.json, RUN/checkpoints/step-00000000.safetensors (the `ema` group) and
// RUN/import.json (the source file's sha256 and size, and the model flags). The .pt is read with the kit's safe
// unpickler (lib/io/torch_pickle.ts: no code in the file runs). Then `deno task sample --run RUN`,
// `deno task denoise --run RUN …` and `deno task fid` work on it. lib/openai_cm.ts has the name mapping.
import { initBackend } from "../lib/backend.ts";
import { parseTaskFlags, runTask } from "../lib/cli.ts";
import { Logger } from "../lib/log.ts";
import { importOpenAiCheckpoint, OPENAI_ARCHES } from "../lib/openai_cm.ts";

await runTask(async () => {
  const args = parseTaskFlags({
    usage: "deno task import:openai-cm --checkpoint FILE.pt --arch imagenet64|bedroom256|cat256|FILE.json " +
      "--out RUN_DIR [--force]",
    flags: [
      { name: "checkpoint", value: "FILE.pt", help: "a torch.save file of OpenAI's UNetModel state_dict" },
      {
        name: "arch",
        value: "NAME|FILE.json",
        help: `${Object.keys(OPENAI_ARCHES).join(", ")}, or a JSON file of their model flags`,
      },
      { name: "out", value: "RUN_DIR", help: "the run directory to write" },
      { name: "force", help: "replace the checkpoints of an existing run directory" },
    ],
    notes: "The weights become the run's `ema` group: sample it with the default --weights ema.",
  });
  const { checkpoint, arch, out } = args.values;
  if (!checkpoint) {
    throw new Error("--checkpoint FILE.pt is required (deno task data:openai-cm downloads one)");
  }
  if (!arch) throw new Error(`--arch is required: ${Object.keys(OPENAI_ARCHES).join(", ")} or FILE.json`);
  if (!out) throw new Error("--out RUN_DIR is required");
  // Only copies tensors: the plain JavaScript backend keeps them in host memory, without a device limit.
  await initBackend({ backend: "cpu", quiet: true });
  const log = new Logger();
  log.info(`importing ${checkpoint} (--arch ${arch})`);
  const started = performance.now();
  const { checkpoint: written, record } = await importOpenAiCheckpoint({
    checkpoint,
    arch,
    out,
    force: args.flag("force"),
  });
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  console.log(
    `imported ${record.parameters.toLocaleString("en-US")} parameters in ${seconds} s\n` +
      `  source  ${record.source} (${record.sourceBytes} bytes)\n` +
      `  sha256  ${record.sha256}\n` +
      `  wrote   ${out}/config.json, ${written}, ${out}/import.json\n` +
      `  next    deno task sample --run ${out} --steps 1`,
  );
});
