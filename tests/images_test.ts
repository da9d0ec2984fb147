// Images out of the kit (uint8 conversion, grids, PNG files, toy scatter rasters) and standalone plot HTML.
import { assert, assertEquals, assertMatch, assertRejects, assertThrows } from "@std/assert";
import * as tf from "@tensorflow/tfjs";
import {
  imageGrid,
  quantize,
  readPng,
  scatterImage,
  toUint8,
  writeImageGrid,
  writePng,
} from "../lib/images.ts";
import { figure, line, writePlotHtml } from "../lib/plot.ts";
import { Rng } from "../lib/rng.ts";

await tf.setBackend("cpu");

async function tempDir(): Promise<string> {
  return await Deno.makeTempDir({ prefix: "ict-images-test-" });
}

function randomBytes(n: number, seed: number): Uint8Array {
  const r = Rng.seeded(seed);
  return Uint8Array.from({ length: n }, () => r.int(0, 255));
}

Deno.test("toUint8 is EDM's (x·127.5 + 128).clip(0, 255).to(uint8): −1 → 0, 0 → 128, 1 → 255", async () => {
  const x = new Float32Array([-1, 0, 1, -2, 2, NaN, -0.5, 0.5, 0.3 / 127.5, -0.3 / 127.5, 0.999, -0.999]);
  // −0.5 → floor(64.25); 0.5 → floor(191.75); ±0.3/127.5 → floor(128.3), floor(127.7); ±0.999 → 255, 0.
  const expected = [0, 128, 255, 0, 255, 0, 64, 191, 128, 127, 255, 0];
  assertEquals(Array.from(await toUint8(x)), expected);
  const t = tf.tensor4d(x, [1, 2, 2, 3]);
  assertEquals(Array.from(await toUint8(t)), expected, "tensor input");
  t.dispose();
  // floor after +128, not Math.round of x·127.5 + 128: just below 129 stays 128.
  assertEquals(Array.from(quantize([(129 - 128) / 127.5 - 1e-9, 1 / 127.5])), [128, 129]);
});

Deno.test("imageGrid puts image i at row ⌊i/cols⌋, column i mod cols, with padding around every cell", () => {
  const [n, h, w, c, cols, pad] = [5, 2, 3, 3, 3, 1];
  const value = (i: number, y: number, x: number, ch: number) => 1 + i * 40 + y * 10 + x * 3 + ch;
  const images = new Uint8Array(n * h * w * c);
  for (let i = 0; i < n; i++) {
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        for (let ch = 0; ch < c; ch++) images[((i * h + y) * w + x) * c + ch] = value(i, y, x, ch);
      }
    }
  }
  const g = imageGrid(images, n, h, w, c, cols, pad);
  assertEquals([g.width, g.height, g.channels], [3 * (w + pad) + pad, 2 * (h + pad) + pad, 3]);
  assertEquals(g.data.length, g.width * g.height * 3);
  const at = (y: number, x: number, ch: number) => g.data[(y * g.width + x) * 3 + ch];
  let inside = 0;
  for (let gy = 0; gy < g.height; gy++) {
    for (let gx = 0; gx < g.width; gx++) {
      const [r, cc] = [Math.floor((gy - pad) / (h + pad)), Math.floor((gx - pad) / (w + pad))];
      const [y, x] = [gy - pad - r * (h + pad), gx - pad - cc * (w + pad)];
      const i = r * cols + cc;
      const isPixel = gy >= pad && gx >= pad && y < h && x < w && i < n;
      for (let ch = 0; ch < 3; ch++) {
        assertEquals(at(gy, gx, ch), isPixel ? value(i, y, x, ch) : 0, `grid (${gy}, ${gx}) channel ${ch}`);
      }
      if (isPixel) inside++;
    }
  }
  assertEquals(inside, n * h * w);
  // Image 4 (row 1, column 1), its pixel (1, 2), by hand: grid row 1 + 3 + 1 = 5, column 1 + 4 + 2 = 7.
  assertEquals(at(5, 7, 0), value(4, 1, 2, 0));

  // Grey stays one channel; default cols = ⌈√n⌉; pad 0 packs tightly.
  const grey = imageGrid(Uint8Array.from([1, 2, 3, 4]), 4, 1, 1, 1, undefined, 0);
  assertEquals([grey.width, grey.height, grey.channels, Array.from(grey.data)], [2, 2, 1, [1, 2, 3, 4]]);
  assertThrows(() => imageGrid(new Uint8Array(5), 1, 2, 2, 1), Error, "bytes");
});

