// FID / IS statistics: closed forms for Gaussians, scipy/numpy values (tests/reference/fid_reference.py),
// streaming moments against two-pass ones, the eigensolver, and the pytorch-fid stats file layout.
import { assert, assertEquals, assertMatch, assertRejects, assertThrows } from "@std/assert";
import {
  FeatureStats,
  frechetDistance,
  frechetDistanceParts,
  type FrechetFactor,
  inceptionScore,
  loadStats,
  saveStats,
  symmetricEigen,
} from "../lib/metrics/fid.ts";
import { writeNpz } from "../lib/io/npz.ts";
import { Rng } from "../lib/rng.ts";
import { assertClose } from "../lib/testing.ts";

interface FidCase {
  name: string;
  dim: number;
  mu1?: number[];
  sigma1?: number[];
  mu2?: number[];
  sigma2?: number[];
  x1?: number[];
  x2?: number[];
  mu1_sum?: number;
  sigma1_trace?: number;
  sigma1_fro?: number;
  sigma1_rank?: number;
  fid: number | null;
  offset: number;
  fid_eig: number;
  fid_exact?: number;
}
interface IsCase {
  n: number;
  classes: number;
  splits: number;
  logits: number[];
  mean: number;
  std: number;
  scores: number[];
}
const ref: { fid: FidCase[]; inception_score: IsCase[] } = JSON.parse(
  await Deno.readTextFile(new URL("./fixtures/fid_reference.json", import.meta.url)),
);
const FACTORS: FrechetFactor[] = ["cholesky", "eigh"];

function randn(n: number, rng: Rng): Float64Array {
  return Float64Array.from({ length: n }, () => rng.normal());
}

/** A random orthogonal n×n matrix (Gram–Schmidt on Gaussian columns, twice for accuracy), row-major. */
function randomOrthogonal(n: number, rng: Rng): Float64Array {
  const q = randn(n * n, rng);
  for (let j = 0; j < n; j++) {
    for (let pass = 0; pass < 2; pass++) {
      for (let k = 0; k < j; k++) {
        let d = 0;
        for (let i = 0; i < n; i++) d += q[i * n + j] * q[i * n + k];
        for (let i = 0; i < n; i++) q[i * n + j] -= d * q[i * n + k];
      }
    }
    let norm = 0;
    for (let i = 0; i < n; i++) norm += q[i * n + j] ** 2;
    for (let i = 0; i < n; i++) q[i * n + j] /= Math.sqrt(norm);
  }
  return q;
}

/** Q diag(lambda) Qᵀ. */
function rotate(q: Float64Array, lambda: ArrayLike<number>, n: number): Float64Array {
  const out = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let k = 0; k < n; k++) s += q[i * n + k] * lambda[k] * q[j * n + k];
      out[i * n + j] = s;
    }
  }
  return out;
}

function diagonal(lambda: ArrayLike<number>): Float64Array {
  const n = lambda.length, out = new Float64Array(n * n);
  for (let i = 0; i < n; i++) out[i * n + i] = lambda[i];
  return out;
}

/** FID of commuting covariances with eigenvalues a, b in the same basis: ‖Δμ‖² + Σ(√a_i − √b_i)². */
function closedForm(
  mu1: ArrayLike<number>,
  mu2: ArrayLike<number>,
  a: ArrayLike<number>,
  b: ArrayLike<number>,
) {
  let s = 0;
  for (let i = 0; i < mu1.length; i++) s += (mu1[i] - mu2[i]) ** 2;
  for (let i = 0; i < a.length; i++) s += (Math.sqrt(a[i]) - Math.sqrt(b[i])) ** 2;
  return s;
}

Deno.test("FID of diagonal Gaussians is ‖Δμ‖² + Σ(√a − √b)², by both factors", async () => {
  const rng = Rng.seeded(1), dim = 17;
  const mu1 = randn(dim, rng), mu2 = randn(dim, rng);
  const a = Float64Array.from({ length: dim }, () => 0.1 + 3 * rng.uniform());
  const b = Float64Array.from({ length: dim }, () => 0.1 + 3 * rng.uniform());
  const expected = closedForm(mu1, mu2, a, b);
  for (const factor of FACTORS) {
    const parts = frechetDistanceParts(mu1, diagonal(a), mu2, diagonal(b), dim, { factor });
    await assertClose(parts.fid, expected, { atol: 1e-12, rtol: 1e-12, message: `diagonal, ${factor}` });
    assertEquals(parts.offset, 0);
    assertEquals(parts.traceSqrtImag, 0);
  }
});

