// The GroupNorm (+ SiLU) SIMD128 kernels (lib/simd/groupnorm.wat) against the JavaScript kernels they replace
// (lib/wasm_kernels.ts groupNormForward, groupNormBackward), a float64 reference, TF.js's ops on cpu, and
// central finite differences of the public fusedGroupNorm on wasm.
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import "@tensorflow/tfjs-backend-wasm";
import { assertClose } from "../lib/testing.ts";
import { Rng } from "../lib/rng.ts";
import { on, randn } from "./backend_helpers.ts";
import {
  fastPaths,
  fusedGroupNorm,
  groupNormBackward,
  groupNormForward,
  registerWasmTrainingKernels,
} from "../lib/wasm_kernels.ts";
import { groupNormBackwardSimd, groupNormForwardSimd } from "../lib/simd/groupnorm.ts";
import { GroupNorm } from "../lib/nn/layers.ts";
import { Scope } from "../lib/nn/params.ts";

registerWasmTrainingKernels();

type Shape = [number, number, number, number];
type Attrs = { groups: number; eps: number; silu: boolean };

/** Inputs as host arrays: x ~ N(mean, sd²), γ ~ 1 + N(0, 0.5²), β, shift ~ N(0, 0.5²), dy ~ N(0, 1). */
interface Data {
  shape: Shape;
  x: Float32Array;
  gamma: Float32Array;
  beta: Float32Array;
  shift: Float32Array;
  dy: Float32Array;
}

function data(shape: Shape, seed: number, mean = 0.3, sd = 1.5): Data {
  const r = Rng.seeded(seed);
  const fill = (n: number, f: () => number) => Float32Array.from({ length: n }, f);
  const [b, , , c] = shape;
  const size = shape.reduce((a, d) => a * d, 1);
  return {
    shape,
    x: fill(size, () => mean + sd * r.normal()),
    gamma: fill(c, () => 1 + 0.5 * r.normal()),
    beta: fill(c, () => 0.5 * r.normal()),
    shift: fill(b * c, () => 0.5 * r.normal()),
    dy: fill(size, () => r.normal()),
  };
}

/** Run `f` on the wasm backend with tensors made from `arrays` and zeroed outputs; the outputs read back. */
async function onWasmHeap(
  arrays: Record<string, { values: Float32Array; shape: number[] }>,
  outShapes: Record<string, number[]>,
  f: (backend: unknown, ins: Record<string, tf.Tensor>, outs: Record<string, tf.Tensor>) => boolean,
): Promise<{ applied: boolean; outs: Record<string, Float32Array> }> {
  assert.ok(await tf.setBackend("wasm"));
  const ins = Object.fromEntries(Object.entries(arrays).map(([k, a]) => [k, tf.tensor(a.values, a.shape)]));
  const outs = Object.fromEntries(Object.entries(outShapes).map(([k, s]) => [k, tf.zeros(s)]));
  const applied = f(tf.backend(), ins, outs);
  const read = Object.fromEntries(Object.entries(outs).map(([k, t]) => [k, t.dataSync() as Float32Array]));
  tf.dispose([...Object.values(ins), ...Object.values(outs)]);
  return { applied, outs: read };
}

async function simdForward(d: Data, a: Attrs, shifted: boolean) {
  const [b, , , c] = d.shape;
  const arrays: Record<string, { values: Float32Array; shape: number[] }> = {
    x: { values: d.x, shape: d.shape },
    gamma: { values: d.gamma, shape: [c] },
    beta: { values: d.beta, shape: [c] },
  };
  if (shifted) arrays.shift = { values: d.shift, shape: [b, 1, 1, c] };
  const stats = [b, a.groups];
  return await onWasmHeap(
    arrays,
    { y: d.shape, mean: stats, rstd: stats },
    (be, ins, outs) =>
      groupNormForwardSimd(be, ins as { x: tf.Tensor; gamma: tf.Tensor; beta: tf.Tensor }, a, {
        y: outs.y,
        mean: outs.mean,
        rstd: outs.rstd,
      }),
  );
}

