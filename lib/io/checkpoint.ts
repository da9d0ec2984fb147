// Checkpoints in the safetensors format (Hugging Face): an 8-byte little-endian header length N, N bytes of
// JSON header {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {string: string}}, then the
// raw little-endian data. The kit puts the model config, the training state and a SHA-256 of the data in the
// metadata, and groups tensors by a name prefix ("params/…", "ema/…", "optimizer/…").
//
// Writes are atomic: a temp file in the same folder, fsync, rename. A failed save leaves the previous file
// as it was. Reads check everything (header, dtypes, shapes, offsets, size, checksum) and refuse a bad file
// with a message that names the problem.
import * as tf from "@tensorflow/tfjs";
import { createHash } from "node:crypto";
import { readFileOr, writeAll, writeAtomic } from "./fs.ts";
import { numel, type Params, type ParamSpec } from "../nn/params.ts";

const DTYPES = {
  F32: { bytes: 4, array: Float32Array },
  F64: { bytes: 8, array: Float64Array },
  I32: { bytes: 4, array: Int32Array },
  U8: { bytes: 1, array: Uint8Array },
} as const;
export type DType = keyof typeof DTYPES;
export type TensorData = Float32Array | Float64Array | Int32Array | Uint8Array;

export interface TensorEntry {
  dtype: DType;
  shape: number[];
  data: TensorData;
}

export class CheckpointError extends Error {
  constructor(path: string, problem: string) {
    super(`checkpoint ${path}: ${problem}`);
    this.name = "CheckpointError";
  }
}

const MAX_HEADER = 100 * 1024 * 1024;
const SHA_KEY = "ict_kit.data_sha256";

if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) {
  throw new Error("safetensors data is little-endian; this machine is big-endian and is not supported");
}

function dtypeOf(data: TensorData): DType {
  if (data instanceof Float32Array) return "F32";
  if (data instanceof Float64Array) return "F64";
  if (data instanceof Int32Array) return "I32";
  return "U8";
}

function bytesOf(data: TensorData): Uint8Array {
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

/** Write tensors + string metadata to `path`, atomically. */
export async function writeSafetensors(
  path: string,
  tensors: ReadonlyMap<string, TensorEntry>,
  metadata: Record<string, string> = {},
): Promise<void> {
  const header: Record<string, unknown> = {};
  const hash = createHash("sha256");
  let offset = 0;
  for (const [name, t] of tensors) {
    if (name === "__metadata__") throw new Error(`"__metadata__" cannot name a tensor`);
    if (t.dtype !== dtypeOf(t.data)) {
      throw new Error(`tensor ${name}: data is ${dtypeOf(t.data)}, dtype says ${t.dtype}`);
    }
    if (numel(t.shape) !== t.data.length) {
      throw new Error(
        `tensor ${name}: shape [${t.shape}] holds ${numel(t.shape)} values, data has ${t.data.length}`,
      );
    }
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + t.data.byteLength] };
    offset += t.data.byteLength;
    hash.update(bytesOf(t.data));
  }
  header["__metadata__"] = { ...metadata, [SHA_KEY]: hash.digest("hex") };
  let json = JSON.stringify(header);
  json += " ".repeat((8 - (new TextEncoder().encode(json).length % 8)) % 8); // keep the data 8-byte aligned
  const headerBytes = new TextEncoder().encode(json);
  const prefix = new Uint8Array(8);
  new DataView(prefix.buffer).setBigUint64(0, BigInt(headerBytes.length), true);

  await writeAtomic(path, async (file) => {
    await writeAll(file, prefix);
    await writeAll(file, headerBytes);
    for (const t of tensors.values()) await writeAll(file, bytesOf(t.data));
  });
}

interface HeaderEntry {
  dtype: DType;
  shape: number[];
  data_offsets: [number, number];
}

