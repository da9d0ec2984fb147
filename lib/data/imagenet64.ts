// Downsampled ImageNet 64×64 (Chrabaszcz et al. 2017), the official npz batches: train_data_batch_1..10.npz
// (1,281,167 images) and val_data.npz (50,000; the "test" split here). Each holds `data` uint8 [N, 12288],
// a row being the R, G and B planes of a 64×64 image (rows top to bottom), `labels` 1..1000 (1-based; made
// 0-based here), and in train files the `mean` image (unused). The train set is 15.7 GB of uint8, so on
// first use the npz files are converted once into a raw cache next to them (`train_64x64.u8`: images
// back to back as stored, `train_labels.i32`: 0-based int32 little-endian, `train_cache.json`: what it was
// made from, written last), and `get` reads images from the cache by seeking.
import { basename, join } from "node:path";
import { fileSize, writeAll, writeAtomic, writeFileAtomic } from "../io/fs.ts";
import { checkIndices, DATA_ROOT, type Dataset, planarToNhwc } from "./dataset.ts";
import { readNpz } from "../io/npz.ts";

export const IMAGENET64_DIR = join(DATA_ROOT, "imagenet64");
export const IMAGENET64_SITE = "https://image-net.org/download-images.php";
export const IMAGENET64_FILES = {
  train: Array.from({ length: 10 }, (_, i) => `train_data_batch_${i + 1}.npz`),
  test: ["val_data.npz"],
};
const SHAPE = [64, 64, 3] as const;
const IMAGE_BYTES = 64 * 64 * 3;

/** What the cache was made from; the cache is reused while the sources still present keep their sizes. */
interface CacheMeta {
  format: 1;
  images: number;
  sources: { file: string; bytes: number }[];
}

function cachePaths(dir: string, split: "train" | "test") {
  const stem = split === "train" ? "train" : "val";
  return {
    pixels: join(dir, `${stem}_64x64.u8`),
    labels: join(dir, `${stem}_labels.i32`),
    meta: join(dir, `${stem}_cache.json`),
  };
}

/** Where to get the files, for errors and help. */
export function imagenet64Help(dir: string): string {
  return `ImageNet 64×64 cannot be downloaded automatically (image-net.org needs a login). Sign in at ` +
    `${IMAGENET64_SITE}, download "Downsampled ImageNet 64x64" in npz format (the two train parts and val), ` +
    `and unzip them so that ${dir} holds train_data_batch_1.npz … train_data_batch_10.npz and val_data.npz ` +
    `(or pass --data.dir DIR). On first use they are converted once into a raw cache in the same folder ` +
    `(15.7 GB for train, 0.6 GB for val).`;
}

/** ImageNet 64×64 from `dir` (labelDim 1000; "test" is the official validation set). */
export async function loadImagenet64(
  dir: string,
  split: "train" | "test",
  opts: { log?: (message: string) => void } = {},
): Promise<Dataset> {
  if (split !== "train" && split !== "test") {
    throw new Error(`ImageNet 64 split must be train or test, got ${split}`);
  }
  const log = opts.log ?? console.log;
  const sources = IMAGENET64_FILES[split].map((f) => join(dir, f));
  const cache = cachePaths(dir, split);
  let meta = readCacheMeta(cache, sources, log);
  if (!meta) {
    const missing = sources.filter((s) => fileSize(s) < 0);
    if (missing.length > 0) {
      throw new Error(
        `ImageNet 64×64 (${split}) not found: missing ${missing.join(", ")}. ${imagenet64Help(dir)}`,
      );
    }
    meta = await buildCache(sources, cache, log);
  }
  const labels = new Int32Array(Deno.readFileSync(cache.labels).buffer);
  return new CachedImages(`imagenet64-${split === "train" ? "train" : "val"}`, cache.pixels, labels);
}

/** The cache's description if the cache is complete and not stale, else undefined. */
function readCacheMeta(
  cache: ReturnType<typeof cachePaths>,
  sources: string[],
  log: (message: string) => void,
): CacheMeta | undefined {
  if (fileSize(cache.meta) < 0) return undefined;
  let meta: CacheMeta;
  try {
    meta = JSON.parse(Deno.readTextFileSync(cache.meta));
  } catch {
    log(`imagenet64: ${cache.meta} is unreadable; rebuilding the cache`);
    return undefined;
  }
  const complete = meta?.format === 1 && Array.isArray(meta.sources) &&
    fileSize(cache.pixels) === meta.images * IMAGE_BYTES && fileSize(cache.labels) === meta.images * 4 &&
    meta.sources.map((s) => s.file).join() === sources.map((s) => basename(s)).join();
  // A source deleted after caching is fine (only the cache is read); one that changed size is not.
  if (!complete || !meta.sources.every((s, i) => [-1, s.bytes].includes(fileSize(sources[i])))) {
    log(`imagenet64: the cache ${cache.pixels} is incomplete or older than its npz files; rebuilding it`);
    return undefined;
  }
  return meta;
}

