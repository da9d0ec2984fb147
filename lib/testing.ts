// Closeness checks for tests and notebooks: tensors, typed arrays, arrays and numbers alike.
import * as tf from "@tensorflow/tfjs";
import { AssertionError } from "node:assert/strict";

export type Numeric = tf.Tensor | ArrayLike<number> | number;

export interface CloseOptions {
  /** Absolute tolerance (default 1e-6). */
  atol?: number;
  /** Relative tolerance, against |expected| (default 1e-6). */
  rtol?: number;
  /** Prefix for the failure message. */
  message?: string;
}

async function toArray(v: Numeric): Promise<{ values: ArrayLike<number>; shape: number[] }> {
  if (typeof v === "number") return { values: [v], shape: [] };
  if (v instanceof tf.Tensor) return { values: (await v.data()) as ArrayLike<number>, shape: v.shape };
  return { values: v, shape: [v.length] };
}

/**
 * Asserts |actual − expected| ≤ atol + rtol·|expected| element-wise (numpy.allclose's rule), with equal
 * shapes for tensors. NaN never passes. The error names the worst element, its values and the max error.
 * Async because tensor data is read with `await data()` (WebGPU cannot read synchronously).
 */
export async function assertClose(
  actual: Numeric,
  expected: Numeric,
  opts: CloseOptions = {},
): Promise<void> {
  const { atol = 1e-6, rtol = 1e-6, message = "assertClose" } = opts;
  const a = await toArray(actual);
  const e = await toArray(expected);
  const bothTensors = actual instanceof tf.Tensor && expected instanceof tf.Tensor;
  if (bothTensors && a.shape.join(",") !== e.shape.join(",")) {
    throw new AssertionError({ message: `${message}: shape [${a.shape}] != expected [${e.shape}]` });
  }
  if (a.values.length !== e.values.length) {
    throw new AssertionError({
      message: `${message}: ${a.values.length} values != expected ${e.values.length}`,
    });
  }
  let worst = -1;
  let worstExcess = 0;
  let maxAbs = 0;
  for (let i = 0; i < a.values.length; i++) {
    const diff = Math.abs(a.values[i] - e.values[i]);
    const allowed = atol + rtol * Math.abs(e.values[i]);
    if (!(diff <= allowed)) { // also catches NaN
      const excess = Number.isNaN(diff) ? Infinity : diff - allowed;
      if (worst < 0 || excess > worstExcess) [worst, worstExcess] = [i, excess];
    }
    if (diff > maxAbs || Number.isNaN(diff)) maxAbs = diff;
  }
  if (worst >= 0) {
    throw new AssertionError({
      message: `${message}: element ${worst} is ${a.values[worst]}, expected ${e.values[worst]} ` +
        `(atol ${atol}, rtol ${rtol}; max |diff| over all ${a.values.length} values: ${maxAbs})`,
    });
  }
}
