// tests/assert.ts must mean what JSR's @std/assert 1.x means, so that mapping "@std/assert" to the real package
// changes no test's outcome. Each case below is one documented behaviour of @std/assert.
import { AssertionError as NodeAssertionError } from "node:assert/strict";
import {
  assert,
  assertAlmostEquals,
  assertEquals,
  assertExists,
  assertFalse,
  assertGreater,
  assertGreaterOrEqual,
  assertInstanceOf,
  AssertionError,
  assertLess,
  assertLessOrEqual,
  assertMatch,
  assertNotEquals,
  assertRejects,
  assertStrictEquals,
  assertStringIncludes,
  assertThrows,
  equal,
  fail,
} from "./assert.ts";

/** Runs `fn`, which must throw the kit's AssertionError; returns its message (checked without the kit's helpers). */
function failure(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (!(e instanceof AssertionError)) throw new Error(`expected an AssertionError, got ${e}`);
    return e.message;
  }
  throw new Error("expected the assertion to fail, it passed");
}

async function failureAsync(fn: () => Promise<unknown>): Promise<string> {
  try {
    await fn();
  } catch (e) {
    if (!(e instanceof AssertionError)) throw new Error(`expected an AssertionError, got ${e}`);
    return e.message;
  }
  throw new Error("expected the assertion to fail, it passed");
}

class Point {
  constructor(public x: number, public y: number) {}
}

Deno.test("equal: primitives — numbers by value (NaN = NaN, 0 = -0), others by identity", () => {
  assert(equal(1, 1) && equal("a", "a") && equal(null, null) && equal(undefined, undefined));
  assert(equal(NaN, NaN), "NaN equals NaN");
  assert(equal(0, -0), "0 equals -0 (unlike node's deepStrictEqual)");
  assertFalse(equal(1, "1"));
  assertFalse(equal(null, undefined));
  assertFalse(equal(1, 1.0000001));
});

Deno.test("equal: objects and arrays deeply, by own enumerable keys; undefined-valued key differs from no key", () => {
  assert(equal({ a: [1, { b: 2 }], c: "x" }, { c: "x", a: [1, { b: 2 }] }));
  assertFalse(equal({ a: [1, { b: 2 }] }, { a: [1, { b: 3 }] }));
  assertFalse(equal([1, 2], [1, 2, 3]));
  assertFalse(equal({ a: undefined }, {}));
  assertFalse(equal({ a: 1 }, { a: 1, b: undefined }));
  assertFalse(equal({ a: undefined, b: 1 }, { c: undefined, b: 1 }), "same count, other keys");
  assert(equal(new Point(1, 2), new Point(1, 2)));
  assertFalse(equal(new Point(1, 2), { x: 1, y: 2 }), "another constructor");
  assert(equal(Object.assign(Object.create(null), { a: 1 }), { a: 1 }), "null prototype = plain object");
});

Deno.test("equal: typed arrays element by element, of the same class only", () => {
  assert(equal(new Float32Array([1, 2, NaN]), new Float32Array([1, 2, NaN])));
  assertFalse(equal(new Float32Array([1, 2, 3]), new Float32Array([1, 2, 4])));
  assertFalse(equal(new Float32Array([1, 2]), new Float32Array([1, 2, 0])));
  assertFalse(equal(new Float32Array([1, 2]), new Float64Array([1, 2])));
  assertFalse(equal(new Int32Array([1, 2]), [1, 2]));
  assert(equal([new Uint8Array([1]), new Uint8Array([2])], [new Uint8Array([1]), new Uint8Array([2])]));
});

Deno.test("equal: Map, Set by content (object keys deeply), Date by time, RegExp by text, cycles", () => {
  assert(equal(new Map([["a", [1]], ["b", [2]]]), new Map([["b", [2]], ["a", [1]]])));
  assertFalse(equal(new Map([["a", 1]]), new Map([["a", 2]])));
  assertFalse(equal(new Map([["a", 1]]), new Map([["b", 1]])));
  assert(equal(new Set([{ k: 1 }, { k: 2 }]), new Set([{ k: 2 }, { k: 1 }])));
  assertFalse(equal(new Set([1, 2]), new Set([1, 3])));
  assertFalse(equal(new Set([1]), new Map([[1, 1]])));
  assert(equal(new Date(5), new Date(5)));
  assertFalse(equal(new Date(5), new Date(6)));
  assert(equal(/a.b/g, /a.b/g));
  assertFalse(equal(/a/g, /a/i));
  const a: Record<string, unknown> = { v: 1 };
  a.self = a;
  const b: Record<string, unknown> = { v: 1 };
  b.self = b;
  assert(equal(a, b));
});

Deno.test("assertEquals / assertNotEquals use that deep equality; the failure shows both values", () => {
  assertEquals({ a: [1, 2] }, { a: [1, 2] });
  assertEquals(new Float64Array([0.5, -0]), new Float64Array([0.5, 0]));
  const message = failure(() => assertEquals({ a: [1, 2] }, { a: [1, 3] }, "the case"));
  assertMatch(message, /^Values are not equal: the case\n/);
  assertMatch(message, /3/);
  assertNotEquals([1, 2], [1, 3]);
  assertMatch(failure(() => assertNotEquals([1, 2], [1, 2], "why")), /not to be.*: why$/s);
});

Deno.test("assertStrictEquals is identity (Object.is), not deep equality", () => {
  const o = { a: 1 };
  assertStrictEquals(o, o);
  assertStrictEquals(NaN, NaN);
  failure(() => assertStrictEquals({ a: 1 }, { a: 1 }));
  failure(() => assertStrictEquals(0, -0));
});

