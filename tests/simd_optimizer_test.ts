// The SIMD optimizer kernels (lib/simd/optimizer.wat) on wasm against the JavaScript loops and TF.js ops they
// replace (bit for bit), on single-threaded wasm here and on threaded wasm in a subprocess; every generated
// lib/simd/*.wasm.ts against what `deno task build:simd` makes of its .wat now; and every SIMD kernel on
// tensors above 2 GiB of the heap (a subprocess).
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import "@tensorflow/tfjs-backend-wasm";
import { compileWat, watSources } from "../lib/simd/build.ts";
import {
  adamUpdate,
  type AdamUpdateAttrs,
  emaOf,
  fastPaths,
  fusedAdamUpdate,
  registerWasmTrainingKernels,
  sumOfSquares,
  sumOfSquaresOf,
} from "../lib/wasm_kernels.ts";
import { randn } from "./backend_helpers.ts";

registerWasmTrainingKernels();
assert.ok(await tf.setBackend("wasm"));

// Sizes with and without a SIMD body and with every tail length.
const SIZES = [1, 3, 4, 5, 7, 8, 13, 1027];

const first = (a: Float32Array, b: Float32Array) => a.findIndex((x, i) => !Object.is(x, b[i]));

Deno.test("every lib/simd/*.wasm.ts is what deno task build:simd makes of its .wat", async () => {
  const sources = await watSources();
  assert.ok(sources.has("optimizer"));
  for (const [name, wat] of sources) {
    const committed = await Deno.readTextFile(new URL(`../lib/simd/${name}.wasm.ts`, import.meta.url));
    assert.equal(
      committed,
      await compileWat(name, wat),
      `lib/simd/${name}.wasm.ts is stale: deno task build:simd`,
    );
  }
});

Deno.test("SIMD Adam/RAdam = the JavaScript loop bit for bit (weight decay, adaptive, Adam's denominator)", () => {
  for (const n of SIZES) {
    for (let flags = 0; flags < 8; flags++) {
      const a: AdamUpdateAttrs = {
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weightDecay: flags & 1 ? 0.01 : 0,
        stepSize: 3e-4,
        adaptive: (flags & 2) !== 0,
        adam: (flags & 4) !== 0,
        sqrtBc2: 0.0447,
      };
      const [p, m, g] = [1, 2, 3].map((s) => randn([n], 10 * n + s));
      const v = tf.square(randn([n], 10 * n + 4));
      const host = [p, m, v, g].map((t) => t.dataSync() as Float32Array);
      const want = [0, 1, 2].map(() => new Float32Array(n));
      adamUpdate(host[0], host[1], host[2], host[3], a, want[0], want[1], want[2]);
      const outs = fusedAdamUpdate(p, m, v, g, a);
      outs.forEach((t, i) => {
        const at = first(t.dataSync() as Float32Array, want[i]);
        assert.equal(at, -1, `n ${n}, flags ${flags}, output ${i}: first difference at ${at}`);
      });
      tf.dispose([p, m, v, g, ...outs]);
    }
  }
});

Deno.test("SIMD EMA = tf.add(tf.mul(t, d), tf.mul(s, 1 − d)) bit for bit", () => {
  for (const n of SIZES) {
    for (const decay of [0.99993, 0.5, 0]) {
      const [t, s] = [randn([n], n), randn([n], n + 1)];
      const simd = emaOf(t, s, decay);
      fastPaths.simd = false;
      const ops = emaOf(t, s, decay);
      fastPaths.simd = true;
      const at = first(simd.dataSync() as Float32Array, ops.dataSync() as Float32Array);
      assert.equal(at, -1, `n ${n}, decay ${decay}: first difference at ${at}`);
      tf.dispose([t, s, simd, ops]);
    }
  }
});

Deno.test("SIMD Σx² = the float64 JavaScript sum (to float32)", () => {
  const xs = [...SIZES, 0, 100_003].map((n, i) => tf.mul(randn([n], 100 + i), i + 1));
  const want = sumOfSquares(xs.map((x) => x.dataSync() as Float32Array));
  const got = sumOfSquaresOf(xs);
  assert.equal(got.dataSync()[0], Math.fround(want));
  tf.dispose([...xs, got]);
});

Deno.test("threaded wasm (shared memory): the same kernels give the same bits", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", new URL("./simd_check_threaded.ts", import.meta.url).pathname],
    env: { ICT_WASM_THREADS: "2", NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  assert.equal(out.code, 0, text + new TextDecoder().decode(out.stderr));
  assert.deepEqual(JSON.parse(text.trim().split("\n").at(-1)!), {
    threads: 2,
    adam: true,
    ema: true,
    sumsq: true,
  });
});

Deno.test("every SIMD kernel on tensors above 2 GiB of the heap (offsets past i32's sign bit) = the paths without SIMD", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", new URL("./simd_check_high_heap.ts", import.meta.url).pathname],
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  assert.equal(out.code, 0, text + new TextDecoder().decode(out.stderr));
  assert.deepEqual(JSON.parse(text.trim().split("\n").at(-1)!), { high: true, bad: [] });
});
