import { assert, assertEquals, assertThrows } from "@std/assert";
import * as tf from "@tensorflow/tfjs";
import {
  DEFAULT_OPTIMIZER,
  FUSED_ADAM_MAX_SIZE,
  Optimizer,
  type OptimizerConfig,
} from "../lib/train/optim.ts";
import { assertClose } from "../lib/testing.ts";
import "@tensorflow/tfjs-backend-wasm";
import { fastPaths } from "../lib/wasm_kernels.ts";

await tf.setBackend("cpu");

// torch.optim.Adam / RAdam trajectories in float64 (tests/reference/optim_reference.py).
interface RefCase {
  name: string;
  kind: "adam" | "radam";
  lr: number;
  betas: [number, number];
  eps: number;
  weight_decay: number;
  lr_per_step: number[];
  rho_t: number[];
  params_after: Record<string, number[]>[];
}
const REF = JSON.parse(
  await Deno.readTextFile(new URL("./fixtures/optim_reference.json", import.meta.url)),
) as {
  shapes: Record<string, number[]>;
  params0: Record<string, number[]>;
  grads: Record<string, number[]>[];
  cases: RefCase[];
};

function refConfig(c: RefCase): OptimizerConfig {
  return {
    kind: c.kind,
    lr: c.lr,
    beta1: c.betas[0],
    beta2: c.betas[1],
    eps: c.eps,
    weightDecay: c.weight_decay,
  };
}

function refParams(): Map<string, tf.Variable> {
  return new Map(
    Object.entries(REF.params0).map(([n, v]) => [n, tf.variable(tf.tensor(v, REF.shapes[n]), true)]),
  );
}

function refGrads(k: number): Map<string, tf.Tensor> {
  return new Map(Object.entries(REF.grads[k]).map(([n, v]) => [n, tf.tensor(v, REF.shapes[n])]));
}

function disposeAll(...maps: ReadonlyMap<string, tf.Tensor>[]): void {
  for (const m of maps) for (const x of m.values()) x.dispose();
}

Deno.test("DEFAULT_OPTIMIZER: RAdam, lr 1e-4, betas (0.9, 0.999), eps 1e-8, no weight decay", () => {
  assertEquals(DEFAULT_OPTIMIZER, {
    kind: "radam",
    lr: 1e-4,
    beta1: 0.9,
    beta2: 0.999,
    eps: 1e-8,
    weightDecay: 0,
  });
});

Deno.test("the fixture covers Adam and RAdam, weight decay, lr overrides, and crosses ρt > 5 at t = 6", () => {
  const names = REF.cases.map((c) => c.name);
  for (const n of ["adam", "radam", "adam_wd_lr", "radam_wd_lr", "radam_betas"]) assert(names.includes(n));
  for (const c of REF.cases.filter((c) => c.kind === "radam")) {
    assert(c.rho_t[4] < 5 && c.rho_t[5] > 5, `${c.name}: ρ5 ${c.rho_t[4]}, ρ6 ${c.rho_t[5]}`);
  }
  assert(REF.cases.some((c) => c.weight_decay > 0 && c.lr_per_step.some((lr) => lr !== c.lr)));
});

// Both paths: the fused kernel (IctAdamUpdate, lib/wasm_kernels.ts) and the TF.js ops it replaces.
for (const c of REF.cases) {
  for (const fused of [true, false]) {
    Deno.test(`update matches torch.optim (${c.name}) after every step, ${fused ? "fused kernel" : "TF.js ops"}`, async () => {
      fastPaths.optimizer = fused;
      try {
        await checkTrajectory(c);
      } finally {
        fastPaths.optimizer = true;
      }
    });
  }
}

/** Case c step by step against torch's parameters after each step. */
async function checkTrajectory(c: RefCase) {
  const params = refParams();
  const opt = new Optimizer(refConfig(c), params);
  for (let k = 0; k < c.params_after.length; k++) {
    const grads = refGrads(k);
    const lr = c.lr_per_step[k];
    if (lr !== c.lr) opt.update(grads, lr); // an override for this step only
    else opt.update(grads);
    disposeAll(grads);
    assertEquals(opt.step, k + 1);
    for (const [name, p] of params) {
      await assertClose(p, c.params_after[k][name], {
        atol: 1e-6,
        rtol: 1e-6,
        message: `${c.name}, t = ${k + 1}, ${name}`,
      });
    }
  }
  opt.dispose();
  disposeAll(params);
}