Deno.test("FID of commuting (co-rotated) and rank-deficient covariances matches the closed form", async () => {
  const rng = Rng.seeded(2), dim = 24;
  const q = randomOrthogonal(dim, rng);
  const mu1 = randn(dim, rng), mu2 = randn(dim, rng);
  const a = Float64Array.from({ length: dim }, () => 0.05 + 2 * rng.uniform());
  const b = Float64Array.from({ length: dim }, () => 0.05 + 2 * rng.uniform());
  // Rank-deficient: a is zero on the first 8 directions, b on 4 of those and 4 others.
  const aDef = a.map((v, i) => i < 8 ? 0 : v);
  const bDef = b.map((v, i) => i < 4 || (i >= 12 && i < 16) ? 0 : v);
  for (const factor of FACTORS) {
    const pairs = [["full rank", a, b], ["rank 16 vs 16", aDef, bDef], ["rank 16 vs full", aDef, b]] as const;
    for (const [name, x, y] of pairs) {
      const fid = frechetDistance(mu1, rotate(q, x, dim), mu2, rotate(q, y, dim), dim, { factor });
      // √ of round-off in the null directions: a few 1e-8 in absolute terms.
      await assertClose(fid, closedForm(mu1, mu2, x, y), {
        atol: 1e-6,
        rtol: 1e-10,
        message: `${name}, ${factor}`,
      });
    }
  }
  // Ill-conditioned but full rank (eigenvalues down to 1e-12): tiny pivots are kept, √(1e-12·b) counts. Where
  // both are tiny, √ of round-off in the product (~1e-15) limits the accuracy to ~1e-8.
  const aIll = a.map((v, i) => i < 6 ? 10 ** -(2 * i + 2) : v);
  const bIll = b.map((v, i) => i >= 3 && i < 9 ? 10 ** -(2 * i - 4) : v);
  for (const factor of FACTORS) {
    const parts = frechetDistanceParts(mu1, rotate(q, aIll, dim), mu2, rotate(q, bIll, dim), dim, { factor });
    await assertClose(parts.fid, closedForm(mu1, mu2, aIll, bIll), {
      atol: 1e-7,
      rtol: 1e-12,
      message: `ill-conditioned, ${factor}`,
    });
    assertEquals(parts.offset, 0);
  }
  // Σ1 = 0 (constant features): rank 0, FID = ‖Δμ‖² + Tr Σ2.
  const zero = new Float64Array(dim * dim), sb = rotate(q, b, dim);
  for (const factor of FACTORS) {
    await assertClose(
      frechetDistance(mu1, zero, mu2, sb, dim, { factor }),
      closedForm(mu1, mu2, new Float64Array(dim), b),
      {
        rtol: 1e-12,
        message: `Σ1 = 0, ${factor}`,
      },
    );
  }
  // FID(x, x) = 0 up to round-off, full rank and singular.
  for (const x of [a, aDef]) {
    const s = rotate(q, x, dim);
    await assertClose(frechetDistance(mu1, s, mu1, s, dim), 0, { atol: 1e-6, message: "FID(x, x)" });
  }
});

Deno.test("FID of non-commuting covariances matches pytorch-fid's scipy sqrtm (dims 8 and 64)", async () => {
  const cases = ref.fid.filter((c) => c.name.startsWith("general"));
  assertEquals(cases.length, 2);
  for (const c of cases) {
    assertEquals(c.offset, 0);
    for (const factor of FACTORS) {
      const parts = frechetDistanceParts(c.mu1!, c.sigma1!, c.mu2!, c.sigma2!, c.dim, { factor });
      await assertClose(parts.fid, c.fid!, { atol: 1e-10, rtol: 1e-10, message: `${c.name}, ${factor}` });
      assertEquals(parts.offset, 0);
    }
    // Symmetric in its arguments.
    await assertClose(frechetDistance(c.mu2!, c.sigma2!, c.mu1!, c.sigma1!, c.dim), c.fid!, { rtol: 1e-10 });
  }
});