function jsForward(d: Data, a: Attrs, shifted: boolean) {
  const [b] = d.shape;
  const [y, mean, rstd] = [
    new Float32Array(d.x.length),
    new Float32Array(b * a.groups),
    new Float32Array(b * a.groups),
  ];
  groupNormForward(d.x, d.shape, d.gamma, d.beta, a, y, mean, rstd, shifted ? d.shift : undefined);
  return { y, mean, rstd };
}

/** The forward in float64 from the float32 inputs (x + shift rounded to float32), two-pass: exact to ~1e-15. */
function f64Forward(d: Data, a: Attrs, shifted: boolean) {
  const [b, h, w, c] = d.shape;
  const p = h * w, cg = c / a.groups, n = p * cg;
  const y = new Float64Array(d.x.length), mean = new Float64Array(b * a.groups);
  const rstd = new Float64Array(b * a.groups);
  const xv = (bi: number, i: number, ch: number) => {
    const v = d.x[(bi * p + i) * c + ch];
    return shifted ? Math.fround(v + d.shift[bi * c + ch]) : v;
  };
  for (let bi = 0; bi < b; bi++) {
    for (let g = 0; g < a.groups; g++) {
      let m = 0, q = 0;
      for (let i = 0; i < p; i++) for (let ch = g * cg; ch < (g + 1) * cg; ch++) m += xv(bi, i, ch);
      m /= n;
      for (let i = 0; i < p; i++) {
        for (let ch = g * cg; ch < (g + 1) * cg; ch++) q += (xv(bi, i, ch) - m) ** 2;
      }
      const r = 1 / Math.sqrt(q / n + a.eps);
      [mean[bi * a.groups + g], rstd[bi * a.groups + g]] = [m, r];
      for (let i = 0; i < p; i++) {
        for (let ch = g * cg; ch < (g + 1) * cg; ch++) {
          const v = d.gamma[ch] * (xv(bi, i, ch) - m) * r + d.beta[ch];
          y[(bi * p + i) * c + ch] = a.silu ? v / (1 + Math.exp(-v)) : v;
        }
      }
    }
  }
  return { y, mean, rstd };
}

async function simdBackward(d: Data, a: Attrs, shifted: boolean, mean: Float32Array, rstd: Float32Array) {
  const [b, , , c] = d.shape;
  const arrays: Record<string, { values: Float32Array; shape: number[] }> = {
    dy: { values: d.dy, shape: d.shape },
    x: { values: d.x, shape: d.shape },
    gamma: { values: d.gamma, shape: [c] },
    beta: { values: d.beta, shape: [c] },
    mean: { values: mean, shape: [b, a.groups] },
    rstd: { values: rstd, shape: [b, a.groups] },
  };
  const outShapes: Record<string, number[]> = { dx: d.shape, dgamma: [c], dbeta: [c] };
  if (shifted) {
    arrays.shift = { values: d.shift, shape: [b, 1, 1, c] };
    outShapes.dshift = [b, 1, 1, c];
  }
  type Ins = Parameters<typeof groupNormBackwardSimd>[1];
  type Outs = Parameters<typeof groupNormBackwardSimd>[3];
  return await onWasmHeap(
    arrays,
    outShapes,
    (be, ins, outs) => groupNormBackwardSimd(be, ins as unknown as Ins, a, outs as unknown as Outs),
  );
}

function jsBackward(d: Data, a: Attrs, shifted: boolean, mean: Float32Array, rstd: Float32Array) {
  const [b, , , c] = d.shape;
  const [dx, dgamma, dbeta] = [new Float32Array(d.x.length), new Float32Array(c), new Float32Array(c)];
  const dshift = shifted ? new Float32Array(b * c) : undefined;
  groupNormBackward(
    d.dy,
    d.x,
    d.shape,
    d.gamma,
    d.beta,
    mean,
    rstd,
    a,
    dx,
    dgamma,
    dbeta,
    shifted ? d.shift : undefined,
    dshift,
  );
  return { dx, dgamma, dbeta, dshift };
}

const variants = [
  { silu: false, shifted: false },
  { silu: true, shifted: false },
  { silu: false, shifted: true },
  { silu: true, shifted: true },
];
const label = (v: { silu: boolean; shifted: boolean }) =>
  `${v.silu ? " + SiLU" : ""}${v.shifted ? ", shift" : ""}`;