/** Read and validate a safetensors file. Any inconsistency is a CheckpointError naming it. */
export async function readSafetensors(
  path: string,
): Promise<{ tensors: Map<string, TensorEntry>; metadata: Record<string, string> }> {
  const bytes = await readFileOr(path, () => new CheckpointError(path, "file not found"));
  const fail = (problem: string): never => {
    throw new CheckpointError(path, problem);
  };
  if (bytes.length < 8) fail(`only ${bytes.length} bytes: truncated (no header length)`);
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true));
  if (n > MAX_HEADER) fail(`header length ${n} is not plausible: not a safetensors file, or corrupted`);
  if (8 + n > bytes.length) fail(`header of ${n} bytes but the file has ${bytes.length}: truncated`);
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(8, 8 + n)));
  } catch (e) {
    return fail(`header is not valid JSON (${(e as Error).message}): corrupted`);
  }
  if (typeof header !== "object" || header === null || Array.isArray(header)) {
    fail("header is not a JSON object");
  }
  const metadata = (header["__metadata__"] ?? {}) as Record<string, string>;
  if (typeof metadata !== "object" || Object.values(metadata).some((v) => typeof v !== "string")) {
    fail("__metadata__ must map strings to strings");
  }
  const entries = Object.entries(header).filter(([k]) => k !== "__metadata__") as [string, HeaderEntry][];
  const dataStart = 8 + n;
  const dataLength = bytes.length - dataStart;
  let expectedEnd = 0;
  const ranges = entries.map(([name, e]) => {
    if (!(e?.dtype in DTYPES)) {
      fail(`tensor ${name} has unsupported dtype ${e?.dtype} (kit reads ${Object.keys(DTYPES)})`);
    }
    if (!Array.isArray(e.shape) || !e.shape.every((d) => Number.isInteger(d) && d >= 0)) {
      fail(`tensor ${name} has an invalid shape ${JSON.stringify(e.shape)}`);
    }
    const [b, end] = e.data_offsets ?? [];
    if (
      !Number.isInteger(b) || !Number.isInteger(end) || end - b !== numel(e.shape) * DTYPES[e.dtype].bytes
    ) {
      fail(`tensor ${name}: offsets ${JSON.stringify(e.data_offsets)} do not fit ${e.dtype} [${e.shape}]`);
    }
    return { name, e, b, end };
  }).sort((x, y) => x.b - y.b);
  for (const r of ranges) {
    if (r.b !== expectedEnd) {
      fail(`tensor ${r.name} starts at ${r.b}, expected ${expectedEnd}: overlapping or gapped data`);
    }
    expectedEnd = r.end;
  }
  if (expectedEnd !== dataLength) {
    fail(
      expectedEnd > dataLength
        ? `the header describes ${expectedEnd} data bytes but only ${dataLength} are present: truncated`
        : `${dataLength - expectedEnd} bytes after the last tensor: corrupted`,
    );
  }
  const tensors = new Map<string, TensorEntry>();
  const hash = createHash("sha256");
  for (const { name, e, b, end } of ranges) {
    const raw = bytes.subarray(dataStart + b, dataStart + end);
    hash.update(raw);
    const { array, bytes: size } = DTYPES[e.dtype];
    const aligned = (raw.byteOffset % size === 0) ? raw : raw.slice();
    tensors.set(name, {
      dtype: e.dtype,
      shape: e.shape,
      data: new array(aligned.buffer as ArrayBuffer, aligned.byteOffset, raw.length / size),
    });
  }
  if (metadata[SHA_KEY] !== undefined && metadata[SHA_KEY] !== hash.digest("hex")) {
    fail("the data does not match its SHA-256 checksum: corrupted");
  }
  // Keep the caller's view of names in file order.
  return { tensors: new Map(entries.map(([name]) => [name, tensors.get(name)!])), metadata };
}

// ---- Checkpoints of the kit: tensor groups + JSON config/state in the metadata -------------------------

export interface CheckpointContents {
  /** The model config (plain data), stored as JSON. */
  config: unknown;
  /** Named groups of tensors, e.g. {params, ema, optimizer}; saved as "group/name". */
  groups: Record<string, Params>;
  /** Any JSON-serializable training state (step, RNG state, curriculum …). */
  state?: unknown;
}

const FORMAT = "ict-kit-checkpoint-1";

/** Save groups of tensors + config + state, atomically. */
export async function saveCheckpoint(path: string, c: CheckpointContents): Promise<void> {
  const tensors = new Map<string, TensorEntry>();
  for (const [group, params] of Object.entries(c.groups)) {
    if (group.includes("/")) throw new Error(`group name "${group}" cannot contain "/"`);
    for (const [name, t] of params) {
      const data = await t.data();
      const entry: TensorEntry = {
        dtype: t.dtype === "int32" ? "I32" : "F32",
        shape: [...t.shape],
        data: data as TensorData,
      };
      tensors.set(`${group}/${name}`, entry);
    }
  }
  await writeSafetensors(path, tensors, {
    format: FORMAT,
    "ict_kit.config": JSON.stringify(c.config),
    "ict_kit.state": JSON.stringify(c.state ?? null),
  });
}

