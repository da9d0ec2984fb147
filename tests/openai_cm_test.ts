// Importing openai/consistency_models' checkpoints (lib/openai_cm.ts, tasks/import_openai_cm.ts) and the
// denoise task: the kit's import + f_θ against their own code's outputs (the fixture of
// tests/reference/openai_cm_reference.py: a small UNetModel with random weights, saved with torch.save, and its
// KarrasDenoiser.denoise outputs), the released architectures, and the refusals.
import { assert, assertEquals, assertMatch, assertRejects, assertThrows } from "@std/assert";
import * as tf from "@tensorflow/tfjs";
import { readNpz, writeNpz } from "../lib/io/npz.ts";
import { readTorchFile, type TorchTensor } from "../lib/io/torch_pickle.ts";
import { buildNetwork, modelConfig } from "../lib/models/index.ts";
import { oneHotLabels } from "../lib/models/network.ts";
import { countParams, EVAL } from "../lib/nn/params.ts";
import { scalings } from "../lib/parameterization.ts";
import {
  admConfigFromFlags,
  archFlags,
  convertOpenAiState,
  denoiseImages,
  downloadReleased,
  importOpenAiCheckpoint,
  karrasSigma,
  nchwToNhwc,
  openAiParamPairs,
  openAiStateShapes,
  qkvSourceRow,
  resolveFlags,
  TINY_OPENAI_CM_FIXTURE,
} from "../lib/openai_cm.ts";
import { loadForSampling } from "../lib/train/trainer.ts";

await tf.setBackend("cpu");

const DIR = new URL("./fixtures/openai_cm/", import.meta.url).pathname;
const { checkpoint: PT, arch: ARCH } = TINY_OPENAI_CM_FIXTURE;
const REF = readNpz(`${DIR}denoise.npz`);

function f32(name: string): Float32Array {
  const a = REF.get(name);
  if (!a) throw new Error(`denoise.npz has no ${name}`);
  return a.data as Float32Array;
}

