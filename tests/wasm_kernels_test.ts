// The kit's own wasm kernels (lib/wasm_kernels.ts) against cpu's kernels, and their gradients against central
// finite differences on wasm. Small shapes: these check values, not speed (`deno task bench:step` times them).
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import "@tensorflow/tfjs-backend-wasm";
import { assertClose } from "../lib/testing.ts";
import { gradCheck, on, randn } from "./backend_helpers.ts";
import { firResampleSimd } from "../lib/simd/fir.ts";
import {
  conv2dFilterGradient,
  conv2dFilterGradientByConv,
  fastPaths,
  firResample,
  flipFilter,
  hasFusedFir,
  hasFusedGroupNorm,
  registerWasmTrainingKernels,
  splitFirst,
  sumOfSquaresOf,
} from "../lib/wasm_kernels.ts";
import { firDownsample, firUpsample, GroupNorm } from "../lib/nn/layers.ts";
import { Scope } from "../lib/nn/params.ts";

registerWasmTrainingKernels();

// TF.js's BatchMatMul gradient does not sum over broadcast batch dimensions (on every backend): the broadcast
// cases compare the product only.
const matmulCases: { a: number[]; b: number[]; ta: boolean; tb: boolean; broadcast?: true }[] = [
  { a: [2, 3, 5, 4], b: [2, 3, 4, 6], ta: false, tb: false }, // a batch of products
  { a: [3, 4, 5], b: [3, 6, 4], ta: true, tb: true },
  { a: [2, 1, 5, 4], b: [2, 1, 6, 4], ta: false, tb: true }, // attention's q·kᵀ
  { a: [6, 4], b: [4, 3], ta: false, tb: false }, // a dense layer: one GEMM
  { a: [2, 5, 4], b: [4, 3], ta: false, tb: false, broadcast: true }, // b without a batch
  { a: [1, 5, 4], b: [3, 2, 4], ta: false, tb: true, broadcast: true }, // a broadcast over b's batch
];

for (const c of matmulCases) {
  const label = `a [${c.a}]${c.ta ? "ᵀ" : ""} · b [${c.b}]${c.tb ? "ᵀ" : ""}`;
  Deno.test(`wasm BatchMatMul (small-product kernel, XNNPACK GEMM) = cpu${c.broadcast ? "" : ", with both gradients"}: ${label}`, async () => {
    const run = () => {
      const [a, b] = [randn(c.a, 1), randn(c.b, 2)];
      const f = (x: tf.Tensor, y: tf.Tensor) => tf.matMul(x, y, c.ta, c.tb);
      const y = f(a, b);
      if (c.broadcast) return [y];
      const r = randn(y.shape, 3);
      const [ga, gb] = tf.grads((x: tf.Tensor, w: tf.Tensor) => tf.sum(tf.mul(f(x, w), r)))([a, b]);
      return [y, ga, gb];
    };
    const cpu = await on("cpu", run);
    // These small products go to the small-product kernel (fastPaths.smallMatMul: SIMD on wasm, tests/simd_matmul_test.ts
    // also covers the JavaScript one); off, to the convolutions.
    for (const small of [true, false]) {
      fastPaths.smallMatMul = small;
      try {
        const wasm = await on("wasm", run);
        assert.equal(wasm.length, cpu.length);
        for (let i = 0; i < wasm.length; i++) await assertClose(wasm[i], cpu[i], { atol: 1e-5, rtol: 1e-5 });
      } finally {
        fastPaths.smallMatMul = true;
      }
    }
  });
}

Deno.test("wasm BatchMatMul gradient = finite differences (attention's shapes), small-product kernel and convolutions", async () => {
  for (const small of [true, false]) {
    fastPaths.smallMatMul = small;
    try {
      await gradCheck("q·kᵀ then ·v", (q, k, v) => tf.matMul(tf.matMul(q, k, false, true), v), [
        [2, 1, 6, 3],
        [2, 1, 6, 3],
        [2, 1, 6, 3],
      ], 11);
    } finally {
      fastPaths.smallMatMul = true;
    }
  }
});

