// The assertions the tests use, under the names and with the meanings of JSR's `@std/assert` (1.x), built on
// `node:assert/strict` because JSR cannot be reached from the machines that build and test the kit.
// deno.json maps "@std/assert" here; where JSR is reachable, `"@std/assert": "jsr:@std/assert@1"` in deno.json
// switches the tests to the real package with no other change. tests/assert_test.ts checks the meanings.
import nodeAssert from "node:assert/strict";

/** Thrown by every assertion here; also an instance of node's AssertionError. */
export class AssertionError extends nodeAssert.AssertionError {
  constructor(message: string) {
    super({ message });
    this.name = "AssertionError";
  }
}

// deno-lint-ignore no-explicit-any
type ErrorClass<E extends Error> = abstract new (...args: any[]) => E;

function suffix(msg?: string): string {
  return msg ? `: ${msg}` : ".";
}

function show(v: unknown): string {
  return Deno.inspect(v, {
    depth: Infinity,
    sorted: true,
    trailingComma: true,
    compact: false,
    iterableLimit: 200,
  });
}

function sameConstructor(a: object, b: object): boolean {
  return a.constructor === b.constructor ||
    (a.constructor === Object && !b.constructor) ||
    (!a.constructor && b.constructor === Object);
}

/**
 * @std/assert's deep equality: numbers by value (NaN equals NaN, 0 equals -0), other primitives by
 * Object.is; objects of the same constructor with equal own enumerable keys and values (typed arrays element
 * by element), Maps and Sets by content, Dates by time, RegExps and URLs by their text, cycles allowed.
 * Errors and ArrayBuffers carry no own enumerable keys, so, as in @std/assert, they compare equal to any other
 * of the same class: compare their messages or byte views instead.
 */
export function equal(c: unknown, d: unknown): boolean {
  const seen = new Map<object, object>();
  const compare = (a: unknown, b: unknown): boolean => {
    if (typeof a === "number" && typeof b === "number") {
      return a === b || (Number.isNaN(a) && Number.isNaN(b));
    }
    if (Object.is(a, b)) return true;
    if (!a || !b || typeof a !== "object" || typeof b !== "object") return false;
    if ((a instanceof RegExp && b instanceof RegExp) || (a instanceof URL && b instanceof URL)) {
      return String(a) === String(b);
    }
    if (a instanceof Date && b instanceof Date) {
      const [x, y] = [a.getTime(), b.getTime()];
      return x === y || (Number.isNaN(x) && Number.isNaN(y));
    }
    if (!sameConstructor(a, b)) return false;
    if (a instanceof WeakMap || a instanceof WeakSet) {
      throw new TypeError(`cannot compare ${a.constructor.name}s`);
    }
    if (a instanceof WeakRef && b instanceof WeakRef) return compare(a.deref(), b.deref());
    if (seen.get(a) === b) return true;
    if (ArrayBuffer.isView(a) && ArrayBuffer.isView(b) && !(a instanceof DataView)) {
      // Same meaning as the key-by-key walk below (a typed array's own keys are its indices), without
      // building an object of every index.
      const [x, y] = [a as unknown as ArrayLike<unknown>, b as unknown as ArrayLike<unknown>];
      if (x.length !== y.length) return false;
      for (let i = 0; i < x.length; i++) if (!compare(x[i], y[i])) return false;
      return true;
    }
    if (Object.keys(a).length !== Object.keys(b).length) return false;
    seen.set(a, b);
    if ((a instanceof Map && b instanceof Map) || (a instanceof Set && b instanceof Set)) {
      if (a.size !== b.size) return false;
      const bEntries = [...b.entries()];
      for (const [k, v] of a.entries()) {
        const direct = b.has(k) && compare(v, a instanceof Map ? (b as Map<unknown, unknown>).get(k) : k);
        if (!direct && !bEntries.some(([bk, bv]) => compare(k, bk) && compare(v, bv))) return false;
      }
      return true;
    }
    const ra = a as Record<PropertyKey, unknown>;
    const rb = b as Record<PropertyKey, unknown>;
    const merged = { ...ra, ...rb };
    for (const key of [...Object.getOwnPropertyNames(merged), ...Object.getOwnPropertySymbols(merged)]) {
      if (!compare(ra[key], rb[key])) return false;
      if ((key in ra) !== (key in rb)) return false;
    }
    return true;
  };
  return compare(c, d);
}

/** Asserts that `expr` is truthy. */
export function assert(expr: unknown, msg = ""): asserts expr {
  if (!expr) throw new AssertionError(msg);
}

