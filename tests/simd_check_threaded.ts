// Run by tests/simd_optimizer_test.ts as a subprocess: the SIMD optimizer kernels on THREADED wasm (the
// shared-memory binary), against the JavaScript loops. Prints one JSON line {threads, adam, ema, sumsq}.
import * as tf from "@tensorflow/tfjs";
import { initBackend } from "../lib/backend.ts";
import { adamUpdate, emaOf, fusedAdamUpdate, sumOfSquares, sumOfSquaresOf } from "../lib/wasm_kernels.ts";
import { wasmThreads } from "../lib/wasm_threads.ts";
import { RADAM_STEP, randn } from "./backend_helpers.ts";

await initBackend({ backend: "wasm", quiet: true });
const n = 1027;
const [p, m, v, g] = [1, 2, 3, 4].map((s) => randn([n], s));
const vPos = tf.abs(v);
const attrs = RADAM_STEP;
const outs = fusedAdamUpdate(p, m, vPos, g, attrs);
const got = outs.map((t) => t.dataSync() as Float32Array);
const want = [new Float32Array(n), new Float32Array(n), new Float32Array(n)];
const host = [p, m, vPos, g].map((t) => t.dataSync() as Float32Array);
adamUpdate(host[0], host[1], host[2], host[3], attrs, want[0], want[1], want[2]);
const adam = got.every((a, i) => a.every((x, j) => Object.is(x, want[i][j])));
const e = emaOf(p, g, 0.999).dataSync();
const eWant = tf.add(tf.mul(p, 0.999), tf.mul(g, 1 - 0.999)).dataSync();
const ema = e.every((x, j) => Object.is(x, eWant[j]));
const s = sumOfSquaresOf([p, g]).dataSync()[0];
const sumsq = s === Math.fround(sumOfSquares([host[0], host[3]]));
console.log(JSON.stringify({ threads: wasmThreads(), adam, ema, sumsq }));
