// CIFAR-10 in its official binary format (https://www.cs.toronto.edu/~kriz/cifar.html): files of records,
// each 1 label byte then 3072 pixel bytes (1024 red, 1024 green, 1024 blue; 32×32, rows top to bottom).
// Train = data_batch_1..5.bin (50,000 images), test = test_batch.bin (10,000). Kept as uint8 in memory
// (150 MB), converted to NHWC floats in [−1, 1] per batch.
import { basename, join, resolve } from "node:path";
import { gunzipSync } from "fflate";
import { parseTar } from "nanotar";
import { concat } from "../arrays.ts";
import { downloadWithHash, fileSize, writeFileAtomic } from "../io/fs.ts";
import { DATA_ROOT, type Dataset, PlanarU8Images } from "./dataset.ts";

export const CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz";
/** The md5 published on the CIFAR page for cifar-10-binary.tar.gz. */
export const CIFAR10_MD5 = "c32a1d4ab5d03f1284b67883e8d87530";
export const CIFAR10_DIR = join(DATA_ROOT, "cifar10");
/** The folder the archive unpacks to, inside the data dir. */
export const CIFAR10_BIN = "cifar-10-batches-bin";
export const CIFAR10_FILES = {
  train: ["data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin"],
  test: ["test_batch.bin"],
};
/** The 5,000-image subset of ../shared (first records of data_batch_1 and test_batch). */
export const CIFAR10_SUBSET_FILES = {
  train: ["data_batch_1_first4000.bin"],
  test: ["test_batch_first1000.bin"],
};
export const CIFAR10_CLASSES = [
  "airplane",
  "automobile",
  "bird",
  "cat",
  "deer",
  "dog",
  "frog",
  "horse",
  "ship",
  "truck",
];

const RECORD = 1 + 3072;
/** Size of each official .bin file: 10,000 records. */
const OFFICIAL_BYTES = 10_000 * RECORD;
const ALL_FILES = [...CIFAR10_FILES.train, ...CIFAR10_FILES.test];

/** CIFAR-10 records from the given files, in order (labelDim 10). */
export async function loadCifar10Files(paths: string[], name: string): Promise<Dataset> {
  const parts: Uint8Array[] = [];
  for (const path of paths) {
    const bytes = await Deno.readFile(path);
    if (bytes.length === 0 || bytes.length % RECORD !== 0) {
      throw new Error(
        `${path}: ${bytes.length} bytes is not a whole number of CIFAR-10 records (${RECORD} bytes each); ` +
          "truncated or not the binary version? Download it again with `deno task data:cifar10`",
      );
    }
    parts.push(bytes);
  }
  const records = parts.length === 1 ? parts[0] : concat(parts, Uint8Array);
  const count = records.length / RECORD;
  const labels = new Int32Array(count);
  for (let i = 0; i < count; i++) {
    labels[i] = records[i * RECORD];
    if (labels[i] > 9) throw new Error(`${name}: record ${i} has label ${labels[i]}, not 0..9`);
  }
  return new PlanarU8Images(name, [32, 32, 3], records, labels, 10, { offset: 1, stride: RECORD, count });
}

/**
 * CIFAR-10 from `dir`: `dir/cifar-10-batches-bin/*.bin` as `deno task data:cifar10` writes it, the .bin
 * files directly in `dir`, or the 5,000-image subset (data_batch_1_first4000.bin, test_batch_first1000.bin).
 */
export async function loadCifar10(dir: string, split: "train" | "test"): Promise<Dataset> {
  if (split !== "train" && split !== "test") {
    throw new Error(`CIFAR-10 split must be train or test, got ${split}`);
  }
  const layouts = [
    { files: CIFAR10_FILES[split].map((f) => join(dir, CIFAR10_BIN, f)), name: `cifar10-${split}` },
    { files: CIFAR10_FILES[split].map((f) => join(dir, f)), name: `cifar10-${split}` },
    { files: CIFAR10_SUBSET_FILES[split].map((f) => join(dir, f)), name: `cifar10-subset-${split}` },
  ];
  const found = layouts.find((l) => l.files.every((f) => fileSize(f) >= 0));
  if (found) return await loadCifar10Files(found.files, found.name);
  const missing = layouts[0].files.filter((f) => fileSize(f) < 0);
  const task = resolve(dir) === CIFAR10_DIR
    ? "deno task data:cifar10"
    : `deno task data:cifar10 --dir ${dir}`;
  throw new Error(
    `CIFAR-10 (${split}) not found: missing ${missing.join(", ")}. Run \`${task}\` to download and verify ` +
      "it (163 MB), or pass --data.dir DIR for a folder that holds cifar-10-batches-bin/.",
  );
}

export interface DownloadOptions {
  url?: string;
  md5?: string;
  /** Called as bytes arrive; `total` is the Content-Length when the server sends one. */
  onProgress?: (received: number, total: number | undefined) => void;
}

/**
 * Download the binary archive, check its md5, unpack the six .bin files into `dir/cifar-10-batches-bin/`.
 * Nothing is written unless the md5 matches; each file is written atomically. Skips everything when the
 * six files are already there with their official sizes. Returns the folder and whether it downloaded.
 */
export async function downloadCifar10(
  dir: string = CIFAR10_DIR,
  opts: DownloadOptions = {},
): Promise<{ dir: string; downloaded: boolean }> {
  const { url = CIFAR10_URL, md5 = CIFAR10_MD5, onProgress } = opts;
  const binDir = join(dir, CIFAR10_BIN);
  if (ALL_FILES.every((f) => fileSize(join(binDir, f)) === OFFICIAL_BYTES)) {
    return { dir: binDir, downloaded: false };
  }

  const { bytes, digest: got } = await downloadWithHash(url, "md5", onProgress);
  if (got !== md5) {
    throw new Error(
      `md5 of ${url} is ${got}, expected ${md5}: a broken or altered download (${bytes.length} bytes). ` +
        "Nothing was written; try again.",
    );
  }

  const members = new Map<string, Uint8Array>();
  for (const item of parseTar(gunzipSync(bytes))) {
    if (item.type === "file" && item.data && item.name.startsWith(`${CIFAR10_BIN}/`)) {
      members.set(basename(item.name), item.data);
    }
  }
  for (const f of ALL_FILES) {
    const data = members.get(f);
    if (!data || data.length === 0 || data.length % RECORD !== 0) {
      throw new Error(`${url}: the archive has no valid ${CIFAR10_BIN}/${f}; nothing was written`);
    }
  }
  await Deno.mkdir(binDir, { recursive: true });
  for (const f of ALL_FILES) await writeFileAtomic(join(binDir, f), members.get(f)!);
  return { dir: binDir, downloaded: true };
}
