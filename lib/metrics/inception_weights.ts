// The FID Inception weights: pytorch-fid's port of the 2015-12-05 TensorFlow Inception graph, the network
// every published FID (the iCT paper's included) is computed with. `deno task data:inception` downloads the
// .pth once, checks it, and caches its state_dict as safetensors, which the kit then reads.
//
// Checksum: torch hub names such files `<name>-<first 8 hex digits of the file's sha256>.pth`, so the name
// itself carries a check: `6726825d`. The full sha256 is not published next to the file (and this kit was
// written without network access), so the download is verified against those 8 hex digits (32 bits: enough
// to catch a broken or wrong download, not a determined forgery), and the full sha256 it then has is
// recorded in a sidecar `<file>.sha256` (sha256sum format) and in the safetensors metadata
// (`ict_kit.source_sha256`), so later copies can be compared with it.
import { createHash } from "node:crypto";
import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { readSafetensors } from "../io/checkpoint.ts";
import { downloadWithHash, fileSize, writeFileAtomic } from "../io/fs.ts";
import { readTorchFile, torchToSafetensors } from "../io/torch_pickle.ts";

export const INCEPTION_URL =
  "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth";
/** First 8 hex digits of the sha256 of the file at INCEPTION_URL (the torch hub suffix of its name). */
export const INCEPTION_SHA256_PREFIX = "6726825d";
export const INCEPTION_DIR = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "data", "inception");
export const INCEPTION_SAFETENSORS = "pt_inception-2015-12-05.safetensors";

/**
 * Path of the cached FID Inception weights (safetensors) in `dir`, or a clear error saying how to get them.
 */
export function inceptionWeightsPath(dir: string = INCEPTION_DIR): string {
  const path = join(dir, INCEPTION_SAFETENSORS);
  if (fileSize(path) < 0) {
    const flag = dir === INCEPTION_DIR ? "" : ` --dir ${dir}`;
    throw new Error(`FID Inception weights not found at ${path}: run \`deno task data:inception${flag}\``);
  }
  return path;
}

export interface InceptionDownloadOptions {
  url?: string;
  /** Hex digits the sha256 of the download must start with (8 for the torch hub convention). */
  sha256Prefix?: string;
  /** Called as bytes arrive; `total` is the Content-Length when the server sends one. */
  onProgress?: (received: number, total: number | undefined) => void;
}

export interface InceptionDownloadResult {
  /** The safetensors cache. */
  path: string;
  /** The .pth as downloaded (kept next to it, with its `.sha256` sidecar). */
  pthPath: string;
  /** Full sha256 of the .pth. */
  sha256: string;
  /** What was done: nothing (cache already there), converted a .pth already on disk, or downloaded. */
  action: "cached" | "converted" | "downloaded";
  tensors: number;
}

function sha256Hex(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

async function readIfExists(path: string): Promise<Uint8Array | undefined> {
  try {
    return await Deno.readFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
}

/**
 * Make sure `dir` holds the safetensors cache of the FID Inception weights: if it is there (and made from a
 * file whose sha256 starts with the prefix) nothing is done; else a .pth already in `dir` with the right
 * prefix is converted; else the file is downloaded, its sha256 prefix checked, parsed (refusing anything
 * unsafe), and only then written: the .pth, its `.sha256` sidecar, and the safetensors (each atomically).
 * On a checksum mismatch or an unreadable file nothing is written.
 */
export async function downloadInceptionWeights(
  dir: string = INCEPTION_DIR,
  opts: InceptionDownloadOptions = {},
): Promise<InceptionDownloadResult> {
  const { url = INCEPTION_URL, sha256Prefix = INCEPTION_SHA256_PREFIX, onProgress } = opts;
  const prefix = sha256Prefix.toLowerCase();
  if (!/^[0-9a-f]{1,64}$/.test(prefix)) throw new Error(`sha256 prefix "${sha256Prefix}" is not hex`);
  const path = join(dir, INCEPTION_SAFETENSORS);
  const pthPath = join(dir, basename(new URL(url).pathname));

  if (fileSize(path) >= 0) {
    try {
      const { tensors, metadata } = await readSafetensors(path);
      const sha = metadata["ict_kit.source_sha256"] ?? "";
      if (sha.startsWith(prefix)) {
        return { path, pthPath, sha256: sha, action: "cached", tensors: tensors.size };
      }
    } catch { /* unreadable cache: make it again */ }
  }

  const convert = async (sha256: string, action: InceptionDownloadResult["action"]) => {
    const { names } = await torchToSafetensors(pthPath, path, { "ict_kit.source_url": url });
    return { path, pthPath, sha256, action, tensors: names.length };
  };

  const local = await readIfExists(pthPath);
  if (local) {
    const sha256 = sha256Hex(local);
    if (sha256.startsWith(prefix)) {
      const result = await convert(sha256, "converted"); // writes nothing if the file is refused
      await writeFileAtomic(`${pthPath}.sha256`, `${sha256}  ${basename(pthPath)}\n`);
      return result;
    }
  }

  const { bytes, digest: sha256 } = await downloadWithHash(url, "sha256", onProgress);
  if (!sha256.startsWith(prefix)) {
    throw new Error(
      `sha256 of ${url} is ${sha256}, which does not start with ${prefix} as its name says: a broken or ` +
        `altered download (${bytes.length} bytes). Nothing was written; try again.`,
    );
  }
  readTorchFile(bytes, url); // parse (and refuse anything unsafe) before writing anything
  await Deno.mkdir(dir, { recursive: true });
  await writeFileAtomic(pthPath, bytes);
  await writeFileAtomic(`${pthPath}.sha256`, `${sha256}  ${basename(pthPath)}\n`);
  return await convert(sha256, "downloaded");
}