// The network's own convolutions: 3×3 "same" stride 1 at batch 1 and 2 (the filter gradient's GEMM has
// n = OH·OW·B columns), and stride 2 "valid" (strided windows).
const convCases: {
  x: [number, number, number, number];
  k: number;
  co: number;
  s: 1 | 2;
  pad: "same" | "valid";
}[] = [
  { x: [1, 6, 5, 3], k: 3, co: 4, s: 1, pad: "same" },
  { x: [2, 5, 5, 2], k: 3, co: 3, s: 1, pad: "same" },
  { x: [2, 7, 6, 2], k: 3, co: 3, s: 2, pad: "valid" },
  { x: [1, 4, 4, 5], k: 1, co: 2, s: 1, pad: "same" },
  { x: [1, 6, 6, 2], k: 3, co: 2, s: 2, pad: "same" }, // TF's "same" at stride 2: 0 zeros above, 1 below
];
for (const c of convCases) {
  Deno.test(`wasm conv2d gradients = cpu's own kernels and finite differences: x [${c.x}], ${c.k}×${c.k}, stride ${c.s}, ${c.pad}`, async () => {
    const w = [c.k, c.k, c.x[3], c.co];
    const f = (x: tf.Tensor, f: tf.Tensor) => tf.conv2d(x as tf.Tensor4D, f as tf.Tensor4D, c.s, c.pad);
    const run = () => {
      const [x, fl] = [randn(c.x, 4), randn(w, 5)];
      const r = randn(f(x, fl).shape, 6);
      return tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(f(a, b), r)))([x, fl]);
    };
    const cpu = await on("cpu", run);
    // The input gradient's zeros as the convolution's padding (fastPaths.convPad) and as a padded copy.
    for (const convPad of [true, false]) {
      fastPaths.convPad = convPad;
      try {
        const wasm = await on("wasm", run);
        for (let i = 0; i < 2; i++) await assertClose(wasm[i], cpu[i], { atol: 1e-4, rtol: 1e-4 });
        await gradCheck("conv2d", f, [c.x, w], 21);
      } finally {
        fastPaths.convPad = true;
      }
    }
  });
}

// GroupNorm (+ SiLU): the fused kernel on wasm against the composite ops on cpu, with γ, β away from 1, 0.
for (
  const c of [
    { x: [2, 3, 4, 8], eps: 1e-6 }, // 2 groups of 4 channels
    { x: [1, 5, 3, 12], eps: 1e-5 }, // 3 groups
    { x: [3, 2, 2, 4], eps: 1e-6 }, // 1 group; 4 values per group and sample
    { x: [2, 2, 3, 8], eps: 1 }, // ε of the order of the variance: ε must be in the right place
  ]
) {
  for (const act of ["none", "silu"] as const) {
    Deno.test(`wasm fused GroupNorm${act === "silu" ? " + SiLU" : ""} = cpu's ops, with gradients: x [${c.x}]`, async () => {
      const scope = Scope.root();
      const layer = new GroupNorm(scope.child("n"), c.x[3], [c.x[1], c.x[2]], c.eps);
      const f = (x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor) =>
        layer.apply(new Map([[layer.weight, gamma], [layer.bias, beta]]), x as tf.Tensor4D, act);
      const shapes = [c.x, [c.x[3]], [c.x[3]]];
      const run = () => {
        const ins = shapes.map((s, i) =>
          tf.add(tf.mul(randn(s, 30 + i), i === 0 ? 2 : 0.5), i === 0 ? 0.7 : 0.2)
        );
        const y = f(ins[0], ins[1], ins[2]);
        const r = randn(y.shape, 40);
        return [
          y,
          ...tf.grads((a: tf.Tensor, b: tf.Tensor, d: tf.Tensor) => tf.sum(tf.mul(f(a, b, d), r)))(ins),
        ];
      };
      const cpu = await on("cpu", run);
      assert.ok(await tf.setBackend("wasm"));
      assert.ok(hasFusedGroupNorm(), "the fused kernel is registered on wasm");
      const wasm = await on("wasm", run);
      for (let i = 0; i < 4; i++) await assertClose(wasm[i], cpu[i], { atol: 2e-5, rtol: 2e-5 });
      await gradCheck(`GroupNorm ${act}`, f, shapes, 50);
    });
  }
}

