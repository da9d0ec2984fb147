// The "MNIST-FD" proxy: a small classifier of 28×28 grayscale digits (MNIST, or Fashion-MNIST), trained once
// by `deno task data:mnist-classifier` and cached; the Fréchet distance of its penultimate features is
// computed exactly as FID is (lib/metrics/fid.ts). It lets a CPU judge samples of 28×28 models in seconds.
// It is NOT comparable to FID (other network, other features, other data), and every output says so.
//
// Network (inputs in [0, 255], like the FID Inception's): x/127.5 − 1 → conv 3×3 16 → ReLU → 2×2 average pool
// → conv 3×3 32 → ReLU → 2×2 average pool → flatten (7·7·32) → dense 128 → ReLU (the features) → dense 10.
// Trained with Adam (lr 1e-3) on softmax cross-entropy; the data order is the kit's seeded DataLoader's.
import * as tf from "@tensorflow/tfjs";
import { readSafetensors, type TensorEntry, writeSafetensors } from "../io/checkpoint.ts";
import { DATA_ROOT, DataLoader, type Dataset } from "../data/dataset.ts";
import { loadDataset } from "../data/index.ts";
import { Conv2d, Dense, type InitMode } from "../nn/layers.ts";
import { disposeParams, get, initParams, type Params, Scope, trainableParams } from "../nn/params.ts";
import { DEFAULT_OPTIMIZER, Optimizer } from "../train/optim.ts";

export const CLASSIFIER_DATASETS = ["mnist", "fashion-mnist"] as const;
export type ClassifierDataset = typeof CLASSIFIER_DATASETS[number];

/** The distance's name for each dataset; printed with "not comparable to FID" wherever it appears. */
export const PROXY_METRIC: Record<ClassifierDataset, string> = {
  mnist: "MNIST-FD",
  "fashion-mnist": "Fashion-MNIST-FD",
};
export const PROXY_CAVEAT = "a small-classifier proxy, NOT comparable to FID";

export const CLASSIFIER_FEATURES = 128;
export const CLASSIFIER_CLASSES = 10;
const SIZE = 28;
const KAIMING: InitMode = { mode: "kaiming_uniform", weight: 1, bias: 0 };

/** Where `deno task data:mnist-classifier` caches the trained weights. */
export function classifierPath(dataset: ClassifierDataset, dir = `${DATA_ROOT}/classifiers`): string {
  return `${dir}/${dataset}-classifier.safetensors`;
}

export class MnistClassifier {
  readonly specs;
  private readonly conv1: Conv2d;
  private readonly conv2: Conv2d;
  private readonly pool: Conv2d;
  private readonly hidden: Dense;
  private readonly out: Dense;

  constructor() {
    const scope = Scope.root();
    this.conv1 = new Conv2d(scope.child("conv1"), 1, 16, [SIZE, SIZE], { kernel: 3, init: KAIMING });
    // Average-pools 28 → 14, then convolves (the kit's Conv2d resamples before its convolution).
    this.conv2 = new Conv2d(scope.child("conv2"), 16, 32, [SIZE, SIZE], {
      kernel: 3,
      init: KAIMING,
      down: true,
    });
    this.pool = new Conv2d(scope.child("pool"), 32, 32, [SIZE / 2, SIZE / 2], {
      kernel: 0,
      init: KAIMING,
      down: true,
    });
    this.hidden = new Dense(scope.child("hidden"), 7 * 7 * 32, CLASSIFIER_FEATURES, KAIMING);
    this.out = new Dense(scope.child("out"), CLASSIFIER_FEATURES, CLASSIFIER_CLASSES, KAIMING);
    this.specs = scope.specs;
  }

  /** Features [N, 128] and logits [N, 10] of images [N, 28, 28, 1] with values in [0, 255]. */
  apply(p: Params, images: tf.Tensor4D): { features: tf.Tensor2D; logits: tf.Tensor2D } {
    return tf.tidy(() => this.forward(p, tf.sub(tf.div(images.toFloat(), 127.5), 1)));
  }

  /** The same for images in [−1, 1] (the kit's datasets and samples), as training sees them. */
  forward(p: Params, x: tf.Tensor4D): { features: tf.Tensor2D; logits: tf.Tensor2D } {
    const [, h, w, c] = x.shape;
    if (h !== SIZE || w !== SIZE || c !== 1) {
      throw new Error(
        `the MNIST classifier takes 28×28 grayscale images [N, 28, 28, 1], got [${x.shape}]: ` +
          `MNIST-FD is for MNIST-sized samples; use FID (--features inception) for other images`,
      );
    }
    return tf.tidy(() => {
      x = tf.relu(this.conv1.apply(p, x));
      x = tf.relu(this.conv2.apply(p, x));
      x = this.pool.apply(p, x);
      const features = tf.relu(this.hidden.apply(p, x.reshape([x.shape[0], -1]) as tf.Tensor2D));
      return { features, logits: this.out.apply(p, features) };
    });
  }
}

