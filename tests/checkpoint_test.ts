// safetensors checkpoints: bit-exact round trips, the format itself, and refusal of bad files without
// losing the good one.
import { assert, assertEquals, assertMatch, assertRejects } from "@std/assert";
import * as tf from "@tensorflow/tfjs";
import {
  CheckpointError,
  loadCheckpoint,
  readSafetensors,
  saveCheckpoint,
  type TensorEntry,
  writeSafetensors,
} from "../lib/io/checkpoint.ts";
import { ConsistencyModel } from "../lib/consistency_model.ts";
import { modelConfig } from "../lib/models/index.ts";
import { EVAL } from "../lib/nn/params.ts";

await tf.setBackend("cpu");

async function tempDir(): Promise<string> {
  return await Deno.makeTempDir({ prefix: "ict-ckpt-test-" });
}

const SPECIAL = new Float32Array([
  0,
  -0,
  1,
  -1.5,
  NaN,
  Infinity,
  -Infinity,
  1e-45,
  3.4028234663852886e38,
  0.1,
]);

function sample(): Map<string, TensorEntry> {
  return new Map<string, TensorEntry>([
    ["a/weights", { dtype: "F32", shape: [2, 5], data: SPECIAL }],
    ["a/scalar", { dtype: "F32", shape: [], data: new Float32Array([7]) }],
    ["b/steps", { dtype: "I32", shape: [3], data: new Int32Array([1, -2, 2147483647]) }],
    ["b/bytes", { dtype: "U8", shape: [3], data: new Uint8Array([0, 128, 255]) }],
    ["b/f64", { dtype: "F64", shape: [2], data: new Float64Array([Math.PI, 1e-300]) }],
    ["b/empty", { dtype: "F32", shape: [0, 4], data: new Float32Array(0) }],
  ]);
}

Deno.test("safetensors round trip is bit-exact (NaN, −0, ±∞, subnormals, every dtype)", async () => {
  const path = `${await tempDir()}/x.safetensors`;
  await writeSafetensors(path, sample(), { note: "hello" });
  const { tensors, metadata } = await readSafetensors(path);
  assertEquals(metadata.note, "hello");
  assertEquals([...tensors.keys()], [...sample().keys()]);
  for (const [name, t] of sample()) {
    const r = tensors.get(name)!;
    assertEquals(r.dtype, t.dtype, name);
    assertEquals(r.shape, t.shape, name);
    assertEquals(
      new Uint8Array(r.data.buffer, r.data.byteOffset, r.data.byteLength),
      new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength),
      `${name}: bytes differ`,
    );
  }
});

Deno.test("the file follows the safetensors layout (u64 LE header length, JSON header, raw data)", async () => {
  const path = `${await tempDir()}/x.safetensors`;
  await writeSafetensors(
    path,
    new Map([["w", { dtype: "F32", shape: [2], data: new Float32Array([1, 2]) }]]),
  );
  const bytes = await Deno.readFile(path);
  const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  assertEquals(n % 8, 0, "header padded to 8 bytes");
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
  assertEquals(header.w, { dtype: "F32", shape: [2], data_offsets: [0, 8] });
  assertMatch(header.__metadata__["ict_kit.data_sha256"], /^[0-9a-f]{64}$/);
  assertEquals(new Float32Array(bytes.slice(8 + n).buffer), new Float32Array([1, 2]));
  assertEquals(bytes.length, 8 + n + 8);
});

Deno.test("truncated, corrupted and foreign files are refused with the problem named", async () => {
  const dir = await tempDir();
  const good = `${dir}/good.safetensors`;
  await writeSafetensors(good, sample());
  const bytes = await Deno.readFile(good);
  const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  const cases: [string, Uint8Array, RegExp][] = [
    ["empty", new Uint8Array(0), /truncated \(no header length\)/],
    ["cut in the header", bytes.slice(0, 8 + Math.floor(n / 2)), /truncated/],
    ["cut in the data", bytes.slice(0, bytes.length - 3), /only \d+ are present: truncated/],
    [
      "a flipped data byte",
      (() => {
        const b = bytes.slice();
        b[8 + n + 5] ^= 0x40;
        return b;
      })(),
      /SHA-256 checksum: corrupted/,
    ],
    [
      "garbage header",
      (() => {
        const b = bytes.slice();
        b[8 + 2] = 0xff;
        return b;
      })(),
      /not valid JSON/,
    ],
    [
      "an absurd header length",
      (() => {
        const b = bytes.slice();
        new DataView(b.buffer).setBigUint64(0, 1n << 40n, true);
        return b;
      })(),
      /not plausible/,
    ],
    ["trailing bytes", new Uint8Array([...bytes, 1, 2, 3]), /after the last tensor: corrupted/],
  ];
  for (const [what, content, pattern] of cases) {
    const path = `${dir}/bad.safetensors`;
    await Deno.writeFile(path, content);
    {
      const e = await assertRejects(() => readSafetensors(path), Error);
      assert(e instanceof CheckpointError, `${what}: ${e}`);
      assertMatch(e.message, pattern, what);
      assert(e.message.includes(path), `${what}: the message names the file`);
    }
  }
  await assertRejects(() => readSafetensors(`${dir}/none.safetensors`), Error, "file not found");
});

