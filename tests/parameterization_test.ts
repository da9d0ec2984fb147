import { assert, assertEquals, assertThrows } from "@std/assert";
import * as tf from "@tensorflow/tfjs";
import {
  cIn,
  cNoiseFourier,
  cNoisePositional,
  consistencyFunction,
  cOut,
  cSkip,
  scalings,
} from "../lib/parameterization.ts";
import { karrasSigmas } from "../lib/schedules.ts";
import { assertClose } from "../lib/testing.ts";
import { REF } from "./reference.ts";

await tf.setBackend("cpu");
const sigmas: number[] = REF.param_sigmas;

Deno.test("c_skip, c_out, c_in, c_noise match numpy", async () => {
  const tol = { atol: 0, rtol: 1e-14 };
  await assertClose(sigmas.map((s) => cSkip(s)), REF.c_skip, { ...tol, message: "cSkip" });
  await assertClose(sigmas.map((s) => cOut(s)), REF.c_out, { atol: 1e-300, rtol: 1e-14, message: "cOut" });
  await assertClose(sigmas.map((s) => cIn(s)), REF.c_in, { ...tol, message: "cIn" });
  await assertClose(sigmas.map(cNoiseFourier), REF.c_noise_fourier, { ...tol, message: "cNoiseFourier" });
  await assertClose(sigmas.map(cNoisePositional), REF.c_noise_positional, { ...tol, message: "positional" });
  assert(Number.isFinite(cNoisePositional(0)), "σ + 1e-44 keeps ln finite at σ = 0");
});

Deno.test("boundary condition: c_skip(σ_min) = 1 and c_out(σ_min) = 0 exactly, also on the grid's σ_1", () => {
  assertEquals(cSkip(0.002), 1);
  assertEquals(cOut(0.002), 0);
  const s1 = karrasSigmas(1281)[0];
  assertEquals(cSkip(s1), 1);
  assertEquals(cOut(s1), 0);
  // Other σ_data / σ_min are honoured:
  assertEquals(cSkip(0.01, 1, 0.01), 1);
  assertEquals(cOut(0.01, 1, 0.01), 0);
  assert(Math.abs(cSkip(1, 1, 0) - 0.5) < 1e-15);
});

Deno.test("c_skip² + c_out²·(…) limits: c_skip → 0 and c_out → σ_data at large σ", () => {
  assert(cSkip(1e6) < 1e-12);
  assert(Math.abs(cOut(1e6) - 0.5) < 1e-6);
});

