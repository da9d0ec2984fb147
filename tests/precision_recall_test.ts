// Improved precision and recall (lib/metrics/precision_recall.ts): hand-computed radii and memberships with
// ties and duplicates, numpy/scipy values on random features (tests/reference/precision_recall_reference.py),
// the Gram path (float32 Gram + certified recheck) against the host path, and `deno task fid --pr`.
import * as tf from "@tensorflow/tfjs";
import "@tensorflow/tfjs-backend-wasm";
import {
  assert,
  assertAlmostEquals,
  assertEquals,
  assertMatch,
  assertNotEquals,
  assertThrows,
} from "@std/assert";
import { readNpz } from "../lib/io/npz.ts";
import { squaredDistance, squaredDistances } from "../lib/linalg.ts";
import {
  type GramKernel,
  manifoldRadii,
  precisionRecall,
  type PrecisionRecallOptions,
  tfGramKernel,
} from "../lib/metrics/precision_recall.ts";
import { runTaskScript } from "./task_runner.ts";

// Single-threaded wasm, as tests/inception_test.ts does.
assert(await tf.setBackend("wasm"));
await tf.ready();

const f32 = (rows: number[][]) => Float32Array.from(rows.flat());

function pr(real: number[][], fake: number[][], opts: PrecisionRecallOptions = {}) {
  return precisionRecall(f32(real), real.length, f32(fake), fake.length, real[0].length, opts);
}

const col = (xs: number[]) => xs.map((x) => [x]);

Deno.test("hand-computed 1-D, k = 1: radii exclude the point itself, and a point on a sphere is inside (≤)", () => {
  // Real 0, 2, 3, 7: nearest others 2, 3, 2, 3 → squared radii 4, 1, 1, 16.
  const real = col([0, 2, 3, 7]);
  assertEquals([...manifoldRadii(f32(real), 4, 1, { k: 1 })], [4, 1, 1, 16]);
  // Generated −2 (4 from 0: on its sphere), 4.5 (6.25 from 7 < 16), 11 (16 from 7: on its sphere), 12 (25 > 16).
  // Generated radii: −2: 4.5 at 6.5 → 42.25; 4.5: −2 and 11 both at 6.5 → 42.25; 11 and 12: each other → 1.
  const fake = col([-2, 4.5, 11, 12]);
  assertEquals([...manifoldRadii(f32(fake), 4, 1, { k: 1 })], [42.25, 42.25, 1, 1]);
  // Real in the generated manifold: 0 (4 from −2), 2 (6.25 from 4.5), 3 (2.25 from 4.5), 7 (6.25 from 4.5).
  const r = pr(real, fake, { k: 1 });
  assertEquals([r.fakeInReal, r.realInFake, r.precision, r.recall], [3, 4, 0.75, 1]);
  assertEquals([r.k, r.realCount, r.fakeCount, r.pairs, r.rechecked], [1, 4, 4, 48, 0]);
});

Deno.test("hand-computed duplicates: a duplicate is a neighbour at distance 0 (self excluded once, not every 0)", () => {
  // Real 0, 0, 5, 5, 5. k = 1: every point has a duplicate → all radii 0.
  const real = col([0, 0, 5, 5, 5]);
  assertEquals([...manifoldRadii(f32(real), 5, 1, { k: 1 })], [0, 0, 0, 0, 0]);
  // k = 2: rows of 0 are [0 (self), 0, 25, 25, 25] → 25; rows of 5 are [0, 0, 0, 25, 25] → 0.
  assertEquals([...manifoldRadii(f32(real), 5, 1, { k: 2 })], [25, 25, 0, 0, 0]);
  // Generated 0, 5, 1, 1: with k = 1 only the exact copies are inside (radius 0, distance 0 ≤ 0); with k = 2,
  // each 1 is 1 ≤ 25 from 0 as well.
  const fake = col([0, 5, 1, 1]);
  assertEquals(pr(real, fake, { k: 1 }).fakeInReal, 2);
  assertEquals(pr(real, fake, { k: 2 }).fakeInReal, 4);
});