// Channels a multiple of 4: groups of 4 and 8 channels (lane groups), of 2 and 12 (a lane group spans two
// groups, or a group three lane groups), C = 4, batches of 1 to 3; pixels a multiple of 4 or not (the
// statistics take four pixels at a time), and fewer than 4.
const cases: { shape: Shape; groups: number; eps: number }[] = [
  { shape: [2, 3, 4, 8], groups: 2, eps: 1e-6 },
  { shape: [2, 1, 3, 8], groups: 2, eps: 1e-6 },
  { shape: [1, 5, 3, 12], groups: 3, eps: 1e-5 },
  { shape: [3, 2, 2, 4], groups: 1, eps: 1e-6 },
  { shape: [2, 4, 3, 16], groups: 8, eps: 1e-5 },
  { shape: [1, 3, 5, 36], groups: 3, eps: 1 }, // ε of the order of the variance
  { shape: [2, 8, 8, 64], groups: 16, eps: 1e-6 },
];

for (const c of cases) {
  for (const v of variants) {
    const a = { groups: c.groups, eps: c.eps, silu: v.silu };
    Deno.test(`SIMD GroupNorm forward${label(v)} = JavaScript kernel and float64: x [${c.shape}], ${c.groups} groups`, async () => {
      const d = data(c.shape, 1);
      const simd = await simdForward(d, a, v.shifted);
      assert.ok(simd.applied, "the SIMD kernel applies");
      const js = jsForward(d, a, v.shifted);
      const ref = f64Forward(d, a, v.shifted);
      await assertClose(simd.outs.y, js.y, { atol: 2e-6, rtol: 2e-6, message: "y vs JavaScript" });
      await assertClose(simd.outs.y, ref.y, { atol: 1e-6, rtol: 1e-6, message: "y vs float64" });
      for (const k of ["mean", "rstd"] as const) {
        // The same float64 sums (in another order: rounded to float32, at most an ulp apart).
        await assertClose(simd.outs[k], js[k], { atol: 0, rtol: 2.5e-7, message: `${k} vs JavaScript` });
        await assertClose(simd.outs[k], ref[k], { atol: 1e-7, rtol: 1e-6, message: `${k} vs float64` });
      }
    });
    Deno.test(`SIMD GroupNorm backward${label(v)} = JavaScript kernel: x [${c.shape}], ${c.groups} groups`, async () => {
      const d = data(c.shape, 2);
      const { mean, rstd } = jsForward(d, a, v.shifted);
      const simd = await simdBackward(d, a, v.shifted, mean, rstd);
      assert.ok(simd.applied, "the SIMD kernel applies");
      const js = jsBackward(d, a, v.shifted, mean, rstd);
      await assertClose(simd.outs.dx, js.dx, { atol: 2e-5, rtol: 2e-5, message: "dx" });
      await assertClose(simd.outs.dgamma, js.dgamma, { atol: 2e-5, rtol: 2e-5, message: "dγ" });
      await assertClose(simd.outs.dbeta, js.dbeta, { atol: 2e-5, rtol: 2e-5, message: "dβ" });
      if (v.shifted) {
        await assertClose(simd.outs.dshift, js.dshift!, { atol: 2e-5, rtol: 2e-5, message: "dshift" });
      }
    });
  }
}

// A large mean and a small spread (x ~ N(3, 0.01²)) over 64×64 and 256×256 pixels: Σx² − n·μ² cancels to
// ~1e-5 of itself, in float64; y = (x − μ₃₂)·s + b keeps the spread (the JavaScript kernel's x·s + (β − μ·s)
// is off by up to 2e-5 here, float32's rounding of 300-odd).
for (const [h, groups] of [[64, 4], [256, 2]]) {
  for (const silu of [false, true]) {
    Deno.test(`SIMD GroupNorm${silu ? " + SiLU" : ""} of x ~ N(3, 0.01²) = float64: x [1, ${h}, ${h}, 8], ${groups} groups`, async () => {
      const d = data([1, h, h, 8], 3, 3, 0.01);
      d.shift = d.shift.map((v) => v / 100); // N(0, 0.005²): the spread stays small
      const a = { groups, eps: 1e-6, silu };
      const simd = await simdForward(d, a, true);
      const ref = f64Forward(d, a, true);
      await assertClose(simd.outs.y, ref.y, { atol: 2e-6, rtol: 2e-6, message: "y" });
      await assertClose(simd.outs.mean, ref.mean, { atol: 0, rtol: 1e-7, message: "mean" });
      await assertClose(simd.outs.rstd, ref.rstd, { atol: 0, rtol: 1e-6, message: "rstd" });
    });
  }
}

