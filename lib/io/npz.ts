// NumPy's .npy / .npz files. An .npz is a zip of .npy members (stored, or deflated by np.savez_compressed);
// an .npy is the magic "\x93NUMPY", a version, a little-endian header length, a Python-dict header
// {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), } padded with spaces to a multiple of 64
// bytes, then the raw C-order data. Reads check the header against the data length; writes produce
// version 1.0 .npy members stored uncompressed, which np.load reads.
import { unzipSync, zipSync } from "fflate";
import { writeFileAtomic } from "./fs.ts";

export type NpyDType = "uint8" | "int32" | "int64" | "float32" | "float64";
export type NpyData = Uint8Array | Int32Array | BigInt64Array | Float32Array | Float64Array;
export interface NpyArray {
  dtype: NpyDType;
  shape: number[];
  data: NpyData;
}

const DTYPES = {
  uint8: { descr: "|u1", bytes: 1, of: (b: ArrayBuffer, o: number, n: number) => new Uint8Array(b, o, n) },
  int32: { descr: "<i4", bytes: 4, of: (b: ArrayBuffer, o: number, n: number) => new Int32Array(b, o, n) },
  int64: { descr: "<i8", bytes: 8, of: (b: ArrayBuffer, o: number, n: number) => new BigInt64Array(b, o, n) },
  float32: {
    descr: "<f4",
    bytes: 4,
    of: (b: ArrayBuffer, o: number, n: number) => new Float32Array(b, o, n),
  },
  float64: {
    descr: "<f8",
    bytes: 8,
    of: (b: ArrayBuffer, o: number, n: number) => new Float64Array(b, o, n),
  },
} as const;

const MAGIC = [0x93, ..."NUMPY"].map((c) => typeof c === "number" ? c : c.charCodeAt(0));

/** The dtype of a typed array, for writing. */
function dtypeOf(data: NpyData): NpyDType {
  if (data instanceof Uint8Array) return "uint8";
  if (data instanceof Int32Array) return "int32";
  if (data instanceof BigInt64Array) return "int64";
  if (data instanceof Float32Array) return "float32";
  if (data instanceof Float64Array) return "float64";
  throw new Error(`npy: unsupported array type ${(data as object).constructor.name}`);
}

/** Parse one .npy; `what` names it in errors. Little-endian, C order, the dtypes above. */
export function decodeNpy(bytes: Uint8Array, what: string): NpyArray {
  const fail = (problem: string) => new Error(`${what}: ${problem}`);
  if (bytes.length < 10 || MAGIC.some((m, i) => bytes[i] !== m)) throw fail("not a .npy array (bad magic)");
  const major = bytes[6];
  if (major < 1 || major > 3) throw fail(`unsupported .npy version ${major}`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const lenBytes = major === 1 ? 2 : 4;
  if (bytes.length < 8 + lenBytes) throw fail("truncated .npy header");
  const headerLen = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
  const start = 8 + lenBytes + headerLen;
  if (start > bytes.length) throw fail("truncated .npy header");
  const header = new TextDecoder("latin1").decode(bytes.subarray(8 + lenBytes, start));

  const descr = /'descr'\s*:\s*'([^']*)'/.exec(header)?.[1];
  const fortran = /'fortran_order'\s*:\s*(True|False)/.exec(header)?.[1];
  const shapeText = /'shape'\s*:\s*\(([^)]*)\)/.exec(header)?.[1];
  if (descr === undefined || fortran === undefined || shapeText === undefined) {
    throw fail(`malformed .npy header ${JSON.stringify(header.trim())}`);
  }
  const dims = shapeText.split(",").map((s) => s.trim().replace(/L$/, "")); // "10L": Python 2 files
  const shape = dims.filter((s) => s !== "").map(Number);
  if (!shape.every((d) => Number.isInteger(d) && d >= 0)) throw fail(`bad shape (${shapeText})`);
  const dtype = (Object.keys(DTYPES) as NpyDType[]).find((k) => DTYPES[k].descr.slice(1) === descr.slice(1));
  if (!dtype || !"<|=".includes(descr[0])) {
    throw fail(`dtype '${descr}' is not supported (little-endian uint8, int32, int64, float32, float64 are)`);
  }
  if (fortran === "True" && shape.filter((d) => d > 1).length > 1) {
    throw fail("Fortran-order arrays are not supported");
  }

  const count = shape.reduce((a, b) => a * b, 1);
  const { bytes: itemBytes, of } = DTYPES[dtype];
  const have = bytes.length - start;
  if (have !== count * itemBytes) {
    throw fail(
      `shape (${shape}) of ${dtype} needs ${count * itemBytes} data bytes, the file has ${have} (truncated?)`,
    );
  }
  let body = bytes.subarray(start);
  if (body.byteOffset % itemBytes !== 0) body = body.slice(); // typed-array views must be aligned
  return { dtype, shape, data: of(body.buffer as ArrayBuffer, body.byteOffset, count) };
}

/** A version 1.0 .npy of `data` with `shape`. */
export function encodeNpy(shape: readonly number[], data: NpyData): Uint8Array {
  const dtype = dtypeOf(data);
  const count = shape.reduce((a, b) => a * b, 1);
  if (count !== data.length) {
    throw new Error(`npy: shape (${shape}) holds ${count} values, data has ${data.length}`);
  }
  const dims = shape.length === 1 ? `${shape[0]},` : shape.join(", ");
  let header = `{'descr': '${DTYPES[dtype].descr}', 'fortran_order': False, 'shape': (${dims}), }`;
  header += " ".repeat(63 - ((10 + header.length) % 64)) + "\n"; // 10 + header length ≡ 0 (mod 64)
  const out = new Uint8Array(10 + header.length + data.byteLength);
  out.set(MAGIC, 0);
  out.set([1, 0], 6);
  new DataView(out.buffer).setUint16(8, header.length, true);
  out.set(new TextEncoder().encode(header), 10);
  out.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), 10 + header.length);
  return out;
}

/** Every array of an .npz (bytes, or a path to read), by name without ".npy". Errors name the file. */
export function readNpz(source: Uint8Array | string, name?: string): Map<string, NpyArray> {
  name ??= typeof source === "string" ? source : "npz";
  const bytes = typeof source === "string" ? Deno.readFileSync(source) : source;
  let members: Record<string, Uint8Array>;
  try {
    members = unzipSync(bytes);
  } catch (e) {
    throw new Error(`${name}: not a readable .npz/zip file (${(e as Error).message}); truncated or corrupt?`);
  }
  const arrays = new Map<string, NpyArray>();
  for (const [member, data] of Object.entries(members)) {
    if (member.endsWith("/")) continue;
    arrays.set(member.replace(/\.npy$/, ""), decodeNpy(data, `${name} [${member}]`));
  }
  return arrays;
}

/** Write arrays as an uncompressed .npz (np.load reads it), atomically (temp file + rename). */
export async function writeNpz(
  path: string,
  arrays: Record<string, { shape: readonly number[]; data: NpyData }>,
): Promise<void> {
  const members: Record<string, [Uint8Array, { level: 0 }]> = {};
  for (const [key, { shape, data }] of Object.entries(arrays)) {
    const npy = encodeNpy(shape, data);
    if (npy.length >= 0xffffffff) throw new Error(`npz: array ${key} is ≥ 4 GiB (zip64 is not written)`);
    members[`${key}.npy`] = [npy, { level: 0 }];
  }
  await writeFileAtomic(path, zipSync(members));
}