Deno.test("FID of rank-39 sample covariances (64 dims) is exact where pytorch-fid's sqrtm fails", async () => {
  const c = ref.fid.find((c) => c.name === "rank 39 of 64")!;
  const s1 = new FeatureStats(), s2 = new FeatureStats();
  s1.add(Float64Array.from(c.x1!), 40, c.dim);
  s2.add(Float64Array.from(c.x2!), 40, c.dim);
  const [m1, v1, m2, v2] = [s1.mean(), s1.covariance(), s2.mean(), s2.covariance()];
  await assertClose(m1.reduce((a, b) => a + b), c.mu1_sum!, { atol: 1e-12, rtol: 1e-12 });
  let trace = 0, fro = 0;
  for (let i = 0; i < c.dim; i++) trace += v1[i * c.dim + i];
  for (const v of v1) fro += v * v;
  await assertClose(trace, c.sigma1_trace!, { rtol: 1e-12 });
  await assertClose(Math.sqrt(fro), c.sigma1_fro!, { rtol: 1e-12 });
  // scipy's sqrtm of this singular product has a diagonal imaginary part > 1e-3: pytorch-fid raises.
  assertEquals(c.fid, null);
  for (const factor of FACTORS) {
    const parts = frechetDistanceParts(m1, v1, m2, v2, c.dim, { factor });
    // Exact: the nuclear norm of A1A2ᵀ/(n−1) (A centred samples). numpy's eigvals of Σ1Σ2 (fid_eig) is off
    // by ≈ 2e-8 relative, from √ of round-off eigenvalues in the null space.
    await assertClose(parts.fid, c.fid_exact!, { atol: 0, rtol: 1e-10, message: `rank 39, ${factor}` });
    await assertClose(parts.fid, c.fid_eig, { atol: 0, rtol: 1e-7 });
    assertEquals(parts.offset, 0, "no eps needed for singular PSD covariances");
  }
});