// GroupNorm of x + shift ([B, 1, 1, C], the residual block's embedding), the shift inside the fused kernels.
for (const act of ["none", "silu"] as const) {
  Deno.test(`wasm fused GroupNorm${act === "silu" ? " + SiLU" : ""} of x + shift = cpu's ops, with gradients`, async () => {
    const x = [2, 3, 4, 8];
    const layer = new GroupNorm(Scope.root().child("n"), x[3], [x[1], x[2]], 1e-5);
    const f = (a: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, shift: tf.Tensor) =>
      layer.apply(
        new Map([[layer.weight, gamma], [layer.bias, beta]]),
        a as tf.Tensor4D,
        act,
        shift as tf.Tensor4D,
      );
    const shapes = [x, [x[3]], [x[3]], [x[0], 1, 1, x[3]]];
    const run = () => {
      const ins = shapes.map((s, i) =>
        tf.add(tf.mul(randn(s, 150 + i), i === 1 ? 0.5 : 1.5), i === 1 ? 1 : 0.3)
      );
      const y = f(ins[0], ins[1], ins[2], ins[3]);
      const r = randn(y.shape, 160);
      const grads = tf.grads((a: tf.Tensor, b: tf.Tensor, d: tf.Tensor, e: tf.Tensor) =>
        tf.sum(tf.mul(f(a, b, d, e), r))
      )(ins);
      return [y, ...grads];
    };
    const cpu = await on("cpu", run);
    const wasm = await on("wasm", run);
    fastPaths.groupNormShift = false; // a broadcast Add, then the kernels without the shift
    const added = await on("wasm", run);
    fastPaths.groupNormShift = true;
    assert.equal(wasm.length, 5);
    for (let i = 0; i < 5; i++) await assertClose(wasm[i], cpu[i], { atol: 2e-5, rtol: 2e-5 });
    for (let i = 0; i < 4; i++) await assertClose(wasm[i], added[i], { atol: 0, rtol: 0 }); // y, dx, dγ, dβ
    await assertClose(wasm[4], added[4], { atol: 1e-6, rtol: 1e-6 }); // dshift: sums in another order
    await gradCheck(`GroupNorm ${act} of x + shift`, f, shapes, 170);
  });
}

// FIR resampling: the direct kernels on wasm against the pad/slice/reshape ops on cpu, at NCSN++'s [1,3,3,1]
// and ADM's [1,1], odd sizes and the fused-down padding of 0 included. C a multiple of 4 runs the SIMD kernel
// (lib/simd/fir.wat), checked also against the JavaScript loop (fastPaths.simd off; that loop adds in float64
// and rounds each store, so equal to ~1 ulp); other C the loop itself.
for (
  const c of [
    { x: [2, 6, 4, 3], filter: [1, 3, 3, 1], dir: "down" as const },
    { x: [1, 7, 5, 2], filter: [1, 3, 3, 1], dir: "down" as const },
    { x: [2, 8, 6, 2], filter: [1, 3, 3, 1], dir: "down" as const, pad: 0 },
    { x: [2, 4, 6, 2], filter: [1, 1], dir: "down" as const },
    { x: [2, 3, 4, 3], filter: [1, 3, 3, 1], dir: "up" as const },
    { x: [1, 2, 3, 2], filter: [1, 1], dir: "up" as const },
    { x: [2, 6, 5, 4], filter: [1, 3, 3, 1], dir: "down" as const },
    { x: [1, 7, 9, 8], filter: [1, 3, 3, 1], dir: "down" as const },
    { x: [2, 8, 6, 12], filter: [1, 3, 3, 1], dir: "down" as const, pad: 0 },
    { x: [3, 4, 6, 4], filter: [1, 1], dir: "down" as const },
    { x: [2, 3, 5, 8], filter: [1, 3, 3, 1], dir: "up" as const },
    { x: [1, 2, 3, 4], filter: [1, 1], dir: "up" as const },
  ]
) {
  Deno.test(`wasm FIR ${c.dir} ${c.filter} = cpu's ops, with gradient: x [${c.x}]${c.pad === 0 ? ", pad 0" : ""}`, async () => {
    const f = (x: tf.Tensor) =>
      c.dir === "down"
        ? firDownsample(x as tf.Tensor4D, c.filter, c.pad)
        : firUpsample(x as tf.Tensor4D, c.filter);
    const run = () => {
      const x = randn(c.x, 60);
      const y = f(x);
      const r = randn(y.shape, 61);
      return [y, tf.grad((a: tf.Tensor) => tf.sum(tf.mul(f(a), r)))(x)];
    };
    const cpu = await on("cpu", run);
    assert.ok(await tf.setBackend("wasm"));
    assert.ok(hasFusedFir(), "the FIR kernels are registered on wasm");
    const wasm = await on("wasm", run);
    fastPaths.simd = false;
    const loop = await on("wasm", run).finally(() => fastPaths.simd = true);
    for (let i = 0; i < 2; i++) {
      await assertClose(wasm[i], cpu[i], { atol: 1e-5, rtol: 1e-5 });
      await assertClose(wasm[i], loop[i], { atol: 1e-6, rtol: 1e-6 });
    }
    await gradCheck(`FIR ${c.dir}`, f, [c.x], 70);
  });
}