export interface TrainClassifierOptions {
  epochs?: number;
  batch?: number;
  lr?: number;
  seed?: number;
  onProgress?: (step: number, steps: number, loss: number) => void;
}

/** Train a fresh classifier on a 28×28 dataset (images in [−1, 1], 10 classes). Deterministic given the seed. */
export async function trainClassifier(
  train: Dataset,
  opts: TrainClassifierOptions = {},
): Promise<{ params: Map<string, tf.Tensor>; steps: number; loss: number }> {
  const { epochs = 2, batch = 128, lr = 1e-3, seed = 0 } = opts;
  if (train.sampleShape.join() !== `${SIZE},${SIZE},1` || train.labelDim !== CLASSIFIER_CLASSES) {
    throw new Error(`${train.name}: the classifier trains on 28×28×1 images with 10 classes`);
  }
  const net = new MnistClassifier();
  const params = initParams(net.specs, seed);
  const vars = trainableParams(params);
  const optimizer = new Optimizer({ ...DEFAULT_OPTIMIZER, kind: "adam", lr }, vars);
  const loader = new DataLoader(train, batch, { seed, labels: true });
  const steps = Math.ceil((epochs * train.size) / batch);
  let loss = NaN;
  for (let step = 1; step <= steps; step++) {
    const { x, labels } = loader.next();
    const { value, grads } = tf.variableGrads(() => {
      return tf.losses.softmaxCrossEntropy(
        labels!,
        net.forward(params, x as tf.Tensor4D).logits,
      ) as tf.Scalar;
    }, [...vars.values()]);
    const byName = new Map([...vars].map(([name, v]) => [name, grads[v.name]]));
    optimizer.update(byName);
    loss = (await value.data())[0];
    tf.dispose([x, labels!, value, ...Object.values(grads)]);
    opts.onProgress?.(step, steps, loss);
  }
  optimizer.dispose();
  return { params, steps, loss };
}

/** Test accuracy and mean cross-entropy of classifier weights on a labelled dataset. */
export async function evaluateClassifier(
  params: Params,
  data: Dataset,
  batch = 500,
): Promise<{ accuracy: number; loss: number }> {
  const net = new MnistClassifier();
  let correct = 0;
  let lossSum = 0;
  for (let i = 0; i < data.size; i += batch) {
    const idx = Array.from({ length: Math.min(batch, data.size - i) }, (_, k) => i + k);
    const { x, labels } = data.get(idx);
    const [hit, ce] = tf.tidy(() => {
      const { logits } = net.forward(params, tf.tensor4d(x, [idx.length, SIZE, SIZE, 1]));
      const y = tf.tensor1d(labels!, "int32");
      const hit = tf.equal(tf.argMax(logits, 1), y).sum();
      const ce = tf.losses.softmaxCrossEntropy(
        tf.oneHot(y, CLASSIFIER_CLASSES),
        logits,
        undefined,
        undefined,
        tf.Reduction.SUM,
      );
      return [hit, ce];
    });
    correct += (await hit.data())[0];
    lossSum += (await ce.data())[0];
    tf.dispose([hit, ce]);
  }
  return { accuracy: correct / data.size, loss: lossSum / data.size };
}

/** What a saved classifier says about itself (safetensors metadata). */
export interface ClassifierInfo {
  dataset: ClassifierDataset;
  testAccuracy: number;
  epochs: number;
  /** Training images used (60,000 for the full MNIST training set). */
  trainImages: number;
  seed: number;
}

/** Save trained weights with what they are (atomically, safetensors). */
export async function saveClassifier(path: string, params: Params, info: ClassifierInfo): Promise<void> {
  const tensors = new Map<string, TensorEntry>();
  for (const s of new MnistClassifier().specs) {
    tensors.set(s.name, {
      dtype: "F32",
      shape: s.shape,
      data: (await get(params, s.name, s.shape).data()) as Float32Array, // async: webgpu cannot read synchronously
    });
  }
  await Deno.mkdir(path.slice(0, path.lastIndexOf("/")) || ".", { recursive: true });
  await writeSafetensors(path, tensors, {
    "ict_kit.kind": "mnist-classifier",
    dataset: info.dataset,
    test_accuracy: String(info.testAccuracy),
    epochs: String(info.epochs),
    train_images: String(info.trainImages),
    seed: String(info.seed),
  });
}

