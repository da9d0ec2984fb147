// deno task data:inception [--dir DIR]
// Download the FID Inception weights (pytorch-fid's pt_inception-2015-12-05-6726825d.pth, 91 MB), check
// that its sha256 starts with 6726825d (the torch hub suffix of its name; the full sha256 is not published,
// so it is recorded in DIR/<file>.sha256 and in the cache's metadata instead), read it with the kit's safe
// unpickler (no Python, nothing in the file is executed) and cache the state_dict as
// DIR/pt_inception-2015-12-05.safetensors (default DIR: data/inception). Does nothing if the cache is there.
// --url and --sha256-prefix replace the source (tests serve a small file on 127.0.0.1).
import { downloadProgress } from "../lib/log.ts";
import { parseTaskFlags, runTask } from "../lib/cli.ts";
import {
  downloadInceptionWeights,
  INCEPTION_DIR,
  INCEPTION_SHA256_PREFIX,
  INCEPTION_URL,
} from "../lib/metrics/inception_weights.ts";

const progress = downloadProgress();

await runTask(async () => {
  const { values } = parseTaskFlags({
    usage: "deno task data:inception [--dir DIR]",
    flags: [
      { name: "dir", value: "DIR", default: INCEPTION_DIR, help: "where to cache the weights" },
      { name: "url", value: "URL", default: INCEPTION_URL, help: "another source (tests)" },
      { name: "sha256-prefix", value: "HEX", default: INCEPTION_SHA256_PREFIX, help: "its sha256 prefix" },
    ],
  }) as { values: Record<string, string> };
  console.log(`FID Inception weights: ${values.url} (sha256 ${values["sha256-prefix"]}…) → ${values.dir}`);
  try {
    const r = await downloadInceptionWeights(values.dir, {
      url: values.url,
      sha256Prefix: values["sha256-prefix"],
      onProgress: progress.onProgress,
    });
    progress.end();
    const what = {
      cached: "already there, nothing downloaded:",
      converted: `converted the .pth already in ${values.dir} (sha256 prefix verified):`,
      downloaded: "downloaded, sha256 prefix verified, read safely and converted:",
    }[r.action];
    console.log(what);
    console.log(`  ${r.path}  ${r.tensors} tensors`);
    console.log(`  source ${r.pthPath}  sha256 ${r.sha256}`);
  } catch (e) {
    progress.end();
    throw e;
  }
});
