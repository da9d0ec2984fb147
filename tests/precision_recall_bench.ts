// deno bench --allow-all tests/precision_recall_bench.ts: improved precision and recall
// (lib/metrics/precision_recall.ts) on 2048-d features, as `deno task fid --pr` runs it (the backend that
// initBackend picks: wasm on a CPU-only machine). A full run with n real and m generated features computes
// n² + m² + nm distances: 3·10⁸ at n = m = 10k, 7.5·10⁹ at 50k; the per-distance cost of the full runs below
// times that is the estimate. Features: Inception-like (non-negative, clustered; see `features` below).
// PR_BENCH_N=10000 deno bench --allow-all tests/precision_recall_bench.ts runs the full Gram-path run at
// n = m = 10,000 once (about 4 min here) instead of 1000.
import * as tf from "@tensorflow/tfjs";
import { initBackend, runsOnCpu } from "../lib/backend.ts";
import { squaredDistances } from "../lib/linalg.ts";
import { precisionRecall, tfGramKernel } from "../lib/metrics/precision_recall.ts";
import { wasmThreads } from "../lib/wasm_threads.ts";

const backend = await initBackend({ quiet: true });
const on = tf.getBackend() === "wasm" ? `wasm, ${wasmThreads()} thread(s)` : tf.getBackend();
const DIM = 2048;

let s = 1;
const next = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
const centres = Float32Array.from({ length: 10 * DIM }, () => next() - 0.3);

/** n rows like pool_3 features: ReLU of one of 10 cluster centres plus noise (deterministic). */
function features(n: number): Float32Array {
  const out = new Float32Array(n * DIM);
  for (let i = 0; i < n; i++) {
    const c = Math.floor(next() * 10) * DIM;
    for (let k = 0; k < DIM; k++) out[i * DIM + k] = Math.max(0, centres[c + k] + 0.6 * (next() - 0.5));
  }
  return out;
}

const gram = tfGramKernel(DIM, !runsOnCpu(backend));
const N = Number(Deno.env.get("PR_BENCH_N") ?? 1000);
if (!Number.isInteger(N) || N < 300) throw new Error(`PR_BENCH_N must be an integer ≥ 300, got ${N}`);
const real = features(N), fake = features(N);

// The host kernel: 64 × 256 distances of 2048 terms per iteration; the Gram block: 256 × 1000.
const a = Float64Array.from(real.subarray(0, 64 * DIM)), b = Float64Array.from(fake.subarray(0, 256 * DIM));
const out = new Float64Array(64 * 256);
Deno.bench(
  "host squaredDistances, 64 × 256 pairs (float64, 33.6 M terms)",
  { group: `distance blocks, 2048-d, on ${on}`, n: 10, warmup: 2 },
  () => squaredDistances(a, 64, b, 256, DIM, out, 256),
);
Deno.bench(
  "Gram tf.matMul float32, 256 × 1000 pairs (524 M multiply-adds)",
  { group: `distance blocks, 2048-d, on ${on}`, n: 10, warmup: 2 },
  () => void gram.gram(real.subarray(0, 256 * DIM), 256, fake.subarray(0, 1000 * DIM), 1000, DIM),
);

let reported = false;
Deno.bench(
  `precisionRecall, Gram path, n = m = ${N} (${3 * N * N / 1e6} M distances)`,
  { group: `full runs, 2048-d, on ${on}`, n: N > 1000 ? 1 : 3, warmup: N > 1000 ? 0 : 1 },
  () => {
    const r = precisionRecall(real, N, fake, N, DIM, { gram });
    if (!reported) {
      reported = true;
      console.log(
        `n = m = ${N}: precision ${r.precision}, recall ${r.recall}, ${r.rechecked} of ${r.pairs} ` +
          `distances rechecked on the host (${(100 * r.rechecked / r.pairs).toFixed(3)}%)`,
      );
    }
  },
);
Deno.bench(
  "precisionRecall, host path, n = m = 300 (270 k distances)",
  { group: `full runs, 2048-d, on ${on}`, n: 2, warmup: 0 },
  () => void precisionRecall(real.subarray(0, 300 * DIM), 300, fake.subarray(0, 300 * DIM), 300, DIM),
);
