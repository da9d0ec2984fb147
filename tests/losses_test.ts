import { assert, assertEquals, assertThrows } from "@std/assert";
import * as tf from "@tensorflow/tfjs";
import {
  type ConsistencyFn,
  ctLoss,
  ictMetric,
  pseudoHuber,
  pseudoHuberC,
  squaredL2,
  stopGradient,
  teacherOutput,
} from "../lib/losses.ts";
import { cIn, consistencyFunction, cOut, cSkip } from "../lib/parameterization.ts";
import { assertClose } from "../lib/testing.ts";
import { REF } from "./reference.ts";

await tf.setBackend("cpu");

Deno.test("pseudoHuberC: 0.00054·√d (CIFAR-10: 0.029930, the paper's 0.03)", () => {
  assert(Math.abs(pseudoHuberC(3072) - 0.02992983795479) < 1e-13);
  assert(Math.abs(pseudoHuberC(3 * 64 * 64) - 0.05985967590958) < 1e-13);
  assertThrows(() => pseudoHuberC(0), Error, "> 0");
});

Deno.test("squaredL2 and pseudoHuber: per sample over the whole sample, match numpy", async () => {
  const x = tf.tensor(REF.metric_x, REF.metric_shape);
  const y = tf.tensor(REF.metric_y, REF.metric_shape);
  const sq = squaredL2(x, y);
  assertEquals(sq.shape, [3]);
  await assertClose(sq, REF.squared_l2, { atol: 1e-7, rtol: 1e-5 });
  const ph = pseudoHuber(x, y, REF.metric_c);
  assertEquals(ph.shape, [3]);
  await assertClose(ph, REF.pseudo_huber, { atol: 1e-9, rtol: 1e-5 });
});

Deno.test("pseudoHuber ≈ ‖x−y‖²/(2c) for tiny and ≈ ‖x−y‖ − c for large differences", async () => {
  const c = 0.03;
  const zeros = tf.zeros([2, 4]);
  const tiny = tf.tensor2d([[1e-4, 0, 0, 0], [0, 2e-4, -2e-4, 0]]); // ‖·‖² = 1e-8, 8e-8 ≪ c²
  const large = tf.tensor2d([[100, 0, 0, 0], [30, 40, 0, 0]]); // ‖·‖ = 100, 50 ≫ c
  await assertClose(pseudoHuber(tiny, zeros, c), [1e-8 / (2 * c), 8e-8 / (2 * c)], { atol: 0, rtol: 1e-4 });
  await assertClose(pseudoHuber(large, zeros, c), [100 - c, 50 - c], { atol: 0, rtol: 1e-6 });
  // Whole-sample, not element-wise: an element-wise Pseudo-Huber of [30, 40] would be 70 − 2c.
  const [, second] = await pseudoHuber(large, zeros, c).data();
  assert(Math.abs(second - (70 - 2 * c)) > 19);
  assertThrows(() => pseudoHuber(tiny, zeros, 0), Error, "c must be > 0");
});

Deno.test("stopGradient: identity forward, zero gradient", async () => {
  const x = tf.tensor1d([1, -2, 3]);
  await assertClose(stopGradient(x), x, { atol: 0, rtol: 0 });
  const g = tf.grad((v: tf.Tensor) => tf.sum(tf.add(tf.mul(v, 2), tf.square(stopGradient(v)))))(x);
  await assertClose(g, [2, 2, 2], { atol: 0, rtol: 0 }); // only the 2v term contributes
});

Deno.test("ctLoss (Eq. 5): equals a hand computation; gradients reach the student only", async () => {
  // F_θ(h, c) = w·h: f(x, σ) = (c_skip + c_out·c_in·w)·x per element.
  const w = tf.variable(tf.scalar(0.8));
  const fLinear = (x: tf.Tensor, s: Float64Array) => consistencyFunction((h) => tf.mul(w, h), x, s);
  const xData = [0.5, -0.25, 1.0, 0.0];
  const zData = [1.0, 2.0, -1.0, 0.5];
  const x = tf.tensor2d(xData, [2, 2]);
  const z = tf.tensor2d(zData, [2, 2]);
  const sigmaLo = new Float64Array([0.5, 2.0]);
  const sigmaHi = new Float64Array([0.8, 3.0]);
  const lambda = new Float64Array([1 / 0.3, 1 / 1.0]);
  const c = 0.01;
  const inputs = {
    student: fLinear,
    teacher: fLinear,
    x,
    z,
    sigmaLo,
    sigmaHi,
    lambda,
    metric: (a: tf.Tensor, b: tf.Tensor) => pseudoHuber(a, b, c),
  };
  // By hand, in float64:
  const gain = (s: number, wv: number) => cSkip(s) + cOut(s) * cIn(s) * wv;
  const lossAt = (wv: number, teacherW: number) => {
    let total = 0;
    for (let b = 0; b < 2; b++) {
      let sq = 0;
      for (let k = 0; k < 2; k++) {
        const xv = xData[2 * b + k];
        const zv = zData[2 * b + k];
        const student = gain(sigmaHi[b], wv) * (xv + sigmaHi[b] * zv);
        const teacher = gain(sigmaLo[b], teacherW) * (xv + sigmaLo[b] * zv);
        sq += (student - teacher) ** 2;
      }
      total += lambda[b] * (Math.sqrt(sq + c * c) - c);
    }
    return total / 2;
  };
  const loss = ctLoss(inputs);
  await assertClose(loss, lossAt(0.8, 0.8), { atol: 1e-6, rtol: 1e-5 });
  // d/dw with the teacher frozen (finite difference in float64 on the student's w only):
  const h = 1e-6;
  const expectedGrad = (lossAt(0.8 + h, 0.8) - lossAt(0.8 - h, 0.8)) / (2 * h);
  const bothGrad = (lossAt(0.8 + h, 0.8 + h) - lossAt(0.8 - h, 0.8 - h)) / (2 * h);
  assert(Math.abs(expectedGrad - bothGrad) > 1e-3, "the test distinguishes stopgrad from none");
  const { grads } = tf.variableGrads(() => ctLoss(inputs), [w]);
  await assertClose(grads[w.name], expectedGrad, { atol: 1e-5, rtol: 1e-4 });
  assertThrows(() => ctLoss({ ...inputs, lambda: new Float64Array([1]) }), Error, "lambda has 1 entries");
  // The teacher's output computed first, outside the tape (how training runs it): same loss, same gradient.
  const fTeacher = teacherOutput(inputs.teacher as ConsistencyFn, inputs.x, inputs.z, inputs.sigmaLo);
  await assertClose(ctLoss({ ...inputs, teacher: fTeacher }), loss, { atol: 0, rtol: 0 });
  const pre = tf.variableGrads(() => ctLoss({ ...inputs, teacher: fTeacher }), [w]);
  await assertClose(pre.grads[w.name], grads[w.name], { atol: 0, rtol: 0 });
  assertThrows(
    () => ctLoss({ ...inputs, teacher: tf.zeros([1, 1]) }),
    Error,
    "teacher output [1,1] does not match",
  );
});

Deno.test("ictMetric: Pseudo-Huber with c from the sample dimension", async () => {
  const x = tf.ones([2, 3, 4, 4]);
  const y = tf.zeros([2, 3, 4, 4]);
  const c = pseudoHuberC(48);
  await assertClose(ictMetric(48)(x, y), [Math.sqrt(48 + c * c) - c, Math.sqrt(48 + c * c) - c], {
    rtol: 1e-6,
  });
});