Deno.test("assertAlmostEquals: default tolerance is 1e-7 relative to expected, as in @std/assert 1.x", () => {
  assertAlmostEquals(1.000000001e-8, 1.000000002e-8);
  failure(() => assertAlmostEquals(1e-8, 1e-9)); // an absolute 1e-7 would let this pass
  assertAlmostEquals(1e9 + 50, 1e9); // tolerance 100
  failure(() => assertAlmostEquals(1e9 + 150, 1e9));
  assertAlmostEquals(1 + 0.9e-7, 1);
  failure(() => assertAlmostEquals(1 + 1.1e-7, 1));
  failure(() => assertAlmostEquals(1e-12, 0)); // expected 0: tolerance 0
  assertAlmostEquals(NaN, NaN);
  assertAlmostEquals(Infinity, Infinity);
  failure(() => assertAlmostEquals(Infinity, -Infinity));
});

Deno.test("assertAlmostEquals: an explicit tolerance is absolute, and the bound is inclusive", () => {
  assertAlmostEquals(0.01, 0.02, 0.1);
  assertAlmostEquals(0.1 + 0.2, 0.3, 1e-16);
  failure(() => assertAlmostEquals(0.1 + 0.2, 0.3, 1e-17));
  assertAlmostEquals(1.5, 1, 0.5);
  assertMatch(failure(() => assertAlmostEquals(2, 1, 0.5, "what")), /to be close to "1".*: what$/);
});

Deno.test("assert, assertFalse, assertExists, fail", () => {
  assert(1);
  assertEquals(failure(() => assert(0, "zero")), "zero");
  assertFalse("");
  failure(() => assertFalse("x"));
  assertExists(0);
  assertExists("");
  failure(() => assertExists(null));
  failure(() => assertExists(undefined));
  assertEquals(failure(() => fail("why")), "Failed assertion: why");
});

Deno.test("assertMatch takes a RegExp; assertStringIncludes a substring", () => {
  assertMatch("error: bad flag --x", /bad flag --\w/);
  failure(() => assertMatch("abc", /^b/));
  assertStringIncludes("a.c", "a.c");
  failure(() => assertStringIncludes("abc", "a.c"));
});

Deno.test("assertGreater / OrEqual / assertLess / OrEqual: strict and non-strict bounds", () => {
  assertGreater(2, 1);
  failure(() => assertGreater(1, 1));
  assertGreaterOrEqual(1, 1);
  failure(() => assertGreaterOrEqual(0, 1));
  assertLess(1, 2);
  failure(() => assertLess(2, 2));
  assertLessOrEqual(2, 2);
  failure(() => assertLessOrEqual(3, 2));
  failure(() => assertGreater(NaN, 0));
});

Deno.test("assertInstanceOf", () => {
  assertInstanceOf(new RangeError("x"), Error);
  assertMatch(failure(() => assertInstanceOf(new Error("x"), RangeError)), /"RangeError" but was "Error"/);
  failure(() => assertInstanceOf(null, Error));
});

Deno.test("assertThrows returns the error; checks its class and a message SUBSTRING, not a pattern", () => {
  const e = assertThrows(
    () => {
      throw new RangeError("n must be 1..4, got 7");
    },
    RangeError,
    "got 7",
  );
  assertEquals(e.message, "n must be 1..4, got 7");
  assertThrows(() => {
    throw new RangeError("x");
  }, Error); // a subclass is an instance of Error
  assertMatch(
    failure(() =>
      assertThrows(() => {
        throw new Error("x");
      }, RangeError)
    ),
    /instance of "RangeError", but was "Error"/,
  );
  failure(() =>
    assertThrows(
      () => {
        throw new Error("abc");
      },
      Error,
      "a.c",
    )
  );
  assertMatch(failure(() => assertThrows(() => 1, Error, undefined, "the case")), /to throw: the case$/);
  assertEquals(failure(() => assertThrows(() => 1, "why")), "Expected function to throw: why");
  assertEquals(
    assertThrows(() => {
      throw "a string";
    }),
    "a string",
  );
  failure(() =>
    assertThrows(() => {
      throw "a string";
    }, Error)
  );
});

Deno.test("assertRejects needs a function returning a promise; checks class and message substring", async () => {
  const e = await assertRejects(() => Promise.reject(new TypeError("bad input: x")), TypeError, "input");
  assertEquals(e.message, "bad input: x");
  await assertRejects(async () => {
    await Promise.resolve();
    throw new Error("later");
  });
  assertMatch(
    await failureAsync(() => assertRejects(() => Promise.reject(new Error("x")), RangeError)),
    /instance of "RangeError"/,
  );
  assertMatch(
    await failureAsync(() => assertRejects(() => Promise.reject(new Error("abc")), Error, "a.c")),
    /to include "a.c"/,
  );
  assertEquals(
    await failureAsync(() => assertRejects(() => Promise.resolve(1))),
    "Expected function to reject.",
  );
  assertEquals(
    await failureAsync(() =>
      assertRejects(() => {
        throw new Error("sync");
      })
    ),
    "Function throws when expected to reject.",
  );
});

Deno.test("AssertionError is node's AssertionError too, named AssertionError", () => {
  const e = new AssertionError("m");
  assert(e instanceof NodeAssertionError);
  assertEquals([e.name, e.message], ["AssertionError", "m"]);
});