Deno.test("SIMD GroupNorm does not apply where C is not a multiple of 4 (the JavaScript kernel runs)", async () => {
  const d = data([2, 3, 3, 6], 4);
  const a = { groups: 3, eps: 1e-5, silu: true };
  assert.equal((await simdForward(d, a, false)).applied, false);
  const { mean, rstd } = jsForward(d, a, false);
  assert.equal((await simdBackward(d, a, false, mean, rstd)).applied, false);
});

// The public fusedGroupNorm on wasm (the kernels, SIMD where C mod 4 = 0) against TF.js's ops on cpu (the
// GroupNorm layer without a fused kernel there) and against the kernels with fastPaths.simd off.
for (
  const c of [
    { shape: [2, 4, 4, 16] as Shape, groups: 4 },
    { shape: [3, 2, 2, 4] as Shape, groups: 1 },
    { shape: [1, 3, 5, 6] as Shape, groups: 3 }, // C = 6: the JavaScript kernels
  ]
) {
  for (const v of variants) {
    Deno.test(`fusedGroupNorm${label(v)} on wasm = cpu's ops and the JavaScript kernels, with gradients: x [${c.shape}]`, async () => {
      const layer = new GroupNorm(
        Scope.root().child("n"),
        c.shape[3],
        [c.shape[1], c.shape[2]],
        1e-5,
        c.groups,
      );
      const act = v.silu ? "silu" : "none";
      const run = () => {
        const x = tf.add(tf.mul(randn(c.shape, 10), 1.5), 0.7);
        const gamma = tf.add(tf.mul(randn([c.shape[3]], 11), 0.5), 1);
        const beta = tf.mul(randn([c.shape[3]], 12), 0.5);
        const shift = tf.mul(randn([c.shape[0], 1, 1, c.shape[3]], 13), 0.5);
        const ins = v.shifted ? [x, gamma, beta, shift] : [x, gamma, beta];
        const f = (a: tf.Tensor, g: tf.Tensor, b: tf.Tensor, s?: tf.Tensor) =>
          layer.apply(new Map([[layer.weight, g], [layer.bias, b]]), a as tf.Tensor4D, act, s as tf.Tensor4D);
        const r = randn(c.shape, 14);
        const loss = (...ts: tf.Tensor[]) => tf.sum(tf.mul(f(ts[0], ts[1], ts[2], ts[3]), r));
        return [f(ins[0], ins[1], ins[2], ins[3]), ...tf.grads(loss)(ins)];
      };
      const cpu = await on("cpu", run);
      const wasm = await on("wasm", run);
      fastPaths.simd = false;
      const js = await on("wasm", run).finally(() => fastPaths.simd = true);
      for (let i = 0; i < cpu.length; i++) {
        await assertClose(wasm[i], cpu[i], { atol: 2e-5, rtol: 2e-5, message: `output ${i} vs cpu` });
        await assertClose(wasm[i], js[i], { atol: 2e-5, rtol: 2e-5, message: `output ${i} vs JavaScript` });
      }
    });
  }
}

