// Images out of the kit: [-1, 1] floats to uint8, grids of samples, PNG files (via sharp), and a scatter
// raster of 2-D toy samples. Images are NHWC; raw pixel data is row-major, channels interleaved.
import * as tf from "@tensorflow/tfjs";
import type { default as Sharp } from "sharp";
import { writeFileAtomic } from "./io/fs.ts";

let sharpModule: typeof Sharp | undefined;
/**
 * sharp (libvips, a native addon) is loaded on first use only, so processes that write no PNG never load it;
 * one libvips thread and no cache keep its native state small.
 */
async function loadSharp(): Promise<typeof Sharp> {
  if (!sharpModule) {
    sharpModule = (await import("sharp")).default;
    sharpModule.concurrency(1);
    sharpModule.cache(false);
  }
  return sharpModule;
}

/** Raw 8-bit pixels, row-major, `channels` interleaved values per pixel (1 grey, 3 RGB, 4 RGBA). */
export interface RawImage {
  data: Uint8Array;
  width: number;
  height: number;
  channels: number;
}

/**
 * [-1, 1] → uint8 exactly as EDM's generate.py: `(x * 127.5 + 128).clip(0, 255).to(uint8)`, i.e.
 * floor(x·127.5 + 128) clipped to [0, 255] = round-half-up of (x + 1)·127.5. So −1 → 0, 0 → 128, 1 → 255;
 * the half step (x + 1)·127.5 = k + 0.5 goes up to k + 1. Computed in float64, where x·127.5 + 128 is exact
 * for float32 x (EDM's images are float64 there too); a float32 computation can differ by 1 just below a
 * half step. NaN → 0.
 */
export function quantize(values: ArrayLike<number>): Uint8Array {
  const out = new Uint8Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const v = Math.floor(values[i] * 127.5 + 128);
    out[i] = v >= 255 ? 255 : v > 0 ? v : 0; // NaN fails both tests → 0
  }
  return out;
}

/** `quantize` for a tensor (read asynchronously, so WebGPU works) or host data; same layout out. */
export async function toUint8(x: tf.Tensor4D | Float32Array): Promise<Uint8Array> {
  return quantize(x instanceof tf.Tensor ? ((await x.data()) as Float32Array) : x);
}

/**
 * Tiles n images (n·h·w·c bytes, NHWC) into one, row-major: image i in grid row ⌊i/cols⌋, column i mod cols.
 * Like torchvision's make_grid: `pad` pixels of `padValue` (default 0, black) between cells and around the
 * border, and empty trailing cells filled with it. Default cols = ⌈√n⌉. Channels are kept (c = 1 stays grey).
 */
export function imageGrid(
  images: Uint8Array,
  n: number,
  h: number,
  w: number,
  c: number,
  cols?: number,
  pad = 2,
  padValue = 0,
): RawImage {
  for (const [k, v] of Object.entries({ n, h, w, c, pad })) {
    if (!Number.isInteger(v) || v < (k === "pad" ? 0 : 1)) throw new Error(`imageGrid: bad ${k} = ${v}`);
  }
  if (images.length !== n * h * w * c) {
    throw new Error(`imageGrid: ${images.length} bytes, expected n·h·w·c = ${n}·${h}·${w}·${c}`);
  }
  const nc = cols ?? Math.ceil(Math.sqrt(n));
  if (!Number.isInteger(nc) || nc < 1) throw new Error(`imageGrid: bad cols = ${cols}`);
  const nr = Math.ceil(n / nc);
  const width = nc * (w + pad) + pad;
  const height = nr * (h + pad) + pad;
  const data = new Uint8Array(width * height * c).fill(padValue);
  const rowBytes = w * c;
  for (let i = 0; i < n; i++) {
    const x0 = pad + (i % nc) * (w + pad);
    const y0 = pad + Math.floor(i / nc) * (h + pad);
    for (let y = 0; y < h; y++) {
      const src = (i * h + y) * rowBytes;
      data.set(images.subarray(src, src + rowBytes), ((y0 + y) * width + x0) * c);
    }
  }
  return { data, width, height, channels: c };
}