Deno.test("the SIMD FIR kernel runs where C is a multiple of 4 (= the JavaScript loop to 1e-6), not elsewhere", async () => {
  assert.ok(await tf.setBackend("wasm"));
  const taps = [0.125, 0.375, 0.375, 0.125];
  for (const [c, applies] of [[8, true], [6, false]] as const) {
    const hi = randn([2, 7, 5, c], 3);
    const lo = tf.zeros([2, 3, 2, c]); // ⌊(7 + 2 − 4)/2⌋ + 1, ⌊(5 + 2 − 4)/2⌋ + 1
    assert.equal(
      firResampleSimd(tf.backend(), hi as never, lo as never, taps, 1, false),
      applies,
      `C = ${c}`,
    );
    if (applies) {
      const want = new Float32Array(lo.size);
      firResample(hi.dataSync() as Float32Array, want, hi.shape, { taps, pad: 1, size: [7, 5] }, false);
      await assertClose(lo, want, { atol: 1e-6, rtol: 1e-6 });
    }
    tf.dispose([hi, lo]);
  }
});

// Both filter-gradient forms on cpu against cpu's own Conv2DBackpropFilter: the im2col GEMM (wasm, and cpu when
// training) and the forward-op form webgpu uses (no adapter here, so it is checked on cpu).
for (const c of convCases) {
  Deno.test(`filter gradient forms = cpu's own kernel: x [${c.x}], ${c.k}×${c.k}, stride ${c.s}, ${c.pad}`, async () => {
    const w: [number, number, number, number] = [c.k, c.k, c.x[3], c.co];
    const [own, im2col, byConv] = await on("cpu", () => {
      const x = randn(c.x, 80) as tf.Tensor4D;
      const dy = randn(tf.conv2d(x, randn(w, 81) as tf.Tensor4D, c.s, c.pad).shape, 82) as tf.Tensor4D;
      const attrs = { strides: c.s, pad: c.pad, dataFormat: "NHWC" as const, filterShape: w };
      return [
        tf.engine().runKernel("Conv2DBackpropFilter", { x, dy }, attrs) as tf.Tensor,
        conv2dFilterGradient(x, dy, attrs),
        conv2dFilterGradientByConv(x, dy, attrs),
      ];
    });
    await assertClose(im2col, own, { atol: 1e-4, rtol: 1e-4 });
    await assertClose(byConv, own, { atol: 1e-4, rtol: 1e-4 });
  });
}