Deno.test("PNG round trip is byte exact (RGB, grey, RGBA) and leaves no temp file", async () => {
  const dir = await tempDir();
  try {
    for (const [channels, seed] of [[3, 1], [1, 2], [4, 3]]) {
      const img = { data: randomBytes(17 * 9 * channels, seed), width: 17, height: 9, channels };
      const path = `${dir}/img${channels}.png`;
      await writePng(path, img);
      await writePng(path, img); // over an existing file
      const back = await readPng(path);
      assertEquals([back.width, back.height, back.channels], [17, 9, channels]);
      assertEquals(back.data, img.data, `${channels} channels`);
    }
    const names = [];
    for await (const e of Deno.readDir(dir)) names.push(e.name);
    assertEquals(names.sort(), ["img1.png", "img3.png", "img4.png"]);
    await assertRejects(() =>
      writePng(`${dir}/bad.png`, { data: new Uint8Array(5), width: 2, height: 2, channels: 1 })
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("writeImageGrid: a [-1, 1] batch tensor to a PNG grid", async () => {
  const dir = await tempDir();
  try {
    const x = tf.tensor4d([-1, 1, 0, 1], [4, 1, 1, 1]);
    await writeImageGrid(`${dir}/grid.png`, x, 2, 1);
    x.dispose();
    const back = await readPng(`${dir}/grid.png`);
    assertEquals([back.width, back.height, back.channels], [5, 5, 1]);
    assertEquals([back.data[1 * 5 + 1], back.data[1 * 5 + 3], back.data[3 * 5 + 1], back.data[3 * 5 + 3]], [
      0,
      255,
      128,
      255,
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("scatterImage draws a dot where a point is, samples over reference, y up", () => {
  const size = 101; // range [−1, 1]: 50 pixels per unit, data 0 at pixel 50
  const img = scatterImage(new Float32Array([0.5, -0.3, 5, 5, NaN, 0]), {
    size,
    range: 1,
    reference: new Float32Array([-0.5, 0.5, 0.5, -0.3]),
  });
  assertEquals([img.width, img.height, img.channels], [size, size, 3]);
  const px = (row: number, col: number) =>
    Array.from(img.data.subarray((row * size + col) * 3, (row * size + col) * 3 + 3));
  const dark = [20, 40, 140], light = [180, 200, 235], white = [255, 255, 255];
  // Sample (0.5, −0.3): column 75, row 50 + 15 = 65; a 3×3 dot, drawn over the reference point there.
  for (const [dr, dc] of [[0, 0], [-1, -1], [1, 1], [-1, 1], [1, -1]]) {
    assertEquals(px(65 + dr, 75 + dc), dark);
  }
  assertEquals(px(65, 77), white);
  assertEquals(px(63, 75), white);
  // Reference (−0.5, 0.5): column 25, row 25.
  assertEquals(px(25, 25), light);
  assertEquals(px(25, 27), white);
  let darkCount = 0, lightCount = 0;
  for (let i = 0; i < size * size; i++) {
    const p = px(Math.floor(i / size), i % size).join();
    if (p === dark.join()) darkCount++;
    if (p === light.join()) lightCount++;
  }
  assertEquals(darkCount, 9, "one dot: (5, 5) is out of range and NaN is skipped");
  assertEquals(lightCount, 9);

  // Auto range: r = 1.05 · max |coordinate|, so (2, 0) sits at (2 + 2.1) / 4.2 of the width.
  const auto = scatterImage(new Float32Array([2, 0]), { size: 43, dot: 1 });
  const col = Math.round((4.1 / 4.2) * 42), row = 21;
  assertEquals(Array.from(auto.data.subarray((row * 43 + col) * 3, (row * 43 + col) * 3 + 3)), dark);
});

Deno.test("writePlotHtml: a standalone page with the plotly bundle inlined and the figures as JSON", async () => {
  const dir = await tempDir();
  try {
    const figs = [
      figure([line([1, 2, 3], [4, 5, 6], "loss </script><b>")], { title: "a & b", log: "y" }),
      figure([line([0, 1], [1, 0])]),
    ];
    const path = `${dir}/plots.html`;
    await writePlotHtml(path, figs, "Run <1>");
    const html = await Deno.readTextFile(path);
    const bundle = await Deno.readTextFile(new URL(import.meta.resolve("plotly.js-dist-min")));
    assert(bundle.length > 1e6 && html.includes(bundle), "the whole plotly bundle is inlined");
    assert(!/<script[^>]+src=/.test(html), "no external scripts");
    assert(html.includes("<title>Run &lt;1&gt;</title>"));
    const m = html.match(/<script type="application\/json" id="figures">(.*?)<\/script>/s);
    assert(m, "figures JSON block");
    assertEquals(JSON.parse(m[1]), JSON.parse(JSON.stringify(figs)));
    assert(!m[1].includes("</script"), "the trace name cannot close the script element");
    // The page's own script parses, and plots every figure.
    const own = html.slice(html.lastIndexOf("<script>") + 8, html.lastIndexOf("</script>"));
    new Function(own);
    assertMatch(own, /Plotly\.newPlot/);
    for (const i of [0, 1]) assert(html.includes(`<div id="fig-${i}"></div>`));
    // A single figure works too, and rewriting replaces the file.
    await writePlotHtml(path, figs[1]);
    const single = (await Deno.readTextFile(path)).match(/id="figures">(.*?)<\/script>/s)!;
    assertEquals(JSON.parse(single[1]), JSON.parse(JSON.stringify([figs[1]])));
    const names = [];
    for await (const e of Deno.readDir(dir)) names.push(e.name);
    assertEquals(names, ["plots.html"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