/** Asserts that `expr` is falsy. */
export function assertFalse(expr: unknown, msg = ""): asserts expr is false | 0 | "" | null | undefined {
  if (expr) throw new AssertionError(msg);
}

/** Asserts deep equality (see {@linkcode equal}); the error shows both values as node's assert does. */
export function assertEquals<T>(actual: T, expected: T, msg?: string): void {
  if (equal(actual, expected)) return;
  let diff = "";
  try {
    nodeAssert.deepStrictEqual(actual, expected);
  } catch (e) {
    diff = (e as Error).message; // node's diff; empty where node's stricter rules find no difference
  }
  if (!diff.includes("\n")) diff = `actual:   ${show(actual)}\nexpected: ${show(expected)}`;
  throw new AssertionError(`Values are not equal${suffix(msg)}\n${diff}`);
}

/** Asserts that the values are not deeply equal (see {@linkcode equal}). */
export function assertNotEquals<T>(actual: T, expected: T, msg?: string): void {
  if (!equal(actual, expected)) return;
  throw new AssertionError(`Expected actual: ${show(actual)} not to be: ${show(expected)}${suffix(msg)}`);
}

/** Asserts `Object.is(actual, expected)`: the same primitive or the same object. */
export function assertStrictEquals<T>(actual: unknown, expected: T, msg?: string): asserts actual is T {
  if (Object.is(actual, expected)) return;
  throw new AssertionError(
    `Values are not strictly equal${suffix(msg)}\nactual:   ${show(actual)}\nexpected: ${show(expected)}`,
  );
}

/**
 * Asserts |actual − expected| ≤ tolerance. As in @std/assert 1.x the default tolerance is relative:
 * 1e-7·|expected| (1e-7 when expected is not finite). Identical values (Object.is) always pass.
 */
export function assertAlmostEquals(actual: number, expected: number, tolerance?: number, msg?: string): void {
  if (Object.is(actual, expected)) return;
  const delta = Math.abs(expected - actual);
  const tol = tolerance ?? (Number.isFinite(expected) ? Math.abs(expected * 1e-7) : 1e-7);
  if (delta <= tol) return;
  throw new AssertionError(
    `Expected actual: "${actual}" to be close to "${expected}": delta "${delta}" is greater than "${tol}"${
      suffix(msg)
    }`,
  );
}

/** Asserts that the string matches the regular expression. */
export function assertMatch(actual: string, expected: RegExp, msg?: string): void {
  if (expected.test(actual)) return;
  throw new AssertionError(`Expected actual: "${actual}" to match: "${expected}"${suffix(msg)}`);
}

/** Asserts that `actual` contains the substring `expected`. */
export function assertStringIncludes(actual: string, expected: string, msg?: string): void {
  if (actual.includes(expected)) return;
  throw new AssertionError(`Expected actual: "${actual}" to contain: "${expected}"${suffix(msg)}`);
}

/** Asserts `actual > expected`. */
export function assertGreater<T>(actual: T, expected: T, msg?: string): void {
  if (actual > expected) return;
  throw new AssertionError(msg ?? `Expect ${show(actual)} > ${show(expected)}`);
}

/** Asserts `actual >= expected`. */
export function assertGreaterOrEqual<T>(actual: T, expected: T, msg?: string): void {
  if (actual >= expected) return;
  throw new AssertionError(msg ?? `Expect ${show(actual)} >= ${show(expected)}`);
}

/** Asserts `actual < expected`. */
export function assertLess<T>(actual: T, expected: T, msg?: string): void {
  if (actual < expected) return;
  throw new AssertionError(msg ?? `Expect ${show(actual)} < ${show(expected)}`);
}

/** Asserts `actual <= expected`. */
export function assertLessOrEqual<T>(actual: T, expected: T, msg?: string): void {
  if (actual <= expected) return;
  throw new AssertionError(msg ?? `Expect ${show(actual)} <= ${show(expected)}`);
}

/** Asserts that `actual` is an instance of `expectedType`. */
// deno-lint-ignore no-explicit-any
export function assertInstanceOf<T extends abstract new (...args: any) => any>(
  actual: unknown,
  expectedType: T,
  msg = "",
): asserts actual is InstanceType<T> {
  if (actual instanceof expectedType) return;
  const got = actual === null
    ? "null"
    : typeof actual === "object"
    ? actual.constructor?.name
    : typeof actual;
  throw new AssertionError(
    msg || `Expected object to be an instance of "${expectedType.name}" but was "${got}".`,
  );
}