/** Convert the npz files into the raw cache (each file atomically; the description last). */
async function buildCache(
  sources: string[],
  cache: ReturnType<typeof cachePaths>,
  log: (message: string) => void,
): Promise<CacheMeta> {
  await Deno.remove(cache.meta).catch(() => {});
  const labelParts: Int32Array[] = [];
  const meta: CacheMeta = { format: 1, images: 0, sources: [] };
  await writeAtomic(cache.pixels, async (file) => {
    for (const [k, src] of sources.entries()) {
      log(`imagenet64: converting ${basename(src)} (${k + 1}/${sources.length}) into ${cache.pixels}`);
      const { data, labels } = readImagenetNpz(src);
      await writeAll(file, data);
      labelParts.push(labels);
      meta.images += labels.length;
      meta.sources.push({ file: basename(src), bytes: fileSize(src) });
    }
  });
  const labels = new Int32Array(meta.images);
  let at = 0;
  for (const part of labelParts) {
    labels.set(part, at);
    at += part.length;
  }
  await writeFileAtomic(cache.labels, new Uint8Array(labels.buffer));
  await writeFileAtomic(cache.meta, new TextEncoder().encode(JSON.stringify(meta, null, 2)));
  return meta;
}

/** One official npz batch, checked: the image bytes [N·12288] and 0-based labels. */
export function readImagenetNpz(path: string): { data: Uint8Array; labels: Int32Array } {
  const arrays = readNpz(path);
  const data = arrays.get("data");
  const labels = arrays.get("labels");
  if (!data || !labels) {
    throw new Error(
      `${path}: expected arrays 'data' and 'labels', found ${[...arrays.keys()].join(", ") || "none"}`,
    );
  }
  if (data.dtype !== "uint8" || data.shape.length !== 2 || data.shape[1] !== IMAGE_BYTES) {
    throw new Error(
      `${path}: 'data' should be uint8 [N, ${IMAGE_BYTES}] (64×64 R, G, B planes), got ` +
        `${data.dtype} [${data.shape}]`,
    );
  }
  const n = data.shape[0];
  if (!["uint8", "int32", "int64"].includes(labels.dtype) || labels.shape.join() !== `${n}`) {
    throw new Error(`${path}: 'labels' should be integers [${n}], got ${labels.dtype} [${labels.shape}]`);
  }
  const zeroBased = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const v = Number(labels.data[i]);
    if (!(v >= 1 && v <= 1000)) throw new Error(`${path}: label ${v} of image ${i} is outside 1..1000`);
    zeroBased[i] = v - 1;
  }
  return { data: data.data as Uint8Array, labels: zeroBased };
}

/** Images read from the raw cache by seeking; labels in memory. */
class CachedImages implements Dataset {
  readonly sampleShape = SHAPE;
  readonly labelDim = 1000;
  readonly size: number;

  constructor(readonly name: string, private readonly path: string, private readonly labels: Int32Array) {
    this.size = labels.length;
  }

  get(indices: ArrayLike<number>): { x: Float32Array; labels: Int32Array } {
    checkIndices(indices, this.size, this.name);
    const x = new Float32Array(indices.length * IMAGE_BYTES);
    const labels = new Int32Array(indices.length);
    const buf = new Uint8Array(IMAGE_BYTES);
    const file = Deno.openSync(this.path, { read: true });
    try {
      for (let k = 0; k < indices.length; k++) {
        file.seekSync(indices[k] * IMAGE_BYTES, Deno.SeekMode.Start);
        for (let got = 0; got < IMAGE_BYTES;) {
          const n = file.readSync(buf.subarray(got));
          if (n === null) {
            throw new Error(`${this.path}: ends early (image ${indices[k]}); delete it to rebuild`);
          }
          got += n;
        }
        planarToNhwc(buf, 0, x, k * IMAGE_BYTES, SHAPE);
        labels[k] = this.labels[indices[k]];
      }
    } finally {
      file.close();
    }
    return { x, labels };
  }
}