Deno.test("FID near-singular handling: round-off clamp, eps offset, imaginary part, non-finite input", async () => {
  const rng = Rng.seeded(3), dim = 12;
  const q = randomOrthogonal(dim, rng);
  const mu = new Float64Array(dim);
  const a = Float64Array.from({ length: dim }, () => 0.5 + rng.uniform());
  const b = Float64Array.from({ length: dim }, () => 0.5 + rng.uniform());
  const warnings: string[] = [];
  const warn = (m: string) => warnings.push(m);
  for (const factor of FACTORS) {
    warnings.length = 0;
    // A negative eigenvalue at round-off level (−1e-17) counts as 0: no offset, no warning.
    const aTiny = a.map((v, i) => i === 0 ? -1e-17 : v);
    const p0 = frechetDistanceParts(mu, rotate(q, aTiny, dim), mu, rotate(q, b, dim), dim, { factor, warn });
    await assertClose(p0.fid, closedForm(mu, mu, aTiny.map((v) => Math.max(v, 0)), b), { atol: 1e-7 });
    assertEquals(p0.offset, 0);
    // Both slightly indefinite (−1e-8, beyond round-off): eps·I is added to both inside the square root.
    const aNeg = a.map((v, i) => i === 0 ? -1e-8 : v), bNeg = b.map((v, i) => i === 1 ? -1e-8 : v);
    const p1 = frechetDistanceParts(mu, rotate(q, aNeg, dim), mu, rotate(q, bNeg, dim), dim, {
      factor,
      warn,
    });
    assertEquals(p1.offset, 1e-6);
    assertEquals(warnings.length, 1);
    assertMatch(warnings[0], /neither covariance is PSD beyond round-off; adding 0.000001 to both diagonals/);
    let trSqrt = 0;
    for (let i = 0; i < dim; i++) trSqrt += Math.sqrt((aNeg[i] + 1e-6) * (bNeg[i] + 1e-6));
    await assertClose(p1.traceSqrt, trSqrt, { rtol: 1e-10, message: `offset traceSqrt, ${factor}` });
    const traces = aNeg.reduce((s, v) => s + v) + bNeg.reduce((s, v) => s + v);
    await assertClose(p1.fid, traces - 2 * trSqrt, { atol: 1e-10, rtol: 1e-12, message: "Tr Σ without eps" });
    // One clearly indefinite: Σ1Σ2 has a negative eigenvalue, a complex sqrtm's trace an imaginary part.
    const aBad = a.map((v, i) => i === 0 ? -0.5 : v);
    assertThrows(
      () => frechetDistance(mu, rotate(q, aBad, dim), mu, rotate(q, b, dim), dim, { factor, warn }),
      Error,
      "imaginary component",
    );
    // Zero diagonal, nonzero off-diagonal ([[0, 1], [1, 0]] block): indefinite though no pivot is negative.
    const swapBlock = diagonal(a);
    swapBlock[0] = swapBlock[dim + 1] = 0;
    swapBlock[1] = swapBlock[dim] = 1;
    assertThrows(
      () => frechetDistance(mu, swapBlock, mu, diagonal(b), dim, { factor, warn }),
      Error,
      "imaginary component",
    );
    // Both clearly indefinite: no factor, even with eps.
    const bBad = b.map((v, i) => i === 3 ? -0.5 : v);
    assertThrows(
      () => frechetDistance(mu, rotate(q, aBad, dim), mu, rotate(q, bBad, dim), dim, { factor, warn }),
      Error,
      "neither covariance is positive semidefinite",
    );
  }
  const s = diagonal(a);
  assert(Number.isNaN(frechetDistance(mu.map((v, i) => i === 2 ? NaN : v), s, mu, s, dim)));
  assert(Number.isNaN(frechetDistance(mu, s.map((v, i) => i === 5 ? Infinity : v), mu, s, dim)));
  assertThrows(() => frechetDistance(mu, s, mu, s.subarray(1), dim), Error, "sigma2");
  assertThrows(() => frechetDistance(mu.subarray(1), s, mu, s, dim), Error, "mu1");
});

/** Two-pass mean and unbiased covariance of [n, dim] rows, the numpy way. */
function twoPass(x: ArrayLike<number>, n: number, dim: number) {
  const mean = new Float64Array(dim), cov = new Float64Array(dim * dim);
  for (let r = 0; r < n; r++) for (let j = 0; j < dim; j++) mean[j] += x[r * dim + j] / n;
  for (let r = 0; r < n; r++) {
    for (let i = 0; i < dim; i++) {
      const di = x[r * dim + i] - mean[i];
      for (let j = 0; j < dim; j++) cov[i * dim + j] += di * (x[r * dim + j] - mean[j]) / (n - 1);
    }
  }
  return { mean, cov };
}

Deno.test("FeatureStats: uneven batches and merge() give the two-pass mean and covariance", async () => {
  const rng = Rng.seeded(4), dim = 131, sizes = [1, 7, 300, 0, 50, 2];
  const n = sizes.reduce((a, b) => a + b);
  // A mean of 1e6 against unit noise: raw Σxxᵀ/n − x̄x̄ᵀ would keep only ~4 digits of the covariance.
  const x = Float32Array.from({ length: n * dim }, (_, k) => 1e6 + 100 * (k % dim) + rng.normal());
  const { mean, cov } = twoPass(x, n, dim);
  const one = new FeatureStats(dim);
  const parts = [new FeatureStats(), new FeatureStats(), new FeatureStats()];
  let start = 0;
  sizes.forEach((size, i) => {
    const batch = x.subarray(start * dim, (start + size) * dim);
    one.add(batch, size, dim);
    parts[i % 3].add(batch, size, dim);
    start += size;
  });
  const merged = new FeatureStats();
  for (const p of parts) merged.merge(p);
  merged.merge(new FeatureStats(dim)); // empty: no-op
  const twice = new FeatureStats();
  twice.add(x, n, dim);
  twice.merge(twice); // every row twice: same mean, covariance × (n − 1)/(n − 1/2)
  assertEquals(twice.count, 2 * n);
  await assertClose(twice.mean(), mean, { atol: 0, rtol: 1e-14, message: "self-merge mean" });
  await assertClose(twice.covariance(), cov.map((v) => v * (n - 1) / (2 * n - 1) * 2), {
    atol: 1e-9,
    rtol: 1e-9,
    message: "self-merge covariance",
  });
  for (const [name, s] of [["one", one], ["merged", merged]] as const) {
    assertEquals(s.count, n);
    assertEquals(s.dim, dim);
    await assertClose(s.mean(), mean, { atol: 0, rtol: 1e-14, message: `${name} mean` });
    // Chunk means carry ε·1e6 ≈ 1e-10 of error, which enters only through δδᵀ: ~1e-11 here.
    await assertClose(s.covariance(), cov, { atol: 1e-9, rtol: 1e-9, message: `${name} covariance` });
  }
  const c = one.covariance();
  for (let i = 0; i < dim; i++) for (let j = 0; j < i; j++) assertEquals(c[i * dim + j], c[j * dim + i]);
});

