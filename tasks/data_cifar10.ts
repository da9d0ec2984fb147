// deno task data:cifar10 [--dir DIR]
// Download CIFAR-10 (binary version, 163 MB) from the authors' page, check the published md5, and unpack
// the six .bin files into DIR/cifar-10-batches-bin/ (default data/cifar10). Does nothing if they are there.
import { join } from "node:path";
import { parseTaskFlags } from "../lib/cli.ts";
import { downloadProgress } from "../lib/log.ts";
import {
  CIFAR10_DIR,
  CIFAR10_FILES,
  CIFAR10_MD5,
  CIFAR10_URL,
  downloadCifar10,
} from "../lib/data/cifar10.ts";

let values: { dir: string };
try {
  const args = parseTaskFlags({
    usage: "deno task data:cifar10 [--dir DIR]",
    flags: [{ name: "dir", value: "DIR", default: CIFAR10_DIR, help: "where to unpack CIFAR-10" }],
  });
  values = { dir: args.values.dir! };
} catch (e) {
  console.error(`error: ${(e as Error).message}`);
  Deno.exit(2);
}

const mb = (n: number) => (n / 1e6).toFixed(1);
const progress = downloadProgress();

console.log(`CIFAR-10: ${CIFAR10_URL} (md5 ${CIFAR10_MD5}) → ${values.dir}`);
try {
  const { dir, downloaded } = await downloadCifar10(values.dir, { onProgress: progress.onProgress });
  progress.end();
  console.log(downloaded ? "md5 verified; unpacked:" : "already there (official sizes), nothing downloaded:");
  for (const f of [...CIFAR10_FILES.train, ...CIFAR10_FILES.test]) {
    console.log(`  ${join(dir, f)}  ${mb(Deno.statSync(join(dir, f)).size)} MB`);
  }
} catch (e) {
  progress.end();
  console.error(`error: ${(e as Error).message}`);
  Deno.exit(1);
}