Deno.test("hand-computed 2-D, k = 3: a square's corners and centre, ties at the radius", () => {
  // Corner rows (others): centre 2, two sides 4, diagonal 8 → 3rd = 4. Centre: four corners at 2 → 2.
  const real = [[0, 0], [2, 0], [0, 2], [2, 2], [1, 1]];
  assertEquals([...manifoldRadii(f32(real), 5, 2)], [4, 4, 4, 4, 2]);
  // (1, 3): 2 from (0, 2) → in; (4, 0): 4 from (2, 0) → in only by ≤; (4, 4): 8 from (2, 2), 18 from (1, 1)
  // → out; (−1, −1): 2 from (0, 0) → in; (5, 1): 10 from (2, 0) and (2, 2) → out.
  const fake = [[1, 3], [4, 0], [4, 4], [-1, -1], [5, 1]];
  const r = pr(real, fake);
  assertEquals([r.fakeInReal, r.precision], [3, 0.6]);
  // Generated radii (3rd nearest other): (1,3): 10 (4,4), 18 (4,0), 20 (−1,−1), 20 (5,1) → 20;
  // (4,0): 2 (5,1), 16 (4,4), 18 (1,3) → 18; (4,4): 10 (1,3), 10 (5,1), 16 (4,0) → 16;
  // (−1,−1): 20 (1,3), 26 (4,0), 40 (5,1) → 40; (5,1): 2 (4,0), 10 (4,4), 20 (1,3) → 20.
  assertEquals([...manifoldRadii(f32(fake), 5, 2)], [20, 18, 16, 40, 20]);
  // Every real point is within 20 of (1, 3) (at most 1 + 9 = 10 away) → recall 1.
  assertEquals([r.realInFake, r.recall], [5, 1]);
});

Deno.test("hand-computed precision 1, recall 0: a tight generated cluster inside one real sphere", () => {
  // Real 0, 10, 20, 30, 40 (k = 3 radii 900, 400, 400, 400, 900); generated 1, 1.25, 1.5, 1.75 (radii
  // 0.5625, 0.25, 0.25, 0.5625): all generated within 3.1 of real 0, no real point within 0.57 of them.
  const real = col([0, 10, 20, 30, 40]), fake = col([1, 1.25, 1.5, 1.75]);
  assertEquals([...manifoldRadii(f32(real), 5, 1)], [900, 400, 400, 400, 900]);
  assertEquals([...manifoldRadii(f32(fake), 4, 1)], [0.5625, 0.25, 0.25, 0.5625]);
  const r = pr(real, fake);
  assertEquals([r.precision, r.recall, r.fakeInReal, r.realInFake], [1, 0, 4, 0]);
  // Swapping the roles swaps the numbers.
  const s = pr(fake, real);
  assertEquals([s.precision, s.recall], [0, 1]);
  // A set against itself: every point is in its own sphere.
  const self = pr(real, real);
  assertEquals([self.precision, self.recall], [1, 1]);
});

// ---------------------------------------------------------------------------------------------------------
// numpy/scipy reference.

const fixture = readNpz(new URL("./fixtures/precision_recall/reference.npz", import.meta.url).pathname);
const get = (key: string) => {
  const a = fixture.get(key);
  if (!a) {
    throw new Error(`reference.npz has no ${key}: re-run tests/reference/precision_recall_reference.py`);
  }
  return a;
};

/** The reference script's hash_features: uint32 hash of (seed, row, col) → float32 in [0, 1). */
function hashFeatures(n: number, dim: number, seed: number): Float32Array {
  const out = new Float32Array(n * dim);
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < dim; k++) {
      // (i·2654435761 + k·40503 + seed·97) mod 2³², with exact products (i·2654435761 < 2⁵³ for i < 2²¹).
      let h = ((i * 2654435761) % 2 ** 32 + k * 40503 + seed * 97) % 2 ** 32;
      h = (h ^ (h >>> 16)) >>> 0;
      h = Math.imul(h, 0x45d9f3b) >>> 0;
      h = (h ^ (h >>> 16)) >>> 0;
      h = Math.imul(h, 0x45d9f3b) >>> 0;
      h = (h ^ (h >>> 16)) >>> 0;
      out[i * dim + k] = h / 2 ** 32;
    }
  }
  return out;
}

function referenceCase(
  name: string,
): { real: Float32Array; fake: Float32Array; n: number; m: number; dim: number } {
  if (name === "hash") {
    const real = hashFeatures(200, 2048, 1), fake = hashFeatures(150, 2048, 2);
    for (let q = 0; q < fake.length; q++) fake[q] = Math.fround(Math.fround(0.02) + fake[q]); // float32 addition, as numpy's
    return { real, fake, n: 200, m: 150, dim: 2048 };
  }
  const real = get(`${name}_real`), fake = get(`${name}_fake`);
  return {
    real: real.data as Float32Array,
    fake: fake.data as Float32Array,
    n: real.shape[0],
    m: fake.shape[0],
    dim: real.shape[1],
  };
}