/** Asserts that `actual` is neither null nor undefined. */
export function assertExists<T>(actual: T, msg?: string): asserts actual is NonNullable<T> {
  if (actual !== undefined && actual !== null) return;
  throw new AssertionError(msg ?? `Expected actual: "${actual}" to not be null or undefined.`);
}

/** Always throws. */
export function fail(msg?: string): never {
  throw new AssertionError(`Failed assertion${suffix(msg)}`);
}

function checkError<E extends Error>(
  error: unknown,
  what: string,
  Class?: ErrorClass<E>,
  msgIncludes?: string,
  msg?: string,
): void {
  if (!Class) return;
  if (!(error instanceof Error)) throw new AssertionError(`A non-Error object was ${what}${suffix(msg)}`);
  if (!(error instanceof Class)) {
    throw new AssertionError(
      `Expected error to be instance of "${Class.name}", but was "${error.constructor?.name}"${suffix(msg)}`,
    );
  }
  if (msgIncludes && !error.message.includes(msgIncludes)) {
    throw new AssertionError(
      `Expected error message to include ${JSON.stringify(msgIncludes)}, but got ${
        JSON.stringify(error.message)
      }${suffix(msg)}`,
    );
  }
}

function isErrorClass(v: unknown): v is ErrorClass<Error> {
  return typeof v === "function" && (v.prototype instanceof Error || v.prototype === Error.prototype);
}

/** Calls `fn` and asserts that it throws; returns what it threw. */
export function assertThrows(fn: () => unknown, msg?: string): unknown;
/**
 * Calls `fn` and asserts that it throws an instance of `ErrorClass` whose message contains the SUBSTRING
 * `msgIncludes` (not a pattern: for one, assertMatch the returned error's message); returns the error.
 */
export function assertThrows<E extends Error = Error>(
  fn: () => unknown,
  ErrorClass: ErrorClass<E>,
  msgIncludes?: string,
  msg?: string,
): E;
export function assertThrows<E extends Error = Error>(
  fn: () => unknown,
  classOrMsg?: ErrorClass<E> | string,
  msgIncludesOrMsg?: string,
  msg?: string,
): unknown {
  let Class: ErrorClass<E> | undefined;
  let msgIncludes: string | undefined;
  if (typeof classOrMsg === "string") msg = classOrMsg;
  else if (isErrorClass(classOrMsg)) [Class, msgIncludes] = [classOrMsg as ErrorClass<E>, msgIncludesOrMsg];
  else msg = msgIncludesOrMsg;
  try {
    fn();
  } catch (error) {
    checkError(error, "thrown", Class, msgIncludes, msg);
    return error;
  }
  throw new AssertionError(`Expected function to throw${suffix(msg)}`);
}

/** Calls `fn`, which must return a promise, and asserts that the promise rejects; returns the reason. */
export function assertRejects(fn: () => PromiseLike<unknown>, msg?: string): Promise<unknown>;
/**
 * Calls `fn`, which must return a promise, and asserts that it rejects with an instance of `ErrorClass` whose
 * message contains the SUBSTRING `msgIncludes`; returns the error.
 */
export function assertRejects<E extends Error = Error>(
  fn: () => PromiseLike<unknown>,
  ErrorClass: ErrorClass<E>,
  msgIncludes?: string,
  msg?: string,
): Promise<E>;
export async function assertRejects<E extends Error = Error>(
  fn: () => PromiseLike<unknown>,
  classOrMsg?: ErrorClass<E> | string,
  msgIncludesOrMsg?: string,
  msg?: string,
): Promise<unknown> {
  let Class: ErrorClass<E> | undefined;
  let msgIncludes: string | undefined;
  if (typeof classOrMsg === "string") msg = classOrMsg;
  else if (isErrorClass(classOrMsg)) [Class, msgIncludes] = [classOrMsg as ErrorClass<E>, msgIncludesOrMsg];
  let promise: unknown;
  try {
    promise = fn();
  } catch {
    throw new AssertionError(`Function throws when expected to reject${suffix(msg)}`);
  }
  if (!promise || typeof (promise as PromiseLike<unknown>).then !== "function") {
    throw new AssertionError(`Function throws when expected to reject${suffix(msg)}`);
  }
  try {
    await promise;
  } catch (error) {
    checkError(error, "rejected", Class, msgIncludes, msg);
    return error;
  }
  throw new AssertionError(`Expected function to reject${suffix(msg)}`);
}
