// deno task data:openai-cm --model cd_imagenet64_lpips|cd_imagenet64_l2|ct_imagenet64|cd_bedroom256_lpips|…
//                          [--out DIR] [--sha256 HEX] [--base-url URL] [--force]
// Downloads a consistency model released by openai/consistency_models (their README's links on
// openaipublic.blob.core.windows.net) to DIR/NAME.pt with a progress line, atomically, and records its sha256 in
// DIR/NAME.pt.sha256. OpenAI publishes no checksums for these files and none was found elsewhere, so the sha256
// is printed and recorded rather than checked; pass --sha256 HEX to have a download checked (a mismatch is
// refused and nothing is written). Without one, an incomplete file (not a whole PyTorch zip archive) is refused.
// Then: deno task import:openai-cm --checkpoint DIR/NAME.pt --arch imagenet64 --out runs/NAME
import { parseTaskFlags, runTask } from "../lib/cli.ts";
import { downloadProgress, Logger } from "../lib/log.ts";
import { downloadReleased, OPENAI_CM_BASE_URL, RELEASED_MODELS } from "../lib/openai_cm.ts";

await runTask(async () => {
  const names = Object.keys(RELEASED_MODELS);
  const args = parseTaskFlags({
    usage: `deno task data:openai-cm --model ${names.join("|")} [--out DIR] [--sha256 HEX] [--force]`,
    flags: [
      { name: "model", value: "NAME", help: names.join(", ") },
      { name: "out", value: "DIR", default: "data/openai_cm", help: "where to write NAME.pt" },
      { name: "sha256", value: "HEX", help: "the sha256 the file must have (a mismatch is refused)" },
      { name: "base-url", value: "URL", default: OPENAI_CM_BASE_URL, help: "where the files are (a mirror)" },
      { name: "force", help: "download again even if a file with the given sha256 is there" },
    ],
  });
  const model = args.values.model;
  if (!model) throw new Error(`--model is required: one of ${names.join(", ")}`);
  const log = new Logger();
  const released = RELEASED_MODELS[model];
  if (released) log.info(`downloading ${model} from ${args.values["base-url"]}${released.file}`);
  const progress = downloadProgress();
  let result;
  try {
    result = await downloadReleased(model, {
      dir: args.values.out,
      sha256: args.values.sha256,
      baseUrl: args.values["base-url"],
      force: args.flag("force"),
      onProgress: progress.onProgress,
    });
  } finally {
    progress.end();
  }
  const { path, sha256, bytes, verified, cached } = result;
  const check = verified
    ? "matches the expected sha256"
    : `not checked (no published checksum); recorded in ${path}.sha256: pin it with --sha256 ${sha256}`;
  console.log(
    `${cached ? "already there" : "wrote"} ${path} (${bytes} bytes)\n` +
      `  sha256  ${sha256}: ${check}\n` +
      `  next    deno task import:openai-cm --checkpoint ${path} --arch ${RELEASED_MODELS[model].arch} ` +
      `--out runs/${model}`,
  );
});