Deno.test("the σ_min shift of c_skip and c_out (not EDM's c_skip = σ_d²/(σ² + σ_d²), c_out = σσ_d/√(σ² + σ_d²))", async () => {
  // At σ = σ_max = 80 the shift changes c_skip by 5e-5 and c_out by 2.5e-5, relative: hand values to 1e-12.
  const edmSkip = (s: number, sd = 0.5) => sd ** 2 / (s ** 2 + sd ** 2);
  const edmOut = (s: number, sd = 0.5) => (s * sd) / Math.sqrt(s ** 2 + sd ** 2);
  const skip80 = 0.25 / (79.998 ** 2 + 0.25);
  const out80 = (0.5 * 79.998) / Math.sqrt(80 ** 2 + 0.25);
  await assertClose(cSkip(80), skip80, { atol: 0, rtol: 1e-12, message: "cSkip(80)" });
  await assertClose(cOut(80), out80, { atol: 0, rtol: 1e-12, message: "cOut(80)" });
  assert(Math.abs(edmSkip(80) / skip80 - 1) > 4e-5 && Math.abs(edmOut(80) / out80 - 1) > 2e-5);
  // Still visible at σ = 1e6 (relative 4e-9 and 2e-9).
  await assertClose(cSkip(1e6), 0.25 / ((1e6 - 0.002) ** 2 + 0.25), { atol: 0, rtol: 1e-13 });
  await assertClose(cOut(1e6), (0.5 * (1e6 - 0.002)) / Math.sqrt(1e12 + 0.25), { atol: 0, rtol: 1e-13 });
  // A large σ_min makes the shift plain: σ = 50, σ_min = 10, σ_data = 0.5.
  await assertClose(cSkip(50, 0.5, 10), 0.25 / (40 ** 2 + 0.25), { atol: 0, rtol: 1e-14 });
  await assertClose(cOut(50, 0.5, 10), (0.5 * 40) / Math.sqrt(50 ** 2 + 0.25), { atol: 0, rtol: 1e-14 });
  assert(cOut(50, 0.5, 10) < 0.9 * edmOut(50) && cSkip(50, 0.5, 10) > 1.5 * edmSkip(50));
  // The float32 tensors keep it (float32 resolves 1e-7), and consistencyFunction honours σ_min.
  const c = scalings(new Float64Array([80]), { sampleRank: 2 });
  await assertClose(c.cSkip, [skip80], { atol: 0, rtol: 2e-7, message: "float32 cSkip(80)" });
  await assertClose(c.cOut, [out80], { atol: 0, rtol: 2e-7, message: "float32 cOut(80)" });
  const x = tf.tensor2d([[0.4, -1.2]]);
  const net = (h: tf.Tensor) => tf.mul(h, 2);
  const f = consistencyFunction(net, x, new Float64Array([50]), { sigmaMin: 10 });
  const cin = 1 / Math.sqrt(50 ** 2 + 0.25);
  const expected = [0.4, -1.2].map((v) =>
    (0.25 / (40 ** 2 + 0.25)) * v + ((0.5 * 40) / Math.sqrt(50 ** 2 + 0.25)) * 2 * cin * v
  );
  await assertClose(f, expected, { atol: 0, rtol: 1e-6, message: "f(x, 50) with σ_min = 10" });
});

Deno.test("scalings: per-sample tensors shaped to broadcast, float32 of the float64 formulas", async () => {
  const b = new Float64Array([0.002, 0.5, 80]);
  const c = scalings(b);
  assertEquals(c.cSkip.shape, [3, 1, 1, 1]);
  assertEquals(c.cNoise.shape, [3]);
  await assertClose(c.cSkip, [...b].map((s) => cSkip(s)), { atol: 0, rtol: 1e-7 });
  await assertClose(c.cOut, [...b].map((s) => cOut(s)), { atol: 0, rtol: 1e-7 });
  await assertClose(c.cIn, [...b].map((s) => cIn(s)), { atol: 0, rtol: 1e-7 });
  await assertClose(c.cNoise, [...b].map(cNoiseFourier), { atol: 0, rtol: 1e-7 });
  const p = scalings(b, { embedding: "positional", sampleRank: 2 });
  assertEquals(p.cOut.shape, [3, 1]);
  await assertClose(p.cNoise, [...b].map(cNoisePositional), { atol: 0, rtol: 1e-7 });
});

Deno.test("consistencyFunction (Eq. 2): hand value, and f(x, σ_min) = x exactly for any network", async () => {
  const x = tf.tensor4d([0.3, -0.7, 1.1, 0.05], [2, 1, 1, 2]);
  const net = (h: tf.Tensor, cNoise: tf.Tensor1D) => tf.add(tf.mul(h, 3), cNoise.reshape([-1, 1, 1, 1]));
  const out = consistencyFunction(net, x, new Float64Array([0.002, 1.0]));
  const s = 1.0;
  const xs = [1.1, 0.05];
  const expectedSecond = xs.map((v) => cSkip(s) * v + cOut(s) * (3 * cIn(s) * v + cNoiseFourier(s)));
  await assertClose(out, [0.3, -0.7, ...expectedSecond], { atol: 1e-6, rtol: 1e-6 });
  const first = await out.slice([0], [1]).data();
  assertEquals([...first], [...await x.slice([0], [1]).data()], "bit-exact at σ_min");
  assertThrows(
    () => consistencyFunction(net, x, new Float64Array([1])),
    Error,
    "2 samples but 1 noise levels",
  );
});
