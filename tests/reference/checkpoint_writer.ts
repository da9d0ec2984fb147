// Used by train_test: writes the same checkpoint path over and over (version 1, 2, …, every value of the
// 16 MB tensor equal to the version) and prints "wrote N" after each, so the test can kill it mid-write.
import * as tf from "@tensorflow/tfjs";
import { saveCheckpoint } from "../../lib/io/checkpoint.ts";

await tf.setBackend("cpu");
const path = Deno.args[0];
for (let version = 1;; version++) {
  const w = tf.fill([4_000_000], version);
  await saveCheckpoint(path, { config: {}, groups: { params: new Map([["w", w]]) }, state: { version } });
  w.dispose();
  console.log(`wrote ${version}`);
}
