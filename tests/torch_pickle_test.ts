// The safe torch.save reader: both formats against values written by torch 1.13
// (tests/reference/make_torch_fixtures.py), views and strides, refusal of files that would run code,
// truncated and corrupted files, the safetensors cache, and the FID Inception download from a local server.
import { assert, assertEquals, assertMatch, assertRejects, assertThrows } from "@std/assert";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { readSafetensors } from "../lib/io/checkpoint.ts";
import {
  downloadInceptionWeights,
  INCEPTION_SAFETENSORS,
  inceptionWeightsPath,
} from "../lib/metrics/inception_weights.ts";
import {
  ALLOWED_GLOBALS,
  loadTorchFile,
  readTorchFile,
  TorchFileError,
  torchFileFormat,
  type TorchTensor,
  torchToSafetensors,
} from "../lib/io/torch_pickle.ts";

const root = new URL("..", import.meta.url).pathname;
const FIX = join(root, "tests/fixtures/torch");
const fixture = (f: string) => Deno.readFileSync(join(FIX, f));

interface Expected {
  dtype: string;
  shape: number[];
  values: number[];
}
const EXPECTED = JSON.parse(Deno.readTextFileSync(join(FIX, "expected.json"))) as {
  state: Record<string, Expected>;
  views: Record<string, Expected>;
  wide_i64: Record<string, Expected>;
  malicious_marker: string;
};

function assertMatches(got: Map<string, TorchTensor>, expected: Record<string, Expected>) {
  assertEquals([...got.keys()], Object.keys(expected));
  for (const [name, e] of Object.entries(expected)) {
    const t = got.get(name)!;
    assertEquals(t.dtype, e.dtype, name);
    assertEquals(t.shape, e.shape, name);
    assertEquals(t.data.length, e.values.length, name);
    assertEquals(Array.from(t.data as ArrayLike<number | bigint>, Number), e.values, name);
  }
}