// d/dε L(θ + ε·u) for L = Σ fusedGroupNorm(x, γ, β, shift)·R on wasm, one input at a time: autodiff against a
// Richardson-extrapolated central difference.
for (const silu of [false, true]) {
  Deno.test(`fusedGroupNorm${silu ? " + SiLU" : ""} of x + shift on wasm: gradients = finite differences for x, γ, β, shift`, async () => {
    assert.ok(await tf.setBackend("wasm"));
    const shape: Shape = [2, 3, 4, 8];
    const attrs = { groups: 4, eps: 1e-5, silu };
    const shapes = [shape, [8], [8], [2, 1, 1, 8]];
    const names = ["x", "γ", "β", "shift"];
    const results = tf.tidy(() => {
      const ins = shapes.map((s, i) =>
        tf.add(tf.mul(randn(s, 20 + i), i === 1 ? 0.5 : 1.5), i === 1 ? 1 : 0.3)
      );
      const r = randn(shape, 30);
      const loss = (x: tf.Tensor, g: tf.Tensor, b: tf.Tensor, s: tf.Tensor) =>
        tf.sum(tf.mul(fusedGroupNorm(x as tf.Tensor4D, g, b, attrs, s as tf.Tensor4D), r));
      const grads = tf.grads(loss)(ins);
      return shapes.map((s, i) => {
        const u = randn(s, 40 + i);
        const along = (eps: number) => {
          const at = (sign: number) => ins.map((t, j) => (j === i ? tf.add(t, tf.mul(u, sign * eps)) : t));
          return tf.div(
            tf.sub(
              loss(...at(1) as [tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]),
              loss(...at(-1) as [tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]),
            ),
            2 * eps,
          );
        };
        const fd = tf.div(tf.sub(tf.mul(along(1e-2), 4), along(2e-2)), 3);
        return [tf.sum(tf.mul(grads[i], u)), fd];
      });
    });
    for (let i = 0; i < results.length; i++) {
      const [ad, fd] = [(await results[i][0].data())[0], (await results[i][1].data())[0]];
      assert.ok(
        Math.abs(ad - fd) <= 2e-3 * Math.max(1, Math.abs(fd)),
        `${names[i]}: autodiff ${ad} vs finite difference ${fd}`,
      );
    }
    tf.dispose(results);
  });
}

// SiLU by the kernel's own e^x: with γ = 0 each channel's pre-activation is its β exactly, here from −100 to
// 100 (±88 and 0 among them) and beyond e^x's clamp (±1000, ±1e30): y = SiLU(β), finite, and
// dβ = Σ dy·SiLU'(β), against float64.
Deno.test("SIMD GroupNorm + SiLU at pre-activations from −100 to 100 and beyond: SiLU and its derivative, finite", async () => {
  const values = [-100, -88.8, -88.5, -88, -87.3, -20, -1e-3, 0, 1e-3, 20, 87.3, 88, 88.5, 88.8, 100];
  values.push(-1e30, -1000, 1000, 1e30);
  for (let v = -100; v <= 100; v += 0.37) values.push(Math.fround(v));
  while (values.length % 4) values.push(0);
  const c = values.length;
  const d = data([2, 2, 3, c], 5);
  d.gamma.fill(0);
  d.beta.set(values);
  const a = { groups: c / 4, eps: 1e-5, silu: true };
  const { outs: { y } } = await simdForward(d, a, true);
  const silu = (v: number) => v / (1 + Math.exp(-v));
  const dsilu = (v: number) => {
    const s = 1 / (1 + Math.exp(-v));
    return s * (1 + v * (1 - s));
  };
  const expected = Float64Array.from({ length: y.length }, (_, i) => silu(values[i % c]));
  assert.ok(y.every(Number.isFinite), "y finite");
  // Within ~1e-7 of SiLU(v) relatively, and within 1e-35 where v·e^v is smaller (v < −85).
  await assertClose(y, expected, { atol: 1e-35, rtol: 2e-6, message: "SiLU" });
  const { mean, rstd } = jsForward(d, a, true);
  const { outs: g } = await simdBackward(d, a, true, mean, rstd);
  for (const k of ["dx", "dgamma", "dbeta", "dshift"]) assert.ok(g[k].every(Number.isFinite), `${k} finite`);
  const dbeta = values.map((v, ch) => {
    let s = 0;
    for (let i = ch; i < d.dy.length; i += c) s += d.dy[i];
    return s * dsilu(v);
  });
  await assertClose(g.dbeta, dbeta, { atol: 1e-6, rtol: 1e-5, message: "dβ = Σ dy·SiLU'(β)" });
});