Deno.test("flipFilter (wasm's one-pass kernel, cpu's slices) = reverse in space + swap of the channel axes", async () => {
  const run = () => {
    const w = randn([3, 2, 4, 5], 90) as tf.Tensor4D;
    return [flipFilter(w), tf.transpose(tf.reverse(w, [0, 1]), [0, 1, 3, 2])];
  };
  const [wasm, cpu] = [await on("wasm", run), await on("cpu", run)];
  await assertClose(wasm[0], cpu[1], { atol: 0, rtol: 0 });
  await assertClose(cpu[0], cpu[1], { atol: 0, rtol: 0 });
});

Deno.test("wasm Square (as x·x) = cpu's Square bit for bit, its own kernel too, with gradient; int32 by the own kernel", async () => {
  const run = () => {
    const x = randn([3, 5, 7], 100);
    return [tf.square(x), tf.grad((a: tf.Tensor) => tf.sum(tf.mul(tf.square(a), x)))(x)];
  };
  const cpu = await on("cpu", run);
  for (const fast of [true, false]) {
    fastPaths.square = fast;
    try {
      const wasm = await on("wasm", run);
      for (let i = 0; i < 2; i++) await assertClose(wasm[i], cpu[i], { atol: 0, rtol: 0 });
    } finally {
      fastPaths.square = true;
    }
  }
  const ints = await on("wasm", () => [tf.square(tf.tensor1d([-3, 0, 7, 46341], "int32"))]);
  assert.deepEqual(Array.from(ints[0]), [9, 0, 49, 46341 * 46341 | 0]);
  await gradCheck("Square", (x) => tf.square(x), [[4, 6]], 110);
});

Deno.test("sumOfSquaresOf (one kernel on wasm and cpu) = Σ of Square and Sum per tensor on cpu", async () => {
  const shapes = [[3, 3, 4, 5], [5], [7, 2], [1]];
  const run = () => [sumOfSquaresOf(shapes.map((s, i) => tf.mul(randn(s, 120 + i), i + 0.5)))];
  fastPaths.gradNorm = false;
  const ops = await on("cpu", run);
  fastPaths.gradNorm = true;
  const [cpu, wasm] = [await on("cpu", run), await on("wasm", run)];
  await assertClose(cpu[0], ops[0], { atol: 0, rtol: 1e-6 });
  await assertClose(wasm[0], ops[0], { atol: 0, rtol: 1e-6 });
  assert.ok(ops[0][0] > 10, `a sum of squares, ${ops[0][0]}`);
});

Deno.test("splitFirst (IctSplit on wasm) = slices on cpu; wasm BatchMatMul the same with and without it", async () => {
  const run = () => splitFirst(randn([4, 3, 2, 5], 130));
  const [wasm, cpu] = [await on("wasm", run), await on("cpu", run)];
  assert.equal(wasm.length, 4);
  assert.ok(await tf.setBackend("wasm"));
  const parts = run();
  assert.deepEqual(parts.map((t) => t.shape), Array(4).fill([1, 3, 2, 5]));
  tf.dispose(parts);
  for (let i = 0; i < 4; i++) await assertClose(wasm[i], cpu[i], { atol: 0, rtol: 0 });
  const product = () => {
    const [q, k, v] = [randn([3, 1, 6, 4], 131), randn([3, 1, 6, 4], 132), randn([3, 1, 6, 4], 133)];
    return [tf.matMul(tf.matMul(q, k, false, true), v)];
  };
  fastPaths.smallMatMul = false; // the convolutions, which split their inputs
  fastPaths.split = false;
  const slices = await on("wasm", product);
  fastPaths.split = true;
  await assertClose((await on("wasm", product))[0], slices[0], { atol: 0, rtol: 0 });
  await assertClose((await on("cpu", product))[0], slices[0], { atol: 1e-5, rtol: 1e-5 });
  fastPaths.smallMatMul = true;
});