/** A trained classifier as a feature network: `features` of [N, 28, 28, 1] images in [0, 255]. */
export interface LoadedClassifier {
  net: MnistClassifier;
  params: Params;
  info: ClassifierInfo;
  /** sha256 of the weights' bytes (safetensors metadata), which names the weights in every record. */
  sha256: string;
}

/** Load cached weights; a missing file says which task makes it, a wrong one is refused. */
export async function loadClassifier(
  dataset: ClassifierDataset,
  path = classifierPath(dataset),
): Promise<LoadedClassifier> {
  if (!(await Deno.stat(path).catch(() => null))) {
    throw new Error(
      `no ${dataset} classifier at ${path}: train it once (about 3 minutes on 2 CPU cores) with ` +
        `\`deno task data:mnist-classifier --data ${dataset}\``,
    );
  }
  const { tensors, metadata } = await readSafetensors(path);
  if (metadata["ict_kit.kind"] !== "mnist-classifier" || metadata.dataset !== dataset) {
    throw new Error(
      `${path} is not a ${dataset} classifier (kind ${
        metadata["ict_kit.kind"]
      }, dataset ${metadata.dataset}): ` +
        `delete it and run \`deno task data:mnist-classifier --data ${dataset}\``,
    );
  }
  const net = new MnistClassifier();
  const params = new Map<string, tf.Tensor>();
  for (const s of net.specs) {
    const t = tensors.get(s.name);
    if (!t || t.shape.join() !== s.shape.join()) {
      disposeParams(params);
      throw new Error(
        `${path}: tensor ${s.name} is missing or not [${s.shape}]: retrain with \`deno task data:mnist-classifier --data ${dataset}\``,
      );
    }
    params.set(s.name, tf.tensor(t.data as Float32Array, s.shape));
  }
  return {
    net,
    params,
    info: {
      dataset,
      testAccuracy: Number(metadata.test_accuracy),
      epochs: Number(metadata.epochs),
      trainImages: Number(metadata.train_images),
      seed: Number(metadata.seed),
    },
    sha256: metadata["ict_kit.data_sha256"],
  };
}

/** The settings `deno task data:mnist-classifier` trains with (≈ 99% test accuracy on MNIST). */
export const CLASSIFIER_TRAINING = { epochs: 2, batch: 128, lr: 1e-3, seed: 0 } as const;

/** The first n samples of a dataset (quick classifiers for tests; the task's default uses all of them). */
export function firstSamples(data: Dataset, n: number): Dataset {
  if (!(Number.isInteger(n) && n >= 1)) throw new Error(`need a whole number of samples >= 1, got ${n}`);
  if (n >= data.size) return data;
  return {
    name: `${data.name}[:${n}]`,
    sampleShape: data.sampleShape,
    size: n,
    labelDim: data.labelDim,
    get: (indices) => data.get(indices),
  };
}

export interface EnsureClassifierOptions {
  /** Cache file (default: classifierPath(dataset)). */
  path?: string;
  /** Folder of the dataset's files (default: the dataset's own). */
  dataDir?: string;
  /** Train again even when the file is there. */
  force?: boolean;
  epochs?: number;
  /** Train on the first `limit` training images only (quick runs; recorded in the file). */
  limit?: number;
  onProgress?: TrainClassifierOptions["onProgress"];
}

/**
 * The cached classifier of a dataset; trains it (CLASSIFIER_TRAINING unless told otherwise) and caches it
 * first when there is none. The task and the notebooks both come here, so there is one classifier per file.
 */
export async function ensureClassifier(
  dataset: ClassifierDataset,
  opts: EnsureClassifierOptions = {},
): Promise<{ path: string; trained: boolean; info: ClassifierInfo }> {
  const path = opts.path ?? classifierPath(dataset);
  if (!opts.force && (await Deno.stat(path).catch(() => null))) {
    const c = await loadClassifier(dataset, path);
    disposeParams(c.params);
    return { path, trained: false, info: c.info };
  }
  const all = await loadDataset({ dataset, dir: opts.dataDir, flip: false }, "train");
  const train = opts.limit ? firstSamples(all, opts.limit) : all;
  const test = await loadDataset({ dataset, dir: opts.dataDir, flip: false }, "test");
  const epochs = opts.epochs ?? CLASSIFIER_TRAINING.epochs;
  const { params } = await trainClassifier(train, {
    ...CLASSIFIER_TRAINING,
    epochs,
    onProgress: opts.onProgress,
  });
  const { accuracy } = await evaluateClassifier(params, test);
  const info: ClassifierInfo = {
    dataset,
    testAccuracy: accuracy,
    epochs,
    trainImages: train.size,
    seed: CLASSIFIER_TRAINING.seed,
  };
  await saveClassifier(path, params, info);
  disposeParams(params);
  return { path, trained: true, info };
}
