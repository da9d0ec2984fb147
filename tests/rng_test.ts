import assert from "node:assert/strict";
import { Rng } from "../lib/rng.ts";

Deno.test("Rng: same seed same stream; a restored state continues exactly", () => {
  const a = Rng.seeded(42);
  const b = Rng.seeded(42);
  const first = Array.from({ length: 5 }, () => a.uniform());
  assert.deepEqual(first, Array.from({ length: 5 }, () => b.uniform()));
  const saved = a.state();
  const next = [a.normal(), a.int(0, 9), a.uniform(), a.seed()];
  const restored = Rng.fromState(JSON.parse(JSON.stringify(saved)));
  assert.deepEqual([restored.normal(), restored.int(0, 9), restored.uniform(), restored.seed()], next);
  assert.notDeepEqual(Rng.seeded(43).uniform(), Rng.seeded(42).uniform());
  assert.throws(() => Rng.fromState([1, 2, 3]), /4 integers/);
  assert.throws(() => Rng.seeded(0.5), /integer/);
});

Deno.test("Rng.normal: mean 0, variance 1", () => {
  const r = Rng.seeded(7);
  const n = 100_000;
  let s = 0;
  let s2 = 0;
  for (let i = 0; i < n; i++) {
    const v = r.normal();
    s += v;
    s2 += v * v;
  }
  assert.ok(Math.abs(s / n) < 0.02, `mean ${s / n}`);
  assert.ok(Math.abs(s2 / n - 1) < 0.03, `variance ${s2 / n}`);
});