/** Parameters and moments after `steps` updates of case c on the current backend, fused or by TF.js ops. */
async function trajectory(c: RefCase, fused: boolean, steps: number): Promise<Float32Array[]> {
  fastPaths.optimizer = fused;
  try {
    const params = refParams();
    const opt = new Optimizer(refConfig(c), params);
    for (let k = 0; k < steps; k++) {
      const grads = refGrads(k % REF.grads.length);
      opt.update(grads, c.lr_per_step[k % c.lr_per_step.length]);
      disposeAll(grads);
    }
    const out = await Promise.all(
      [...params.values(), ...opt.state().values()].map(async (x) => (await x.data()) as Float32Array),
    );
    opt.dispose();
    disposeAll(params);
    return out;
  } finally {
    fastPaths.optimizer = true;
  }
}

Deno.test("the fused update kernel = the TF.js ops bit for bit, on cpu and wasm (every case, 12 steps)", async () => {
  for (const backend of ["cpu", "wasm"]) {
    assert(await tf.setBackend(backend));
    for (const c of REF.cases) {
      const [kernel, ops] = [await trajectory(c, true, 12), await trajectory(c, false, 12)];
      assertEquals(kernel.length, ops.length);
      for (let i = 0; i < ops.length; i++) {
        assertEquals(kernel[i], ops[i], `${backend}, ${c.name}, tensor ${i}`);
      }
    }
  }
  assert(await tf.setBackend("cpu"));
});

Deno.test("large tensors by the ops, small by the kernel, in one update: the same as all by the ops, bit for bit", async () => {
  const shapes = { big: [FUSED_ADAM_MAX_SIZE + 3], small: [7, 5] };
  const run = async (fused: boolean) => {
    fastPaths.optimizer = fused;
    try {
      const params = new Map(
        Object.entries(shapes).map((
          [n, s],
          i,
        ) => [n, tf.variable(tf.randomNormal(s, 0, 1, "float32", i + 1))]),
      );
      const opt = new Optimizer({ ...DEFAULT_OPTIMIZER, lr: 1e-2, weightDecay: 0.01 }, params);
      for (let k = 0; k < 8; k++) { // rectified from t = 6
        const grads = new Map(
          Object.entries(shapes).map(([n, s], i) => [n, tf.randomNormal(s, 0, 1, "float32", 10 * k + i + 1)]),
        );
        opt.update(grads);
        disposeAll(grads);
      }
      const out = await Promise.all([...params.values(), ...opt.state().values()].map((x) => x.data()));
      opt.dispose();
      disposeAll(params);
      return out;
    } finally {
      fastPaths.optimizer = true;
    }
  };
  for (const backend of ["cpu", "wasm"]) {
    assert(await tf.setBackend(backend));
    const [mixed, ops] = [await run(true), await run(false)];
    for (let i = 0; i < ops.length; i++) {
      const differs = ops[i].findIndex((x, j) => !Object.is(x, mixed[i][j]));
      assertEquals(differs, -1, `${backend}, tensor ${i}: first difference at ${differs}`);
    }
  }
  assert(await tf.setBackend("cpu"));
});