function checkImage(img: RawImage): void {
  const { data, width, height, channels } = img;
  if (![1, 3, 4].includes(channels)) throw new Error(`PNG: ${channels} channels (1, 3 or 4 supported)`);
  if (!(width >= 1 && height >= 1) || data.length !== width * height * channels) {
    throw new Error(`PNG: ${data.length} bytes for ${width}×${height}×${channels}`);
  }
}

/** PNG bytes (8-bit; grey for 1 channel, RGB, RGBA). */
export async function encodePng(img: RawImage): Promise<Uint8Array> {
  checkImage(img);
  const { width, height, channels } = img;
  const sharp = await loadSharp();
  let s = sharp(img.data, { raw: { width, height, channels: channels as 1 | 3 | 4 } });
  if (channels === 1) s = s.toColourspace("b-w"); // else sharp writes grey as RGB
  return new Uint8Array(await s.png().toBuffer());
}

/** Writes a PNG atomically: a temp file in the same folder, then rename (no half-written file on failure). */
export async function writePng(path: string, img: RawImage): Promise<void> {
  await writeFileAtomic(path, await encodePng(img));
}

/** Reads an 8-bit PNG back to raw pixels, with the file's channel count (grey stays 1 channel). */
/** Nearest-neighbour upscaling by a whole factor (small digits stay crisp when shown). */
export function upscale(img: RawImage, zoom: number): RawImage {
  if (!(Number.isInteger(zoom) && zoom >= 1)) {
    throw new Error(`upscale: zoom must be an integer >= 1, got ${zoom}`);
  }
  const { width, height, channels } = img;
  const out = new Uint8Array(width * height * channels * zoom * zoom);
  for (let y = 0; y < height * zoom; y++) {
    for (let x = 0; x < width * zoom; x++) {
      const src = (Math.floor(y / zoom) * width + Math.floor(x / zoom)) * channels;
      out.set(img.data.subarray(src, src + channels), (y * width * zoom + x) * channels);
    }
  }
  return { width: width * zoom, height: height * zoom, channels, data: out };
}

/** Show an image in the Deno Jupyter kernel (a PNG output, with a text fallback), scaled up `zoom` times. */
export async function showImage(img: RawImage, caption = "image", zoom = 1): Promise<void> {
  if (!("jupyter" in Deno)) {
    throw new Error("showImage runs inside the Deno Jupyter kernel; outside it, use writePng");
  }
  const png = await encodePng(zoom > 1 ? upscale(img, zoom) : img);
  let b64 = "";
  for (let i = 0; i < png.length; i += 0x8000) b64 += String.fromCharCode(...png.subarray(i, i + 0x8000));
  await Deno.jupyter.display({ "image/png": btoa(b64), "text/plain": `[image: ${caption}]` }, {
    raw: true,
  });
  await new Promise((resolve) => setTimeout(resolve, 100)); // as showPlot: let the message leave first
}

export async function readPng(path: string): Promise<RawImage> {
  const bytes = await Deno.readFile(path); // a buffer, not the path: sharp's cache can't serve a stale file
  const sharp = await loadSharp();
  const meta = await sharp(bytes).metadata();
  if (meta.channels === 2) throw new Error(`readPng: grey + alpha PNGs are not supported (${path})`);
  if (meta.depth !== "uchar") {
    throw new Error(`readPng: ${meta.depth} samples, only 8-bit supported (${path})`);
  }
  let s = sharp(bytes);
  if (meta.channels === 1) s = s.toColourspace("b-w"); // else sharp reads grey as RGB
  const { data, info } = await s.raw().toBuffer({ resolveWithObject: true });
  return { data: new Uint8Array(data), width: info.width, height: info.height, channels: info.channels };
}

/** A batch tensor (NHWC, [-1, 1]) as one PNG grid. */
export async function writeImageGrid(path: string, x: tf.Tensor4D, cols?: number, pad = 2): Promise<void> {
  const [n, h, w, c] = x.shape;
  await writePng(path, imageGrid(await toUint8(x), n, h, w, c, cols, pad));
}