Deno.test("wasm Identity shares the data: a clone outlives its source; the gradient through saved tensors = cpu's", async () => {
  assert.ok(await tf.setBackend("wasm"));
  for (const share of [true, false]) {
    fastPaths.identity = share;
    try {
      const x = tf.tensor([1.5, -2, 3, 7], [2, 2]);
      const y = tf.clone(x);
      x.dispose();
      const z = tf.fill([2, 2], 9); // would take x's freed buffer
      assert.deepEqual(Array.from(await y.data()), [1.5, -2, 3, 7]);
      assert.deepEqual(y.shape, [2, 2]);
      tf.dispose([y, z]);
    } finally {
      fastPaths.identity = true;
    }
  }
  // Every op that saves inputs for its gradient clones them (Identity).
  const run = () => {
    const x = randn([3, 4], 140);
    return [tf.grad((a: tf.Tensor) => tf.sum(tf.mul(tf.sigmoid(tf.mul(a, a)), tf.exp(a))))(x)];
  };
  await assertClose((await on("wasm", run))[0], (await on("cpu", run))[0], { atol: 1e-6, rtol: 1e-5 });
});

Deno.test("wasm small broadcast Add, Sub, Multiply, RealDiv (one JavaScript loop) = cpu's kernels bit for bit, with gradients", async () => {
  const pairs = [
    [[8, 64], [64]], // a dense layer's bias
    [[3, 1, 1, 1], [3, 4, 5, 2]], // a per-sample scaling
    [[1, 32], [6, 1]],
    [[5, 1, 7], [1, 4, 1]],
    [[2, 3], []], // a scalar: wasm's own kernel
    [[4, 1, 6, 1], [1, 3, 1, 5]],
  ];
  const ops: [string, (a: tf.Tensor, b: tf.Tensor) => tf.Tensor][] = [
    ["add", tf.add],
    ["sub", tf.sub],
    ["mul", tf.mul],
    ["div", tf.div],
  ];
  for (const [name, op] of ops) {
    for (const [sa, sb] of pairs) {
      const run = () => {
        const [a, b] = [randn(sa, 180), tf.add(randn(sb, 181), 3)];
        const y = op(a, b);
        const r = randn(y.shape, 182);
        return [y, ...tf.grads((x: tf.Tensor, w: tf.Tensor) => tf.sum(tf.mul(op(x, w), r)))([a, b])];
      };
      const cpu = await on("cpu", run);
      const wasm = await on("wasm", run);
      await assertClose(wasm[0], cpu[0], { atol: 0, rtol: 0, message: `${name} [${sa}] [${sb}]` });
      for (let i = 1; i < 3; i++) {
        await assertClose(wasm[i], cpu[i], { atol: 1e-5, rtol: 1e-5, message: `${name} [${sa}] [${sb}]` });
      }
    }
  }
  await gradCheck("broadcast mul/add", (a, b) => tf.add(tf.mul(a, b), b), [[3, 1, 4], [1, 5, 4]], 190);
});

Deno.test("wasm BatchMatMul: a row's result does not depend on the batch it is computed in (dense layer, attention entries)", async () => {
  // [M, 128]·[128, 64] is a dense layer of ncsnpp-small-32 (K·N = 8192, the JavaScript kernel's limit) and
  // [E, 64, 64]·[E, 64, 64] its 8×8 attention; 8 rows / 2 entries against 600 rows / 150 entries. A choice of
  // kernel by the whole product's size would send the large ones to XNNPACK, which rounds differently.
  const cases: [number[], number[], number[], number[]][] = [
    [[600, 128], [128, 64], [8, 128], [128, 64]],
    [[150, 64, 64], [150, 64, 64], [2, 64, 64], [2, 64, 64]],
  ];
  for (const [aBig, bBig, aSmall, bSmall] of cases) {
    const [big, small] = await on("wasm", () => {
      const a = randn(aBig, 5), b = randn(bBig, 6);
      const first = (t: tf.Tensor, s: number[]) => tf.slice(t, s.map(() => 0), s);
      return [tf.matMul(a, b), tf.matMul(first(a, aSmall), first(b, bSmall))];
    });
    assert.deepEqual(
      Array.from(small),
      Array.from(big.subarray(0, small.length)),
      `[${aSmall}] of [${aBig}]`,
    );
  }
});