Deno.test("FeatureStats errors: dim mismatch, too few rows, non-finite features, bad shapes", () => {
  const s = new FeatureStats(3);
  assertThrows(() => s.mean(), Error, "no rows");
  s.add(new Float32Array([1, 2, 3]), 1, 3);
  assertThrows(() => s.covariance(), Error, "needs ≥ 2 rows, has 1");
  assertThrows(() => s.add(new Float32Array(4), 1, 4), Error, "dim 4 != 3");
  assertThrows(() => s.add(new Float32Array(5), 2, 3), Error, "5 values is not [2, 3]");
  assertThrows(() => s.add(new Float32Array([1, 2, 3, 1, NaN, 3]), 2, 3), Error, "row 1, feature 1 is NaN");
  assertEquals(s.count, 1, "a rejected batch adds nothing");
  const other = new FeatureStats(2);
  other.add(new Float32Array(2), 1, 2);
  assertThrows(() => s.merge(other), Error, "dim 2 != 3");
});

Deno.test("inceptionScore: uniform → 1, k distinct one-hot classes → k, numpy/improved-gan values", async () => {
  const uniform = inceptionScore(new Float32Array(30 * 8), 30, 8, 3);
  await assertClose([uniform.mean, uniform.std], [1, 0], { atol: 1e-14 });
  const k = 5, oneHot = new Float32Array(2 * k * k);
  for (let r = 0; r < 2 * k; r++) oneHot[r * k + (r % k)] = 1000; // softmax is exactly one-hot
  for (const splits of [1, 2]) {
    const s = inceptionScore(oneHot, 2 * k, k, splits);
    await assertClose(s.scores, new Array(splits).fill(k), {
      atol: 1e-12,
      message: `one-hot, ${splits} splits`,
    });
  }
  assertEquals(ref.inception_score.length, 3);
  for (const c of ref.inception_score) {
    const s = inceptionScore(Float32Array.from(c.logits), c.n, c.classes, c.splits);
    await assertClose(s.scores, c.scores, { atol: 0, rtol: 1e-12, message: `IS scores n=${c.n}` });
    await assertClose([s.mean, s.std], [c.mean, c.std], { atol: 1e-12, rtol: 1e-12, message: `IS n=${c.n}` });
  }
  assertThrows(
    () => inceptionScore(new Float32Array(6), 3, 2, 4),
    Error,
    "splits must be an integer in [1, n = 3]",
  );
  assertThrows(() => inceptionScore(new Float32Array([0, Infinity]), 1, 2, 1), Error, "non-finite logit");
});