export interface ScatterOptions {
  /** Side of the square image in pixels (default 512). */
  size?: number;
  /**
   * Data range shown on both axes: r for [−r, r], or [lo, hi]. Default: [−r, r] with r = 1.05·max|coordinate|
   * over the samples and the reference (1 if all are 0). Points outside are not drawn.
   */
  range?: number | [number, number];
  /** Points drawn first, in `referenceColor` (e.g. the training data); [M, 2] like `points`. */
  reference?: Float32Array;
  /** Side of each square dot in pixels (default 3). */
  dot?: number;
  color?: [number, number, number];
  referenceColor?: [number, number, number];
  background?: [number, number, number];
}

/**
 * Rasterises 2-D points ([N, 2] interleaved x, y) into an RGB image: white background, reference points in a
 * light colour first, then the points in a dark colour on top. x grows rightwards, y upwards; data value lo
 * maps to the centre of the first pixel and hi to the centre of the last. Non-finite points are skipped.
 */
export function scatterImage(points: Float32Array, opts: ScatterOptions = {}): RawImage {
  const {
    size = 512,
    dot = 3,
    color = [20, 40, 140],
    referenceColor = [180, 200, 235],
    background = [255, 255, 255],
    reference,
  } = opts;
  if (!Number.isInteger(size) || size < 2) throw new Error(`scatterImage: bad size ${size}`);
  if (!Number.isInteger(dot) || dot < 1) throw new Error(`scatterImage: bad dot ${dot}`);
  for (const p of [points, reference]) {
    if (p && p.length % 2 !== 0) throw new Error(`scatterImage: ${p.length} values is not [N, 2]`);
  }
  let lo: number, hi: number;
  if (opts.range === undefined) {
    let r = 0;
    for (const p of [points, reference ?? new Float32Array()]) {
      for (const v of p) if (Number.isFinite(v)) r = Math.max(r, Math.abs(v));
    }
    r = r > 0 ? 1.05 * r : 1;
    [lo, hi] = [-r, r];
  } else {
    [lo, hi] = typeof opts.range === "number" ? [-opts.range, opts.range] : opts.range;
  }
  if (!(Number.isFinite(lo) && Number.isFinite(hi) && hi > lo)) {
    throw new Error(`scatterImage: bad range [${lo}, ${hi}]`);
  }
  const data = new Uint8Array(size * size * 3);
  for (let i = 0; i < data.length; i += 3) data.set(background, i);
  const scale = (size - 1) / (hi - lo);
  const half = Math.floor((dot - 1) / 2); // dot pixels from centre − half
  const draw = (p: Float32Array, rgb: [number, number, number]) => {
    for (let i = 0; i < p.length; i += 2) {
      const x = p[i], y = p[i + 1];
      if (!(x >= lo && x <= hi && y >= lo && y <= hi)) continue; // also NaN
      const cx = Math.round((x - lo) * scale), cy = Math.round((hi - y) * scale);
      for (let yy = Math.max(0, cy - half); yy < Math.min(size, cy - half + dot); yy++) {
        for (let xx = Math.max(0, cx - half); xx < Math.min(size, cx - half + dot); xx++) {
          data.set(rgb, (yy * size + xx) * 3);
        }
      }
    }
  };
  if (reference) draw(reference, referenceColor);
  draw(points, color);
  return { data, width: size, height: size, channels: 3 };
}

/**
 * A picture of samples of shape `sampleShape`: a scatter plot of 2-D points (over `reference` points, if
 * given), or a grid of the first `max` images [H, W, C] in [−1, 1].
 */
export async function sampleImage(
  x: Float32Array,
  sampleShape: readonly number[],
  opts: { reference?: Float32Array; max?: number } = {},
): Promise<RawImage> {
  if (sampleShape.length === 1) return scatterImage(x, { reference: opts.reference });
  const [h, w, c] = sampleShape;
  const n = Math.min(opts.max ?? 100, x.length / (h * w * c));
  return imageGrid(await toUint8(x.subarray(0, n * h * w * c)), n, h, w, c);
}