/** Our radii and memberships equal scipy's: flags and counts exactly, radii to float64 round-off. */
function checkAgainstReference(name: string, opts: PrecisionRecallOptions) {
  const { real, fake, n, m, dim } = referenceCase(name);
  for (const [set, x, count] of [["real", real, n], ["fake", fake, m]] as const) {
    const want = get(`${name}_radii_${set}`).data as Float64Array;
    const got = manifoldRadii(x, count, dim, opts);
    for (let i = 0; i < count; i++) {
      assertAlmostEquals(got[i], want[i], 1e-12 * want[i], `${name} ${set} ${i}`);
    }
  }
  const r = precisionRecall(real, n, fake, m, dim, opts);
  const fakeIn = get(`${name}_fake_in_real`).data as Uint8Array;
  const realIn = get(`${name}_real_in_fake`).data as Uint8Array;
  const sum = (a: Uint8Array) => a.reduce((s, v) => s + v, 0);
  assertEquals([r.fakeInReal, r.realInFake], [sum(fakeIn), sum(realIn)], name);
  assertEquals([r.precision, r.recall], [sum(fakeIn) / m, sum(realIn) / n]);
  return r;
}

Deno.test("against numpy/scipy (cdist): Gaussian 64-d, grid with ties and duplicates, uniform 2048-d", () => {
  for (const name of ["gauss", "grid", "hash"]) checkAgainstReference(name, {});
  // The grid's distances are small integers: exact in any summation order, so the radii are equal bit for bit.
  const { real, n, dim } = referenceCase("grid");
  assertEquals([...manifoldRadii(real, n, dim)], [...(get("grid_radii_real").data as Float64Array)]);
});

Deno.test("batching: blocks of any shape give the same radii and counts as one block", () => {
  for (const name of ["gauss", "grid"]) {
    const one = checkAgainstReference(name, { rowBlock: 1000, colBlock: 1000 });
    for (const [rowBlock, colBlock] of [[1, 1], [7, 13], [64, 3]]) {
      const r = checkAgainstReference(name, { rowBlock, colBlock });
      assertEquals([r.fakeInReal, r.realInFake], [one.fakeInReal, one.realInFake]);
    }
  }
});

/** A Gram kernel that errs by up to 90% of its claimed bound, with signs from a hash: the rechecks must fix it. */
function noisyKernel(relBound: number): GramKernel {
  return {
    name: "noisy float64",
    relBound,
    gram(a, ra, b, rb, dim) {
      const g = new Float32Array(ra * rb);
      for (let i = 0; i < ra; i++) {
        for (let j = 0; j < rb; j++) {
          let s = 0, abs = 0;
          for (let k = 0; k < dim; k++) {
            s += a[i * dim + k] * b[j * dim + k], abs += Math.abs(a[i * dim + k] * b[j * dim + k]);
          }
          const sign = ((Math.imul(i + 1, 0x9e3779b1) ^ Math.imul(j + 7, 0x85ebca6b)) >>> 0) % 3 - 1;
          // Float32 rounding adds at most 2⁻²⁴|g|, which the 10% margin covers (|g| ≤ abs).
          g[i * rb + j] = s + 0.9 * sign * relBound * abs;
        }
      }
      return g;
    },
  };
}

Deno.test("Gram path: a kernel erring by up to its bound, and TF.js's float32 matMul, give the host path's counts", () => {
  for (const name of ["gauss", "grid"]) {
    const r = checkAgainstReference(name, { gram: noisyKernel(1e-3), rowBlock: 16, colBlock: 24 });
    assert(r.rechecked > 0, `${name}: the noisy kernel's band holds no pair?`);
    const { dim } = referenceCase(name);
    checkAgainstReference(name, { gram: tfGramKernel(dim, false), rowBlock: 32, colBlock: 48 });
    checkAgainstReference(name, { gram: tfGramKernel(dim, true) });
  }
  const r = checkAgainstReference("hash", { gram: tfGramKernel(2048, false) });
  assert(r.rechecked < r.pairs, `${r.rechecked} of ${r.pairs} rechecked`);
});

Deno.test("squaredDistances: k-order sums (bit for bit as squaredDistance), symmetric, duplicates 0, strided out", () => {
  const dim = 37, ra = 5, rb = 7;
  const a = Float64Array.from({ length: ra * dim }, (_, q) => Math.sin(q * 1.7) * 3);
  const b = Float64Array.from({ length: rb * dim }, (_, q) => Math.cos(q * 0.3) * 2);
  b.set(a.subarray(2 * dim, 3 * dim), 4 * dim); // b row 4 = a row 2
  const ldo = 9, out = new Float64Array(ra * ldo).fill(-1);
  squaredDistances(a, ra, b, rb, dim, out, ldo);
  const back = new Float64Array(rb * ra);
  squaredDistances(b, rb, a, ra, dim, back, ra);
  for (let i = 0; i < ra; i++) {
    for (let j = 0; j < rb; j++) {
      const want = squaredDistance(a, i * dim, b, j * dim, dim);
      assertEquals(out[i * ldo + j], want);
      assertEquals(back[j * ra + i], want);
      let direct = 0;
      for (let k = 0; k < dim; k++) direct += (a[i * dim + k] - b[j * dim + k]) ** 2;
      assertAlmostEquals(want, direct, 1e-12 * direct);
    }
    assertEquals([out[i * ldo + 7], out[i * ldo + 8]], [-1, -1]); // stride padding untouched
  }
  assertEquals(out[2 * ldo + 4], 0);
  assertThrows(() => squaredDistances(a, ra, b, rb, dim, new Float64Array(10), rb), Error, "does not fit");
});