/** A fresh temp folder, removed by `cleanup()` at the end of the test. */
const made: string[] = [];
async function tempDir(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "ict-torch-pickle-test-" });
  made.push(dir);
  return dir;
}
/** Deno.test, removing the test's temp folders afterwards. */
function testWithTemp(name: string, fn: () => Promise<void>) {
  Deno.test(name, async () => {
    try {
      await fn();
    } finally {
      for (const dir of made.splice(0)) await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  });
}

const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

async function exists(path: string) {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

Deno.test("a state_dict reads to torch's values in the zip and the legacy format", () => {
  assertEquals(torchFileFormat(fixture("state_zip.pt")), "zip");
  assertEquals(torchFileFormat(fixture("state_legacy.pt")), "legacy");
  for (const f of ["state_zip.pt", "state_legacy.pt"]) {
    const sd = readTorchFile(fixture(f), f);
    assertMatches(sd, EXPECTED.state);
    assert(sd.get("0.weight")!.data instanceof Float32Array);
    assert(sd.get("extra.f64")!.data instanceof Float64Array);
    assert(sd.get("1.num_batches_tracked")!.data instanceof BigInt64Array);
    assert(sd.get("extra.i32")!.data instanceof Int32Array);
  }
});

Deno.test("views: storage offsets, shared storages, transposes and expands give torch's values", () => {
  for (const f of ["views_zip.pt", "views_legacy.pt"]) {
    assertMatches(readTorchFile(fixture(f), f), EXPECTED.views);
  }
});

Deno.test("loadTorchFile reads from disk and names a missing file", async () => {
  assertMatches(await loadTorchFile(join(FIX, "state_zip.pt")), EXPECTED.state);
  await assertRejects(() => loadTorchFile(join(FIX, "nope.pt")), Error, "nope.pt: file not found");
});

testWithTemp(
  "files that would run code are refused, naming the global, and nothing is executed",
  async () => {
    const marker = EXPECTED.malicious_marker;
    await Deno.remove(marker).catch(() => {});
    const cases: [string, string][] = [
      ["malicious_reduce.pkl", "posix.system"], // GLOBAL + REDUCE, a bare pickle
      ["malicious_stack_global.pkl", "builtins.eval"], // protocol 4, STACK_GLOBAL
      ["malicious_zip.pt", "posix.system"], // inside data.pkl of a real torch zip file
      ["malicious_legacy.pt", "posix.system"], // inside the object pickle of a legacy file
    ];
    for (const [f, global] of cases) {
      {
        const e = assertThrows(() => readTorchFile(fixture(f), f), Error);
        assert(e instanceof TorchFileError, `${f}: ${e}`);
        assertMatch(
          e.message,
          new RegExp(`^torch file ${f}: refused: .*the Python global ${global.replace(".", "\\.")}`),
        );
        assertMatch(e.message, /Nothing was executed/);
      }
      const out = join(await tempDir(), "out.safetensors");
      await assertRejects(() => torchToSafetensors(join(FIX, f), out), Error, "refused");
      assertEquals(await exists(out), false, "nothing is written for a refused file");
    }
    assertEquals(await exists(marker), false, `${marker} exists: a payload ran`);
    assert(ALLOWED_GLOBALS.includes("collections.OrderedDict"));
    assert(!ALLOWED_GLOBALS.some((g) => /^(builtins|os|posix|subprocess)\./.test(g)));
  },
);

/** A legacy header + one object pickle, built by hand. */
function pickle(...ops: (number | string)[]): Uint8Array {
  const out: number[] = [];
  for (const op of ops) {
    if (typeof op === "number") out.push(op);
    else out.push(...new TextEncoder().encode(op));
  }
  return new Uint8Array(out);
}

Deno.test("hand-made pickles: other globals, calls and opcodes are refused with a clear message", () => {
  const refuse = (bytes: Uint8Array, re: RegExp) => {
    const e = assertThrows(() => readTorchFile(bytes, "x.pt"), Error);
    assert(e instanceof TorchFileError, String(e));
    assertMatch(e.message, re);
  };
  // GLOBAL of modules that look harmless, or of torch itself, is refused too.
  refuse(pickle(0x80, 2, "ctorch\nload\n", 0x29, 0x52, 0x2e), /refused: .*torch\.load/);
  refuse(pickle(0x80, 2, "c__builtin__\ngetattr\n", 0x2e), /refused: .*__builtin__\.getattr/);
  refuse(pickle(0x80, 2, "csubprocess\nPopen\n", 0x2e), /refused: .*subprocess\.Popen/);
  // An allowed name that is not a function: a storage type cannot be called.
  refuse(pickle(0x80, 2, "ctorch\nFloatStorage\n", 0x29, 0x52, 0x2e), /torch\.FloatStorage cannot be called/);
  // Opcodes torch.save never writes (INST, NEWOBJ) and bytes that are no opcode at all.
  refuse(pickle(0x80, 2, 0x69, "os\nsystem\n", 0x2e), /opcode 0x69 \(INST\) .*not supported/);
  refuse(pickle(0x80, 2, 0x81, 0x2e), /opcode 0x81 \(NEWOBJ\)/);
  refuse(pickle(0x80, 2, 0xff, 0x2e), /opcode 0xff at byte 2 is not a pickle opcode: corrupted/);
  // A pickle of plain data is not a torch file; BINGET of an unset memo is corruption.
  refuse(pickle(0x80, 2, 0x7d, 0x2e), /not a torch\.save file \(no magic number/);
  refuse(pickle(0x80, 2, 0x68, 5, 0x2e), /memo key 5 read before it was set/);
  refuse(pickle(0x80, 2, 0x30, 0x2e), /stack underflow/);
  const tar = new Uint8Array(1024);
  tar.set(new TextEncoder().encode("ustar"), 257);
  refuse(tar, /pre-0\.4 tar format of torch\.save is not supported/);
});

Deno.test("truncated files give clear errors at every length; corrupted ones never crash otherwise", () => {
  for (const f of ["state_zip.pt", "state_legacy.pt", "views_legacy.pt"]) {
    const bytes = fixture(f);
    for (let n = 0; n < bytes.length; n++) {
      {
        const e = assertThrows(() => readTorchFile(bytes.subarray(0, n), f), Error);
        assert(e instanceof TorchFileError, `${f} cut at ${n}: ${e}`);
        assertMatch(e.message, /truncated|empty file|corrupted|not a|no data\.pkl/, `${f} cut at ${n}`);
      }
    }
  }
  // Typical messages.
  const legacy = fixture("views_legacy.pt");
  assertMatch(
    assertThrows(() => readTorchFile(legacy.subarray(0, legacy.length - 3), "l.pt"), Error).message,
    /storage \S+ needs \d+ bytes .*: truncated/,
  );
  assertMatch(
    assertThrows(() => readTorchFile(legacy.subarray(0, 300), "l.pt"), Error).message,
    /the pickle ends inside .*: truncated/,
  );
  const zip = fixture("state_zip.pt");
  assertMatch(
    assertThrows(() => readTorchFile(zip.subarray(0, 3000), "z.pt"), Error).message,
    /not a readable zip archive .*truncated or corrupted/,
  );
  assertThrows(() => readTorchFile(new Uint8Array(0), "e.pt"), Error, "e.pt: empty file");
  assertMatch(
    assertThrows(() => readTorchFile(new TextEncoder().encode("<html>"), "h.pt"), Error).message,
    /not a PyTorch file: .*3c 68 74 6d/,
  );

  // Every single-byte corruption either still reads or is a TorchFileError (never another exception).
  // (The zip ones include the zip64 end records torch writes: a corrupted entry count must not make the
  // reader walk millions of entries.)
  for (const f of ["state_legacy.pt", "views_legacy.pt", "views_zip.pt"]) {
    const bytes = fixture(f);
    for (let i = 0; i < bytes.length; i++) {
      for (const v of [0xff, bytes[i] ^ 0x01]) {
        const bad = bytes.slice();
        bad[i] = v;
        try {
          readTorchFile(bad, f);
        } catch (e) {
          assert(e instanceof TorchFileError, `${f} byte ${i} = ${v}: ${(e as Error).stack}`);
        }
      }
    }
  }
});

testWithTemp(
  "torchToSafetensors caches a state_dict: int64 → int32 (checked), bool → u8, source sha256 recorded",
  async () => {
    const dir = await tempDir();
    for (const f of ["state_zip.pt", "state_legacy.pt"]) {
      const out = join(dir, `${f}.safetensors`);
      const r = await torchToSafetensors(join(FIX, f), out, { note: "test" });
      assertEquals(r.sha256, sha256(fixture(f)));
      assertEquals(r.i64ToI32, ["1.num_batches_tracked", "extra.i64"]);
      const { tensors, metadata } = await readSafetensors(out);
      assertEquals(metadata["ict_kit.source_sha256"], r.sha256);
      assertEquals(metadata["ict_kit.source"], f);
      assertEquals(metadata["ict_kit.source_format"], f.includes("zip") ? "zip" : "legacy");
      assertEquals(JSON.parse(metadata["ict_kit.i64_as_i32"]), r.i64ToI32);
      assertEquals(metadata.note, "test");
      assertEquals([...tensors.keys()], Object.keys(EXPECTED.state));
      for (const [name, e] of Object.entries(EXPECTED.state)) {
        const t = tensors.get(name)!;
        const dtype = { I64: "I32", BOOL: "U8" }[e.dtype] ?? e.dtype;
        assertEquals(t.dtype, dtype, name);
        assertEquals(t.shape, e.shape, name);
        assertEquals(Array.from(t.data), e.values, name);
      }
    }
    const out = join(dir, "wide.safetensors");
    await assertRejects(
      () => torchToSafetensors(join(FIX, "wide_i64.pt"), out),
      Error,
      "int64 tensor wide holds 1099511627776, which does not fit the int32",
    );
    assertEquals(await exists(out), false);
    assertMatches(readTorchFile(fixture("wide_i64.pt"), "w"), EXPECTED.wide_i64); // readable, just not cacheable
  },
);

/** Serve `body` at /<name> on 127.0.0.1; counts requests. */
function serve(name: string, body: Uint8Array) {
  let requests = 0;
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (req) => {
    requests++;
    if (new URL(req.url).pathname !== `/${name}`) return new Response("not found", { status: 404 });
    return new Response(body.slice(), { headers: { "content-length": String(body.length) } });
  });
  return {
    url: `http://127.0.0.1:${server.addr.port}/${name}`,
    requests: () => requests,
    close: () => server.shutdown(),
  };
}

testWithTemp(
  "data:inception downloads, checks the sha256 prefix, records the full sha256 and caches safetensors",
  async () => {
    const body = fixture("state_legacy.pt");
    const full = sha256(body);
    const name = `pt_inception-2015-12-05-${full.slice(0, 8)}.pth`;
    const srv = serve(name, body);
    try {
      const dir = join(await tempDir(), "inception");
      assertMatch(
        assertThrows(() => inceptionWeightsPath(dir), Error).message,
        new RegExp(
          `FID Inception weights not found at ${dir}/${INCEPTION_SAFETENSORS}: run \`deno task data:inception`,
        ),
      );

      // Checksum mismatch: nothing is written (not even the folder).
      const wrong = full[0] === "0" ? "10000000" : "00000000";
      assertMatch(
        (await assertRejects(
          () => downloadInceptionWeights(dir, { url: srv.url, sha256Prefix: wrong }),
          Error,
        )).message,
        new RegExp(`sha256 of .* is ${full}, which does not start with ${wrong}.*Nothing was written`),
      );
      assertEquals(await exists(dir), false);

      // The good path, with progress.
      const seen: number[] = [];
      const r = await downloadInceptionWeights(dir, {
        url: srv.url,
        sha256Prefix: full.slice(0, 8),
        onProgress: (got, total) => {
          assertEquals(total, body.length);
          seen.push(got);
        },
      });
      assertEquals(r.action, "downloaded");
      assertEquals(seen.at(-1), body.length);
      assertEquals(r.sha256, full);
      assertEquals(r.tensors, Object.keys(EXPECTED.state).length);
      assertEquals(inceptionWeightsPath(dir), join(dir, INCEPTION_SAFETENSORS));
      assertEquals(await Deno.readFile(join(dir, name)), body);
      assertEquals(await Deno.readTextFile(join(dir, `${name}.sha256`)), `${full}  ${name}\n`);
      const { tensors, metadata } = await readSafetensors(r.path);
      assertEquals(metadata["ict_kit.source_sha256"], full);
      assertEquals(metadata["ict_kit.source_url"], srv.url);
      assertEquals(Array.from(tensors.get("1.running_var")!.data), [1.5, 2]);

      // Second run: the cache is there, no request.
      const before = srv.requests();
      const again = await downloadInceptionWeights(dir, { url: srv.url, sha256Prefix: full.slice(0, 8) });
      assertEquals(again.action, "cached");
      assertEquals(srv.requests(), before);

      // Cache removed but the .pth is there: converted without a download.
      await Deno.remove(r.path);
      const conv = await downloadInceptionWeights(dir, { url: srv.url, sha256Prefix: full.slice(0, 8) });
      assertEquals(conv.action, "converted");
      assertEquals(srv.requests(), before);

      // The task itself, as a user runs it.
      const dir2 = join(await tempDir(), "inc");
      const cmd = await new Deno.Command(Deno.execPath(), {
        args: ["run", "--allow-all", join(root, "tasks/data_inception.ts"), "--dir", dir2, "--url", srv.url]
          .concat(["--sha256-prefix", full.slice(0, 8)]),
        env: { NO_COLOR: "1" },
        stdout: "piped",
        stderr: "piped",
      }).output();
      const text = new TextDecoder().decode(cmd.stdout) + new TextDecoder().decode(cmd.stderr);
      assertEquals(cmd.code, 0, text);
      assertMatch(text, /downloaded, sha256 prefix verified/);
      assertMatch(text, new RegExp(`sha256 ${full}`));
      assert(await exists(join(dir2, INCEPTION_SAFETENSORS)));
      const bad = await new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "--allow-all",
          join(root, "tasks/data_inception.ts"),
          "--dir",
          `${dir2}x`,
          "--url",
          srv.url,
        ]
          .concat(["--sha256-prefix", wrong]),
        stdout: "piped",
        stderr: "piped",
      }).output();
      assertEquals(bad.code, 1);
      assertMatch(new TextDecoder().decode(bad.stderr), /^error: sha256 of .* does not start with/m);
    } finally {
      await srv.close();
    }
  },
);

testWithTemp(
  "data:inception refuses a download whose checksum matches but which would run code",
  async () => {
    const body = fixture("malicious_legacy.pt");
    const full = sha256(body);
    const srv = serve("evil.pth", body);
    try {
      const dir = join(await tempDir(), "inception");
      assertMatch(
        (await assertRejects(
          () => downloadInceptionWeights(dir, { url: srv.url, sha256Prefix: full.slice(0, 8) }),
          Error,
        )).message,
        /refused: .*posix\.system/,
      );
      assertEquals(await exists(dir), false);
      assertEquals(await exists(EXPECTED.malicious_marker), false);
    } finally {
      await srv.close();
    }
  },
);