Deno.test("state()/load(): a restored optimizer continues bit-identically", async () => {
  const c = REF.cases.find((c) => c.name === "radam_wd_lr")!;
  const paramsA = refParams();
  const a = new Optimizer(refConfig(c), paramsA);
  for (let k = 0; k < 5; k++) { // t = 1..5: not rectified yet; a lost step would show after loading
    const g = refGrads(k);
    a.update(g);
    disposeAll(g);
  }
  const before = tf.memory().numTensors;
  const state = a.state();
  assertEquals(tf.memory().numTensors, before, "state() allocates nothing");
  assertEquals([...state].map(([name, x]) => ({ name, shape: x.shape })), a.stateSpecs());
  assertEquals(a.stateSpecs().map((s) => s.name), [
    "m/conv.weight",
    "m/conv.bias",
    "m/scale",
    "v/conv.weight",
    "v/conv.bias",
    "v/scale",
  ]);

  // As from a checkpoint: fresh tensors, disposed after loading.
  const saved = new Map<string, tf.Tensor>();
  for (const [name, x] of state) saved.set(name, tf.tensor(await x.data(), x.shape));
  const paramsB = new Map<string, tf.Variable>();
  for (const [name, p] of paramsA) paramsB.set(name, tf.variable(tf.tensor(await p.data(), p.shape)));
  const b = new Optimizer(refConfig(c), paramsB);
  b.load(saved, a.step);
  disposeAll(saved);
  assertEquals(b.step, 5);

  for (let k = 5; k < 10; k++) {
    for (const opt of [a, b]) {
      const g = refGrads(k);
      opt.update(g, 2e-3);
      disposeAll(g);
    }
  }
  for (const [name, p] of paramsA) {
    assertEquals(await paramsB.get(name)!.data(), await p.data(), name);
  }
  const stateB = b.state();
  for (const [name, x] of a.state()) assertEquals(await stateB.get(name)!.data(), await x.data(), name);
  assertEquals(a.step, 10);
  a.dispose();
  b.dispose();
  disposeAll(paramsA, paramsB);
});

Deno.test("state()/load() round trip on the fixture reproduces torch's remaining trajectory", async () => {
  const c = REF.cases.find((c) => c.name === "radam")!;
  const a = new Optimizer(refConfig(c), refParams());
  const paramsB = refParams();
  for (let k = 0; k < 5; k++) {
    const g = refGrads(k);
    a.update(g);
    disposeAll(g);
  }
  // B starts from torch's params after step 5 and A's moments.
  for (const [name, p] of paramsB) p.assign(tf.tensor(c.params_after[4][name], p.shape));
  const b = new Optimizer(refConfig(c), paramsB);
  b.load(a.state(), a.step);
  a.dispose();
  for (let k = 5; k < c.params_after.length; k++) {
    const g = refGrads(k);
    b.update(g);
    disposeAll(g);
    for (const [name, p] of paramsB) {
      await assertClose(p, c.params_after[k][name], {
        atol: 1e-6,
        rtol: 1e-6,
        message: `t = ${k + 1} ${name}`,
      });
    }
  }
  b.dispose();
  disposeAll(paramsB);
});

Deno.test("update: a subset of the params; the others and their moments stay as they are", async () => {
  const params = refParams();
  const opt = new Optimizer({ ...DEFAULT_OPTIMIZER, lr: 1e-2, weightDecay: 0.1 }, params);
  const scale0 = await params.get("scale")!.data();
  const g = refGrads(0);
  g.get("scale")!.dispose();
  g.delete("scale");
  opt.update(g);
  assertEquals(opt.step, 1);
  assertEquals(await params.get("scale")!.data(), scale0);
  const st = opt.state();
  assertEquals(Array.from(await st.get("m/scale")!.data()), [0]);
  assertEquals(Array.from(await st.get("v/scale")!.data()), [0]);
  assert((await st.get("m/conv.bias")!.data()).some((x) => x !== 0));
  disposeAll(g, params);
  opt.dispose();
});

Deno.test("update: unknown names, wrong shapes and bad lr throw before anything changes", async () => {
  const params = refParams();
  const opt = new Optimizer(DEFAULT_OPTIMIZER, params);
  const w0 = await params.get("conv.weight")!.data();
  const g = refGrads(0);

  const unknown = new Map(g).set("conv.wieght", tf.zeros([4, 3]));
  assertThrows(() => opt.update(unknown), Error, 'unknown param "conv.wieght"');
  const misshaped = new Map(g).set("conv.bias", tf.zeros([1, 5]));
  assertThrows(() => opt.update(misshaped), Error, '"conv.bias" has shape [1,5], param is [5]');
  assertThrows(() => opt.update(g, -1), Error, "lr must be");
  assertThrows(() => opt.update(g, NaN), Error, "lr must be");
  assertThrows(() => opt.update(new Map()), Error, "no gradients");

  assertEquals(opt.step, 0);
  assertEquals(await params.get("conv.weight")!.data(), w0);
  for (const x of opt.state().values()) assert((await x.data()).every((v) => v === 0));
  unknown.get("conv.wieght")!.dispose();
  misshaped.get("conv.bias")!.dispose();
  disposeAll(g, params);
  opt.dispose();
  assertThrows(() => opt.update(g), Error, "after dispose");
});

