// deno task data:mnist-classifier [--data mnist|fashion-mnist] [--out FILE] [--data-dir DIR] [--force]
//   [--epochs E] [--limit N]
// Trains, once, the small classifier whose features give the MNIST-FD (lib/metrics/mnist_classifier.ts), checks
// its test accuracy and caches it as safetensors (default data/classifiers/<dataset>-classifier.safetensors).
// Does nothing if the file is there (--force trains again). `deno task fid --features mnist` then uses it.
// MNIST-FD is a CPU-sized proxy for 28×28 samples, NOT comparable to FID.
import { initBackend } from "../lib/backend.ts";
import { BACKEND_FLAG, parseTaskFlags, runTask } from "../lib/cli.ts";
import { formatDuration, Logger } from "../lib/log.ts";
import {
  CLASSIFIER_DATASETS,
  CLASSIFIER_TRAINING,
  type ClassifierDataset,
  ensureClassifier,
} from "../lib/metrics/mnist_classifier.ts";

await runTask(async () => {
  const args = parseTaskFlags({
    usage: "deno task data:mnist-classifier [--data mnist|fashion-mnist] [--out FILE] [--data-dir DIR] " +
      "[--force] [--epochs E] [--limit N]",
    flags: [
      { name: "data", value: "mnist|fashion-mnist", default: "mnist", help: "the dataset" },
      { name: "out", value: "FILE", help: "where to cache it (default data/classifiers/…)" },
      { name: "data-dir", value: "DIR", help: "where the dataset lives" },
      { name: "force", help: "train again even if the file is there" },
      { name: "epochs", value: "E", default: String(CLASSIFIER_TRAINING.epochs), help: "training epochs" },
      { name: "limit", value: "N", help: "train on the first N images only" },
      BACKEND_FLAG,
    ],
  });
  const values = { ...args.values, force: args.flag("force") } as Record<string, string> & { force: boolean };
  const dataset = values.data as ClassifierDataset;
  if (!CLASSIFIER_DATASETS.includes(dataset)) {
    throw new Error(`--data takes ${CLASSIFIER_DATASETS.join(" or ")}, got "${values.data}"`);
  }
  const epochs = Number(values.epochs);
  const limit = values.limit === undefined ? undefined : Number(values.limit);
  if (!(Number.isInteger(epochs) && epochs >= 1)) throw new Error(`--epochs takes an integer >= 1`);
  if (limit !== undefined && !(Number.isInteger(limit) && limit >= 1)) {
    throw new Error(`--limit takes an integer >= 1`);
  }
  await initBackend();
  const log = new Logger();
  const started = performance.now();
  const r = await ensureClassifier(dataset, {
    path: values.out,
    dataDir: values["data-dir"],
    force: values.force,
    epochs,
    limit,
    onProgress: (step, steps, loss) => {
      const rate = (step * CLASSIFIER_TRAINING.batch) / ((performance.now() - started) / 1000);
      log.progress(
        step,
        steps,
        rate / CLASSIFIER_TRAINING.batch,
        `loss ${loss.toFixed(4)}  ${rate.toFixed(0)} images/s`,
      );
    },
  });
  log.clearBar();
  const { info } = r;
  console.log(
    `${
      r.trained ? `trained in ${formatDuration((performance.now() - started) / 1000)}` : "already there"
    }: ` +
      `${r.path}\n  ${dataset} classifier, ${info.epochs} epoch(s) on ${info.trainImages} images, ` +
      `test accuracy ${(100 * info.testAccuracy).toFixed(2)}%` +
      `${r.trained ? "" : " (--force trains it again)"}`,
  );
});