/** The config and state of a kit checkpoint, from its header alone (no tensor data is read). */
export async function readCheckpointInfo(path: string): Promise<{ config: unknown; state: unknown }> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new CheckpointError(path, "file not found");
    throw e;
  }
  try {
    const readExactly = async (n: number) => {
      const buf = new Uint8Array(n);
      for (let done = 0; done < n;) {
        const got = await file.read(buf.subarray(done));
        if (got === null) throw new CheckpointError(path, `truncated: the header needs ${n} bytes`);
        done += got;
      }
      return buf;
    };
    const n = Number(new DataView((await readExactly(8)).buffer).getBigUint64(0, true));
    if (n > MAX_HEADER) throw new CheckpointError(path, `header length ${n} is not plausible: corrupted`);
    let metadata: Record<string, string>;
    try {
      metadata = JSON.parse(new TextDecoder().decode(await readExactly(n)))["__metadata__"] ?? {};
    } catch (e) {
      if (e instanceof CheckpointError) throw e;
      throw new CheckpointError(path, `header is not valid JSON: corrupted`);
    }
    if (metadata.format !== FORMAT) {
      throw new CheckpointError(
        path,
        `not an ict-kit checkpoint (format "${metadata.format}", expected "${FORMAT}")`,
      );
    }
    return { config: JSON.parse(metadata["ict_kit.config"]), state: JSON.parse(metadata["ict_kit.state"]) };
  } finally {
    file.close();
  }
}

export interface LoadedCheckpoint {
  config: unknown;
  state: unknown;
  groups: Record<string, Map<string, tf.Tensor>>;
}

/** What a checkpoint must hold: per group, exactly these parameter names and shapes. */
export type Expectation = Record<string, readonly Pick<ParamSpec, "name" | "shape">[]>;

/**
 * Load a kit checkpoint. With `expect` (or a function of the stored config, state and the file's group names
 * that returns it), every group it names must hold exactly those parameters with those shapes (missing,
 * unexpected or mis-shaped names are refused, all listed at once). `opts.groups` limits which groups become
 * tensors (all by default).
 */
export async function loadCheckpoint(
  path: string,
  expect: Expectation | ((config: unknown, state: unknown, groups: readonly string[]) => Expectation) = {},
  opts: { groups?: readonly string[] } = {},
): Promise<LoadedCheckpoint> {
  const { tensors, metadata } = await readSafetensors(path);
  if (metadata.format !== FORMAT) {
    throw new CheckpointError(
      path,
      `not an ict-kit checkpoint (format "${metadata.format}", expected "${FORMAT}")`,
    );
  }
  const parse = (key: string) => {
    try {
      return JSON.parse(metadata[key]);
    } catch {
      throw new CheckpointError(path, `metadata ${key} is not valid JSON`);
    }
  };
  const config = parse("ict_kit.config");
  const state = parse("ict_kit.state");
  const byGroup = new Map<string, Map<string, TensorEntry>>();
  for (const [full, t] of tensors) {
    const i = full.indexOf("/");
    if (i < 0) throw new CheckpointError(path, `tensor "${full}" has no group prefix`);
    const g = full.slice(0, i);
    if (!byGroup.has(g)) byGroup.set(g, new Map());
    byGroup.get(g)!.set(full.slice(i + 1), t);
  }
  const expected = typeof expect === "function" ? expect(config, state, [...byGroup.keys()]) : expect;
  const problems: string[] = [];
  for (const [group, specs] of Object.entries(expected)) {
    const have = byGroup.get(group) ?? new Map<string, TensorEntry>();
    if (!byGroup.has(group)) problems.push(`group "${group}" is missing`);
    const wanted = new Set(specs.map((s) => s.name));
    for (const s of specs) {
      const t = have.get(s.name);
      if (!t) problems.push(`${group}/${s.name} is missing`);
      else if (t.shape.join(",") !== s.shape.join(",")) {
        problems.push(`${group}/${s.name} has shape [${t.shape}], the model needs [${s.shape}]`);
      } else if (t.dtype !== "F32") problems.push(`${group}/${s.name} is ${t.dtype}, the model needs F32`);
    }
    for (const name of have.keys()) {
      if (!wanted.has(name)) problems.push(`${group}/${name} is not part of the model`);
    }
  }
  if (problems.length) {
    const shown = problems.slice(0, 10).join("; ") +
      (problems.length > 10 ? `; … ${problems.length - 10} more` : "");
    throw new CheckpointError(path, `does not match the model: ${shown}`);
  }
  const groups: Record<string, Map<string, tf.Tensor>> = {};
  for (const [g, m] of byGroup) {
    if (opts.groups && !opts.groups.includes(g)) continue;
    groups[g] = new Map(
      [...m].map(([name, t]) => [name, tf.tensor(t.data, t.shape, t.dtype === "I32" ? "int32" : "float32")]),
    );
  }
  return { config, state, groups };
}