Deno.test("a save that fails part-way leaves the previous checkpoint intact and no temp file", async () => {
  const dir = await tempDir();
  const path = `${dir}/ckpt.safetensors`;
  await writeSafetensors(path, sample());
  const before = await Deno.readFile(path);
  // Fails while writing the data (after the header is out): like a full disk.
  const good = sample();
  const failing = new Map(good);
  failing.values = function* () {
    yield good.get("a/weights")!;
    throw new Error("disk full (simulated)");
  };
  await assertRejects(() => writeSafetensors(path, failing), Error, "disk full");
  assertEquals(await Deno.readFile(path), before);
  assertEquals([...Deno.readDirSync(dir)].map((e) => e.name), ["ckpt.safetensors"]);
  // Bad entries are refused before anything is written.
  await assertRejects(
    () => writeSafetensors(path, new Map([["w", { dtype: "F32", shape: [3], data: new Float32Array(2) }]])),
    Error,
    "shape [3] holds 3 values, data has 2",
  );
  assertEquals(await Deno.readFile(path), before);
});

Deno.test("a model checkpoint restores parameters bit-exactly and the same outputs", async () => {
  const config = modelConfig("mlp-2d");
  const model = ConsistencyModel.fromConfig(config);
  const params = model.init(11);
  const path = `${await tempDir()}/model.safetensors`;
  const state = { step: 1234, rng: [1, 2, 3, 4] };
  await saveCheckpoint(path, { config, groups: { params }, state });
  const loaded = await loadCheckpoint(path, { params: model.network.specs });
  assertEquals(loaded.config, config);
  assertEquals(loaded.state, state);
  for (const [name, t] of params) {
    assertEquals(await loaded.groups.params.get(name)!.data(), await t.data(), name);
  }
  const x = tf.randomNormal([4, 2], 0, 1, "float32", 3);
  const sigmas = new Float64Array([0.01, 0.5, 2, 80]);
  assertEquals(
    await model.apply(loaded.groups.params, x, sigmas, EVAL).data(),
    await model.apply(params, x, sigmas, EVAL).data(),
  );
});

Deno.test("loading into a different model is refused, naming every mismatch", async () => {
  const small = ConsistencyModel.fromConfig(modelConfig("mlp-2d"));
  const path = `${await tempDir()}/model.safetensors`;
  await saveCheckpoint(path, { config: modelConfig("mlp-2d"), groups: { params: small.init(1) } });
  const narrower = ConsistencyModel.fromConfig({ ...modelConfig("mlp-2d"), hidden: 64 } as never);
  await assertRejects(
    () => loadCheckpoint(path, { params: narrower.network.specs }),
    Error,
    "params/map_layer0.weight has shape [64,128], the model needs [64,64]",
  );
  const deeper = ConsistencyModel.fromConfig({ ...modelConfig("mlp-2d"), depth: 4 } as never);
  {
    const e = await assertRejects(() => loadCheckpoint(path, { params: deeper.network.specs }), Error);
    assertMatch(e.message, /params\/layer3\.weight is missing; params\/layer3\.bias is missing/);
  }
  const fewer = ConsistencyModel.fromConfig({ ...modelConfig("mlp-2d"), depth: 2 } as never);
  await assertRejects(
    () => loadCheckpoint(path, { params: fewer.network.specs }),
    Error,
    "params/layer2.weight is not part of the model",
  );
  await assertRejects(
    () => loadCheckpoint(path, { ema: small.network.specs }),
    Error,
    'group "ema" is missing',
  );
  const foreign = `${path}.other`;
  await writeSafetensors(foreign, new Map([["w", { dtype: "F32", shape: [1], data: new Float32Array(1) }]]));
  await assertRejects(() => loadCheckpoint(foreign), Error, "not an ict-kit checkpoint");
});