async function sha256(path: string): Promise<string> {
  const d = await crypto.subtle.digest("SHA-256", await Deno.readFile(path));
  return Array.from(new Uint8Array(d), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Imports the committed fixture as a run directory (what notebook 06 does in CI) and loads it for sampling. */
async function importFixture() {
  const out = await Deno.makeTempDir({ prefix: "openai_cm_run_" });
  const imported = await importOpenAiCheckpoint({ checkpoint: PT, arch: ARCH, out });
  return { out, imported, ...(await loadForSampling(imported.checkpoint)) };
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  assertEquals(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

const [N, C, H, W] = REF.get("x")!.shape;
const X = nchwToNhwc(f32("x"), N, C, H, W);
const SIGMAS = Array.from(f32("sigma"));
const CLASSES = Array.from(REF.get("y")!.data as Int32Array);
const WANT = nchwToNhwc(f32("denoised"), N, C, H, W);
const WANT_F = nchwToNhwc(f32("model_output"), N, C, H, W);
// Measured (2026-11-30, cpu and wasm backends): max |Δf_θ| ≤ 3.3e-6 at every σ (|f_θ| ≤ 1.6); max |ΔF_θ| ≤ 6.6e-6
// except at σ_min, 4.1e-5, where c_noise = 250·ln 0.002 ≈ −1554 is only good to ~1e-4 in float32 and the sines
// of the embedding differ by that much. The bounds leave a factor of ~5; a wrong mapping or c_noise gives O(0.1–1).
const TOL_F_THETA = 2e-5;
const TOL_RAW = 2e-4;

Deno.test("the tiny OpenAI UNet: import + f_θ reproduce their KarrasDenoiser.denoise at five σ", async () => {
  const { out, imported, model, params, config } = await importFixture();
  try {
    const got = await denoiseImages(model, params, X, N, SIGMAS, CLASSES);
    const err = maxAbsDiff(got, WANT);
    assert(err < TOL_F_THETA, `f_θ: max |kit − openai| = ${err}`);
    // The raw network F_θ(c_in·x, c_noise) (their model_output), which σ_min's boundary condition does not hide.
    const s = scalings(Float64Array.from(SIGMAS), { embedding: model.network.embedding });
    const raw = tf.tidy(() =>
      model.network.apply(
        params,
        tf.mul(tf.tensor(X, [N, H, W, C]), s.cIn),
        s.cNoise,
        EVAL,
        oneHotLabels(CLASSES, 10),
      )
    );
    const errRaw = maxAbsDiff(await raw.data() as Float32Array, WANT_F);
    tf.dispose([raw, s.cSkip, s.cOut, s.cIn, s.cNoise]);
    assert(errRaw < TOL_RAW, `F_θ: max |kit − openai| = ${errRaw}`);
    // The run directory: the source's sha256, its config, a one-checkpoint run at step 0.
    assertEquals(imported.record.sha256, await sha256(PT));
    const record = JSON.parse(await Deno.readTextFile(`${out}/import.json`));
    assertEquals(record.sha256, imported.record.sha256);
    assertEquals(record.parameters, 355_235);
    assertEquals(JSON.parse(await Deno.readTextFile(`${out}/config.json`)).model, config.model);
    assertEquals(
      config.model,
      admConfigFromFlags(resolveFlags(JSON.parse(await Deno.readTextFile(ARCH)), ARCH)),
    );
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});

Deno.test("the denoise task reproduces their outputs from an .npz in their NCHW layout", async () => {
  const { out } = await importFixture();
  try {
    const rows = SIGMAS.map((s, i) => s === 2.5 ? i : -1).filter((i) => i >= 0);
    const per = C * H * W;
    const pick = (a: Float32Array) => {
      const o = new Float32Array(rows.length * per);
      rows.forEach((r, j) => o.set(a.subarray(r * per, (r + 1) * per), j * per));
      return o;
    };
    await writeNpz(`${out}/x.npz`, { x: { data: pick(f32("x")), shape: [rows.length, C, H, W] } });
    const cmd = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        new URL("../tasks/denoise.ts", import.meta.url).pathname,
        "--run",
        out,
        "--input",
        `${out}/x.npz`,
        "--layout",
        "nchw",
        "--sigma",
        "2.5",
        "--class",
        rows.map((r) => CLASSES[r]).join(","),
        "--out",
        `${out}/y.npz`,
        "--backend",
        "cpu",
      ],
      stdout: "piped",
      stderr: "piped",
    });
    const res = await cmd.output();
    const text = new TextDecoder().decode(res.stdout) + new TextDecoder().decode(res.stderr);
    assert(res.success, text);
    const y = readNpz(`${out}/y.npz`).get("arr_0")!;
    assertEquals(y.shape, [rows.length, C, H, W]);
    const err = maxAbsDiff(y.data as Float32Array, pick(f32("denoised")));
    assert(err < TOL_F_THETA, `max |kit − openai| = ${err}`);
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});

Deno.test("qkv rows: the kit's [head, channel, (q,k,v)] takes OpenAI's (three h d) row", () => {
  // C = 4 channels (2 heads of 2): kit row (h·2 + j)·3 + t  ←  OpenAI row t·4 + h·2 + j.
  assertEquals(Array.from({ length: 12 }, (_, r) => qkvSourceRow(r, 4)), [
    0,
    4,
    8,
    1,
    5,
    9,
    2,
    6,
    10,
    3,
    7,
    11,
  ]);
});

Deno.test("the released architectures: ImageNet 64 is the kit's ADM size, LSUN 256 is in the model list", async () => {
  const im = admConfigFromFlags((await archFlags("imagenet64")).flags);
  assertEquals(
    countParams(buildNetwork(im).specs),
    countParams(buildNetwork(modelConfig("adm-imagenet64")).specs),
  );
  assertEquals(im, modelConfig("adm-imagenet64-openai-cm"));
  assertEquals(
    admConfigFromFlags((await archFlags("bedroom256")).flags),
    modelConfig("adm-lsun256-openai-cm"),
  );
  assertEquals(admConfigFromFlags((await archFlags("cat256")).flags), modelConfig("adm-lsun256-openai-cm"));
  // Their names and shapes at a few places, as UNetModel builds them (PyTorch layouts).
  const pairs = new Map(openAiParamPairs(im).map((p) => [p.openai, p]));
  assertEquals(pairs.size, buildNetwork(im).specs.length);
  assertEquals(pairs.get("label_emb.weight")?.kit, "map_label.weight");
  assertEquals(pairs.get("input_blocks.4.0.in_layers.2.weight")?.kit, "enc.32x32_down.conv0.weight");
  assertEquals(pairs.get("input_blocks.5.1.qkv.weight")?.kit, "enc.32x32_block0.qkv.weight");
  assertEquals(pairs.get("middle_block.1.proj_out.weight")?.kit, "dec.8x8_in0.proj.weight");
  assertEquals(pairs.get("middle_block.2.out_layers.3.weight")?.kit, "dec.8x8_in1.conv1.weight");
  assertEquals(pairs.get("output_blocks.3.2.emb_layers.1.weight")?.kit, "dec.16x16_up.affine.weight");
  assertEquals(pairs.get("output_blocks.15.0.skip_connection.weight")?.kit, "dec.64x64_block3.skip.weight");
  assertEquals(pairs.get("out.2.weight")?.kit, "out_conv.weight");
  // CM's Karras grid: σ_max … σ_min; their two-step σ of CD on ImageNet 64 (ts = 0,22,39 of 40) by hand:
  // (80^(1/7) + 22/39·(0.002^(1/7) − 80^(1/7)))^7 = 1.3824.
  assert(Math.abs(karrasSigma(0, 40) - 80) < 1e-9 && Math.abs(karrasSigma(39, 40) - 0.002) < 1e-12);
  assert(Math.abs(karrasSigma(22, 40) - 1.3824) < 1e-4, `${karrasSigma(22, 40)}`);
});

Deno.test("the released networks: exactly the names and shapes of their create_model's state_dict", async () => {
  // tests/fixtures/openai_cm/released_shapes.json: written by their code with launch.sh's flags.
  const theirs: Record<string, Record<string, number[]>> = JSON.parse(
    await Deno.readTextFile(`${DIR}released_shapes.json`),
  );
  for (const arch of ["imagenet64", "bedroom256", "cat256"]) {
    const ours = openAiStateShapes(admConfigFromFlags((await archFlags(arch)).flags));
    const want = theirs[arch === "cat256" ? "bedroom256" : arch];
    assertEquals(Object.fromEntries(ours), want, arch);
  }
  assertEquals(Object.keys(theirs.imagenet64).length, 541);
  assertEquals(Object.keys(theirs.bedroom256).length, 566);
});

Deno.test('--arch as a JSON file takes their CLI spellings (True, "32,16,8") and refuses what the kit cannot build', async () => {
  const dir = await Deno.makeTempDir();
  try {
    const flags = JSON.parse(await Deno.readTextFile(ARCH));
    const cli = { ...flags, class_cond: "True", resblock_updown: "True", use_scale_shift_norm: "True" };
    await Deno.writeTextFile(`${dir}/cli.json`, JSON.stringify(cli));
    assertEquals(
      admConfigFromFlags((await archFlags(`${dir}/cli.json`)).flags),
      admConfigFromFlags((await archFlags(ARCH)).flags),
    );
    const refused: [Record<string, unknown>, RegExp][] = [
      [{ resblock_updown: false }, /resblock_updown false/],
      [{ learn_sigma: true }, /learn_sigma true/],
      [{ num_head_channels: -1 }, /num_head_channels -1/],
      [{ num_channels: 48 }, /GroupNorm32 needs a multiple of 32/],
      [{ sigma_min: 0.001 }, /sigma_min 0.001/],
      [{ use_flash: true }, /unknown model flag "use_flash"/],
      [{ class_cond: "maybe" }, /class_cond must be true or false/],
      [{ image_size: 48, channel_mult: "" }, /no default channel_mult/],
    ];
    for (const [change, message] of refused) {
      await Deno.writeTextFile(`${dir}/bad.json`, JSON.stringify({ ...flags, ...change }));
      const e = await assertRejects(() =>
        archFlags(`${dir}/bad.json`).then((a) => admConfigFromFlags(a.flags))
      );
      assertMatch((e as Error).message, message);
    }
    await assertRejects(() => archFlags("imagenet128"), Error, "use one of imagenet64, bedroom256, cat256");
    await assertRejects(() => archFlags(`${dir}/none.json`), Error, "file not found");
    await Deno.writeTextFile(`${dir}/list.json`, "[1, 2]");
    await assertRejects(() => archFlags(`${dir}/list.json`), Error, "JSON object");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("refused: a missing checkpoint, a wrong-shaped / missing / extra tensor, the wrong --arch", async () => {
  const out = await Deno.makeTempDir();
  try {
    await assertRejects(
      () => importOpenAiCheckpoint({ checkpoint: `${out}/nope.pt`, arch: ARCH, out: `${out}/run` }),
      Error,
      "file not found (deno task data:openai-cm",
    );
    await Deno.copyFile(PT, `${out}/edm_imagenet64_ema.pt`);
    await assertRejects(
      () =>
        importOpenAiCheckpoint({ checkpoint: `${out}/edm_imagenet64_ema.pt`, arch: ARCH, out: `${out}/run` }),
      Error,
      "not a consistency model",
    );
    const config = admConfigFromFlags((await archFlags(ARCH)).flags);
    const state = readTorchFile(await Deno.readFile(PT), PT);
    const wrong = new Map(state);
    const t = state.get("input_blocks.1.0.in_layers.2.weight")!;
    wrong.set("input_blocks.1.0.in_layers.2.weight", { ...t, shape: [t.shape[1], t.shape[0], 9, 1] });
    assertThrows(
      () => convertOpenAiState(wrong, config, "x.pt"),
      Error,
      "input_blocks.1.0.in_layers.2.weight has shape [32,32,9,1], the architecture needs [32,32,3,3]",
    );
    const missing = new Map(state);
    missing.delete("middle_block.1.qkv.bias");
    missing.set("middle_block.3.qkv.bias", state.get("middle_block.1.qkv.bias") as TorchTensor);
    const e = assertThrows(() => convertOpenAiState(missing, config, "x.pt"));
    assertMatch((e as Error).message, /middle_block\.1\.qkv\.bias is missing/);
    assertMatch((e as Error).message, /middle_block\.3\.qkv\.bias is not part of the architecture/);
    assertMatch((e as Error).message, /check --arch/);
    // The fixture against the ImageNet 64 architecture: refused, listing the first ten problems.
    assertThrows(
      () => convertOpenAiState(state, modelConfig("adm-imagenet64-openai-cm") as never, "x.pt"),
      Error,
      "more",
    );
    // A run directory that has checkpoints is not overwritten without --force.
    await importOpenAiCheckpoint({ checkpoint: PT, arch: ARCH, out: `${out}/run` });
    await assertRejects(
      () => importOpenAiCheckpoint({ checkpoint: PT, arch: ARCH, out: `${out}/run` }),
      Error,
      "--force",
    );
    await importOpenAiCheckpoint({ checkpoint: PT, arch: ARCH, out: `${out}/run`, force: true });
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});

/** A local stand-in for openaipublic.blob.core.windows.net: serves `body` for every path, counting requests. */
function serve(body: () => Uint8Array) {
  let requests = 0;
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, (req) => {
    requests++;
    const path = new URL(req.url).pathname;
    if (!path.startsWith("/consistency/")) return new Response("not found", { status: 404 });
    return new Response(body() as Uint8Array<ArrayBuffer>, {
      headers: { "content-type": "application/octet-stream" },
    });
  });
  return { server, base: `http://127.0.0.1:${server.addr.port}/consistency/`, requests: () => requests };
}

Deno.test("data:openai-cm: downloads atomically, records the sha256, refuses a wrong hash or a cut-off file", async () => {
  const pt = await Deno.readFile(PT);
  const good = await sha256(PT);
  let body = pt;
  const { server, base, requests } = serve(() => body);
  const dir = await Deno.makeTempDir();
  try {
    // No pinned hash: the file is written and its sha256 recorded.
    const first = await downloadReleased("cd_imagenet64_l2", { dir, baseUrl: base });
    assertEquals([first.sha256, first.bytes, first.verified, first.cached], [good, pt.length, false, false]);
    assertEquals(await Deno.readFile(`${dir}/cd_imagenet64_l2.pt`), pt);
    assertEquals(
      await Deno.readTextFile(`${dir}/cd_imagenet64_l2.pt.sha256`),
      `${good}  cd_imagenet64_l2.pt\n`,
    );
    // Pinned with --sha256 and already there: not downloaded again.
    const n = requests();
    const again = await downloadReleased("cd_imagenet64_l2", { dir, baseUrl: base, sha256: good });
    assertEquals([again.cached, again.verified, requests()], [true, true, n]);
    // A corrupt download (one byte flipped) against the expected sha256: refused, nothing written.
    body = pt.slice();
    body[1000] ^= 0xff;
    await assertRejects(
      () => downloadReleased("ct_imagenet64", { dir, baseUrl: base, sha256: good }),
      Error,
      `expected ${good}: the download is corrupt`,
    );
    // A cut-off file without a hash to check: refused as incomplete.
    body = pt.slice(0, pt.length - 100);
    await assertRejects(
      () => downloadReleased("ct_imagenet64", { dir, baseUrl: base }),
      Error,
      "not a complete PyTorch zip archive",
    );
    body = new TextEncoder().encode("<html>BlobNotFound</html>");
    await assertRejects(() => downloadReleased("ct_imagenet64", { dir, baseUrl: base }), Error, "error page");
    assertEquals([...Deno.readDirSync(dir)].map((e) => e.name).sort(), [
      "cd_imagenet64_l2.pt",
      "cd_imagenet64_l2.pt.sha256",
    ]);
    await assertRejects(
      () => downloadReleased("ct_imagenet64", { dir, baseUrl: `${base}x/../../nope/` }),
      Error,
      "404",
    );
    await assertRejects(() => downloadReleased("ct_imagenet128", { dir }), Error, "cd_imagenet64_lpips");
    await assertRejects(
      () => downloadReleased("ct_imagenet64", { dir, sha256: "abc" }),
      Error,
      "64 hexadecimal",
    );
  } finally {
    await server.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
});