Deno.test("errors: fewer than k + 1 points, non-finite features, shapes", () => {
  assertThrows(
    () => pr(col([0, 1, 2]), col([0, 1, 2, 3])),
    Error,
    "real set has 3 features; a k = 3 radius needs at least 4",
  );
  assertThrows(() => pr(col([0, 1, 2, 3]), col([0, 1])), Error, "generated set has 2 features");
  assertThrows(() => pr(col([0, 1, NaN, 3]), col([0, 1, 2, 3])), Error, "real row 2, feature 0 is NaN");
  assertThrows(
    () => precisionRecall(new Float32Array(7), 4, new Float32Array(8), 4, 2),
    Error,
    "is not [4, 2]",
  );
  assertThrows(() => pr(col([0, 1]), col([0, 1]), { k: 0 }), Error, "k must be a positive integer");
});

// ---------------------------------------------------------------------------------------------------------
// The task.

const fidTask = (args: string[]) =>
  runTaskScript("fid.ts", args, { ICT_BACKEND: "wasm", ICT_WASM_THREADS: "1" });

Deno.test("fid:ref --pr keeps the features; fid --pr writes precision and recall into the record", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ict-pr-test-" });
  const common = ["--weights", "standin", "--batch", "6"];
  const ref = await fidTask([
    "ref",
    "--data",
    "mnist",
    "--split",
    "test",
    "--n",
    "6",
    "--pr",
    "--out",
    `${dir}/ref.npz`,
    ...common,
  ]);
  assertEquals(ref.code, 0, ref.text.slice(-2000));
  const arrays = readNpz(`${dir}/ref.npz`);
  assertEquals(arrays.get("features")!.shape, [6, 2048]);
  assertEquals(arrays.get("features")!.dtype, "float32");
  // The same 6 images against themselves: every feature lies in its own sphere.
  const same = await fidTask(
    [
      "score",
      "--samples",
      "mnist:test",
      "--n",
      "6",
      "--ref",
      `${dir}/ref.npz`,
      "--pr",
      "--out",
      `${dir}/same.json`,
      ...common,
    ],
  );
  assertEquals(same.code, 0, same.text.slice(-2000));
  const record = JSON.parse(await Deno.readTextFile(`${dir}/same.json`));
  assertEquals(record.precisionRecall.precision, 1);
  assertEquals(record.precisionRecall.recall, 1);
  assertEquals(
    [record.precisionRecall.k, record.precisionRecall.realCount, record.precisionRecall.fakeCount],
    [3, 6, 6],
  );
  assertMatch(same.text, /precision 1\.0000 {2}recall 1\.0000/);
  assertMatch(record.caveat, /NOT an FID/);
  // Other images: numbers in [0, 1], with the counts they come from.
  const other = await fidTask(
    [
      "score",
      "--samples",
      "mnist:train",
      "--n",
      "8",
      "--ref",
      `${dir}/ref.npz`,
      "--pr",
      "--out",
      `${dir}/other.json`,
      ...common,
    ],
  );
  assertEquals(other.code, 0, other.text.slice(-2000));
  const p = JSON.parse(await Deno.readTextFile(`${dir}/other.json`)).precisionRecall;
  assertEquals(p.fakeCount, 8);
  assertEquals(p.precision, p.fakeInReal / 8);
  assertEquals(p.recall, p.realInFake / 6);
  // Statistics written without --pr hold no features: a clear error naming the command to re-run.
  const plain = await fidTask([
    "ref",
    "--data",
    "mnist",
    "--split",
    "test",
    "--n",
    "6",
    "--out",
    `${dir}/plain.npz`,
    ...common,
  ]);
  assertEquals(plain.code, 0, plain.text.slice(-2000));
  assertEquals(readNpz(`${dir}/plain.npz`).has("features"), false);
  const noFeatures = await fidTask([
    "score",
    "--samples",
    "mnist:train",
    "--n",
    "6",
    "--ref",
    `${dir}/plain.npz`,
    "--pr",
    ...common,
  ]);
  assertNotEquals(noFeatures.code, 0);
  assertMatch(
    noFeatures.text,
    /plain\.npz holds no reference features.*`deno task fid:ref` that wrote it with --pr/s,
  );
});