Deno.test("symmetricEigen: A = VΛVᵀ with orthonormal V, ascending values, lower triangle only", async () => {
  const rng = Rng.seeded(5);
  for (const n of [1, 2, 9, 40, 65]) {
    const a = new Float64Array(n * n);
    for (let i = 0; i < n; i++) for (let j = 0; j <= i; j++) a[i * n + j] = a[j * n + i] = rng.normal();
    const lowerOnly = a.map((v, k) => (k % n) > Math.floor(k / n) ? 99 : v); // garbage above the diagonal
    const { values, vectors } = symmetricEigen(lowerOnly, n);
    const v = vectors!;
    for (let k = 1; k < n; k++) assert(values[k - 1] <= values[k], "ascending");
    await assertClose(rotate(v, values, n), a, { atol: 1e-12, message: `reconstruct n=${n}` });
    const vtv = new Float64Array(n * n);
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) for (let k = 0; k < n; k++) vtv[i * n + j] += v[k * n + i] * v[k * n + j];
    }
    await assertClose(vtv, diagonal(new Float64Array(n).fill(1)), { atol: 1e-13, message: `VᵀV n=${n}` });
    const valuesOnly = symmetricEigen(a, n, { vectors: false });
    assertEquals(valuesOnly.vectors, null);
    await assertClose(valuesOnly.values, values, { atol: 1e-12 });
  }
  await assertClose(symmetricEigen([2, 1, 1, 2], 2).values, [1, 3], { atol: 1e-15 });
  await assertClose(symmetricEigen(diagonal([3, -1, 2, 0]), 4).values, [-1, 0, 2, 3], { atol: 0 });
  const eye = symmetricEigen(diagonal([1, 1, 1]), 3);
  await assertClose(eye.values, [1, 1, 1], { atol: 0 });
  await assertClose(symmetricEigen(new Float64Array(16), 4).values, [0, 0, 0, 0], { atol: 0 });
  assertEquals(symmetricEigen([], 0).values.length, 0);
  assertThrows(() => symmetricEigen([1, 2, 3], 2), Error, "not [2, 2]");
});

Deno.test("saveStats / loadStats: pytorch-fid's npz layout round trip and what loadStats rejects", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const rng = Rng.seeded(6), dim = 5;
    const mu = randn(dim, rng), sigma = rotate(randomOrthogonal(dim, rng), [1, 2, 3, 4, 5], dim);
    const path = `${dir}/stats.npz`;
    await saveStats(path, { mu, sigma });
    const back = loadStats(path);
    assertEquals(back.dim, dim);
    assertEquals(back.mu, mu);
    assertEquals(back.sigma, sigma);
    assertEquals(loadStats(await Deno.readFile(path)).sigma, sigma);
    await assertRejects(
      () => saveStats(path, { mu, sigma: sigma.subarray(1) }),
      Error,
      "sigma has 24 values",
    );

    const bad = async (arrays: Parameters<typeof writeNpz>[1], pattern: RegExp) => {
      await writeNpz(`${dir}/bad.npz`, arrays);
      assertMatch(assertThrows(() => loadStats(`${dir}/bad.npz`), Error).message, pattern);
    };
    const m = { shape: [dim], data: mu }, s = { shape: [dim, dim], data: sigma };
    await bad({ mu: m }, /no 'sigma' array \(has: mu\)/);
    await bad({ mean: m, sigma: s }, /no 'mu' array \(has: mean, sigma\)/);
    await bad(
      { mu: m, sigma: { shape: [dim * dim], data: sigma } },
      /'sigma' has shape \(25\), expected \(5, 5\)/,
    );
    await bad(
      { mu: m, sigma: { shape: [4, 4], data: sigma.subarray(0, 16) } },
      /expected \(5, 5\) to match 'mu'/,
    );
    await bad({ mu: { shape: [1, dim], data: mu }, sigma: s }, /'mu' has shape \(1,5\)/);
    await bad(
      { mu: { shape: [dim], data: new Int32Array(dim) }, sigma: s },
      /'mu' is int32, expected float64/,
    );
    await bad(
      { mu: m, sigma: { shape: [dim, dim], data: sigma.map((v, k) => k === 7 ? NaN : v) } },
      /index 7/,
    );
    // float32 stats are widened.
    await writeNpz(`${dir}/f32.npz`, { mu: { shape: [dim], data: Float32Array.from(mu) }, sigma: s });
    assertEquals(loadStats(`${dir}/f32.npz`).mu, Float64Array.from(Float32Array.from(mu)));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