Deno.test("load: refuses missing, extra, mis-shaped, non-float32 entries and a bad step", async () => {
  const params = refParams();
  const opt = new Optimizer(DEFAULT_OPTIMIZER, params);
  const good = () => new Map([...opt.state()].map(([n, x]) => [n, tf.onesLike(x)]));

  const missing = good();
  missing.get("v/scale")!.dispose();
  missing.delete("v/scale");
  assertThrows(() => opt.load(missing, 3), Error, 'bad state: missing "v/scale"');
  const extra = good().set("m/other", tf.zeros([2]));
  assertThrows(() => opt.load(extra, 3), Error, 'unexpected "m/other"');
  const shaped = good();
  shaped.get("m/conv.weight")!.dispose();
  shaped.set("m/conv.weight", tf.zeros([3, 4]));
  assertThrows(() => opt.load(shaped, 3), Error, '"m/conv.weight" has shape [3,4], expected [4,3]');
  const typed = good();
  typed.get("v/conv.bias")!.dispose();
  typed.set("v/conv.bias", tf.zeros([5], "int32"));
  assertThrows(() => opt.load(typed, 3), Error, '"v/conv.bias" is int32, expected float32');
  const ok = good();
  assertThrows(() => opt.load(ok, -1), Error, "step must be an integer >= 0");
  assertThrows(() => opt.load(ok, 2.5), Error, "step must be an integer >= 0");

  // Nothing changed by the refusals.
  assertEquals(opt.step, 0);
  for (const x of opt.state().values()) assert((await x.data()).every((v) => v === 0));
  opt.load(ok, 3);
  assertEquals(opt.step, 3);
  for (const x of opt.state().values()) assert((await x.data()).every((v) => v === 1));
  disposeAll(missing, extra, shaped, typed, ok, params);
  opt.dispose();
});

Deno.test("constructor: refuses bad configs", () => {
  const params = new Map([["w", tf.variable(tf.zeros([2]))]]);
  const bad: Partial<OptimizerConfig>[] = [
    { lr: -1 },
    { beta1: 1 },
    { beta2: -0.1 },
    { eps: -1 },
    { weightDecay: NaN },
    { kind: "sgd" as "adam" },
  ];
  for (const b of bad) {
    assertThrows(
      () => new Optimizer({ ...DEFAULT_OPTIMIZER, ...b }, params),
      Error,
      "Optimizer: ",
      JSON.stringify(b),
    );
  }
  disposeAll(params);
});

Deno.test("no tensor leaks: update (both branches, weight decay), state, load, dispose", () => {
  const params = refParams();
  const start = tf.memory().numTensors;
  const opt = new Optimizer({ ...DEFAULT_OPTIMIZER, weightDecay: 0.01 }, params);
  assertEquals(tf.memory().numTensors, start + 2 * params.size);
  const adam = new Optimizer({ ...DEFAULT_OPTIMIZER, kind: "adam" }, params);
  const afterInit = tf.memory().numTensors;
  const g = refGrads(0);
  const withGrads = tf.memory().numTensors;
  for (let k = 0; k < 8; k++) { // t = 1..8 covers RAdam's un-rectified and rectified updates
    opt.update(g, k % 2 === 0 ? undefined : 1e-3);
    adam.update(g);
    assertEquals(tf.memory().numTensors, withGrads, `after update ${k + 1}`);
  }
  opt.load(adam.state(), adam.step);
  opt.state();
  assertEquals(tf.memory().numTensors, withGrads);
  disposeAll(g);
  assertEquals(tf.memory().numTensors, afterInit);
  opt.dispose();
  adam.dispose();
  assertEquals(tf.memory().numTensors, start);
  disposeAll(params);
});
