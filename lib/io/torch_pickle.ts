// Reading PyTorch weight files (torch.save of a state_dict) without Python, and without running anything.
//
// A .pt/.pth file is a Python pickle: a little stack-machine program that rebuilds objects by calling Python
// functions it names (GLOBAL/STACK_GLOBAL + REDUCE). Loading one with Python's pickle runs whatever it names
// (os.system, eval …). This reader is a separate, minimal unpickler: it implements only the opcodes that
// torch.save writes, resolves only an allow-list of names (OrderedDict, the tensor rebuild functions, the
// storage types), and "calls" them with its own TypeScript versions. Any other name is refused, with the name
// in the message, when the GLOBAL opcode is read — before any REDUCE; nothing from the file is ever executed.
//
// Both on-disk formats of torch.save are read:
//  * zip (torch >= 1.6, the default): an uncompressed zip with `<folder>/data.pkl` (the object pickle) and one
//    entry `<folder>/data/<key>` of raw little-endian bytes per storage; the pickle names storages by
//    persistent ids ('storage', StorageType, key, location, numel). `<folder>/byteorder`, if any, must say
//    "little".
//  * legacy (torch < 1.6, or `_use_new_zipfile_serialization=False`): five pickles back to back — the magic
//    number 0x1950a86a20f9469cfc6c, the protocol version 1001, a sys-info dict (little_endian must be True),
//    the object pickle with persistent ids ('storage', StorageType, root_key, location, numel, view_metadata),
//    and a list of storage keys — then, for each key in that order, an 8-byte little-endian element count and
//    that many elements of raw little-endian data.
// Tensors are `_rebuild_tensor_v2(storage, offset, size, stride, …)`: the storage offset and any strides are
// honoured (views, transposes and expands are copied out into fresh row-major arrays, bounds-checked).
// Float16/BFloat16 are widened to F32.
import { createHash } from "node:crypto";
import { basename } from "node:path";
import { unzipSync } from "fflate";
import { type TensorEntry, writeSafetensors } from "./checkpoint.ts";
import { readFileOr } from "./fs.ts";

export type TorchDType = "F32" | "F64" | "I64" | "I32" | "I16" | "I8" | "U8" | "BOOL";
export type TorchData =
  | Float32Array
  | Float64Array
  | BigInt64Array
  | Int32Array
  | Int16Array
  | Int8Array
  | Uint8Array;

export interface TorchTensor {
  dtype: TorchDType;
  shape: number[];
  /** Row-major (C order) values, a fresh array (never a view of the file's bytes). BOOL: 0/1 bytes. */
  data: TorchData;
}

export class TorchFileError extends Error {
  constructor(name: string, problem: string) {
    super(`torch file ${name}: ${problem}`);
    this.name = "TorchFileError";
  }
}

if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) {
  throw new Error("PyTorch files are read as little-endian; this machine is big-endian and is not supported");
}

// ---- storage types -------------------------------------------------------------------------------------

interface StorageKind {
  /** The storage class name in the torch module, e.g. FloatStorage. */
  name: string;
  /** Bytes per element in the file. */
  bytes: number;
  /** dtype of the tensors built on it (after widening F16/BF16). */
  dtype: TorchDType;
}

const STORAGE_KINDS: StorageKind[] = [
  { name: "FloatStorage", bytes: 4, dtype: "F32" },
  { name: "DoubleStorage", bytes: 8, dtype: "F64" },
  { name: "HalfStorage", bytes: 2, dtype: "F32" },
  { name: "BFloat16Storage", bytes: 2, dtype: "F32" },
  { name: "LongStorage", bytes: 8, dtype: "I64" },
  { name: "IntStorage", bytes: 4, dtype: "I32" },
  { name: "ShortStorage", bytes: 2, dtype: "I16" },
  { name: "CharStorage", bytes: 1, dtype: "I8" },
  { name: "ByteStorage", bytes: 1, dtype: "U8" },
  { name: "BoolStorage", bytes: 1, dtype: "BOOL" },
];

// ---- Python values as the unpickler builds them -------------------------------------------------------
// None → null, bool → boolean, int → number (bigint beyond 2^53), float → number, str → string,
// list → array, tuple → frozen array, dict/OrderedDict → PyDict, allowed globals → PyGlobal.

/** A global the allow-list resolved (never a Python object: a tag that REDUCE dispatches on). */
class PyGlobal {
  constructor(readonly module: string, readonly name: string) {}
  get fullName(): string {
    return `${this.module}.${this.name}`;
  }
}

/** dict or collections.OrderedDict. `state` holds what BUILD set (a state_dict's `_metadata`); unused. */
class PyDict {
  readonly map = new Map<unknown, unknown>();
  state: unknown = undefined;
}

/** A storage named by a persistent id; its bytes are looked up after unpickling. */
class StorageRef {
  constructor(
    readonly kind: StorageKind,
    readonly key: string,
    /** Elements in the whole (root) storage. */
    readonly numel: number,
    /** Legacy format only: a view of the root storage starting at this element, with this many elements. */
    readonly view?: { offset: number; size: number },
  ) {}
}

/** A tensor as `_rebuild_tensor_v2` describes it: a strided window on a storage. */
class TensorRef {
  constructor(
    readonly storage: StorageRef,
    readonly offset: number,
    readonly shape: number[],
    readonly stride: number[],
  ) {}
}

/** A module.name the file may name, and (if it may be called with REDUCE) the TypeScript that stands for it. */
interface Allowed {
  call?: (args: readonly unknown[]) => unknown;
}

class UnpickleError extends Error {}

function isTuple(v: unknown): v is readonly unknown[] {
  return Array.isArray(v);
}

function describe(v: unknown): string {
  if (v === null) return "None";
  if (v instanceof PyGlobal) return v.fullName;
  if (v instanceof PyDict) return "dict";
  if (v instanceof StorageRef) return "storage";
  if (v instanceof TensorRef) return "tensor";
  if (Array.isArray(v)) return Object.isFrozen(v) ? "tuple" : "list";
  return typeof v;
}

function asInt(v: unknown, what: string): number {
  if (typeof v === "bigint" || typeof v !== "number" || !Number.isSafeInteger(v)) {
    throw new UnpickleError(`${what} must be an integer, got ${describe(v)} ${String(v)}`);
  }
  return v;
}

function asIntTuple(v: unknown, what: string): number[] {
  if (!isTuple(v)) throw new UnpickleError(`${what} must be a tuple of integers, got ${describe(v)}`);
  return v.map((x, i) => {
    const n = asInt(x, `${what}[${i}]`);
    if (n < 0) throw new UnpickleError(`${what}[${i}] is negative (${n})`);
    return n;
  });
}

function rebuildTensor(args: readonly unknown[], fn: string): TensorRef {
  const [storage, offset, size, stride] = args;
  if (!(storage instanceof StorageRef)) {
    throw new UnpickleError(`${fn}: the first argument must be a storage, got ${describe(storage)}`);
  }
  const shape = asIntTuple(size, `${fn} size`);
  const strides = asIntTuple(stride, `${fn} stride`);
  if (shape.length !== strides.length) {
    throw new UnpickleError(`${fn}: size [${shape}] and stride [${strides}] differ in length`);
  }
  let start = asInt(offset, `${fn} storage offset`);
  if (start < 0) throw new UnpickleError(`${fn}: negative storage offset ${start}`);
  if (storage.view) start += storage.view.offset;
  return new TensorRef(storage, start, shape, strides);
}

function makeAllowList(): Map<string, Allowed> {
  const allowed = new Map<string, Allowed>();
  allowed.set("collections.OrderedDict", {
    call: (args) => {
      const d = new PyDict();
      if (args.length === 0) return d;
      // OrderedDict([(k, v), …]) — torch never writes it, but it is harmless data.
      if (args.length === 1 && Array.isArray(args[0])) {
        for (const pair of args[0]) {
          if (!isTuple(pair) || pair.length !== 2) throw new UnpickleError("OrderedDict items must be pairs");
          d.map.set(pair[0], pair[1]);
        }
        return d;
      }
      throw new UnpickleError(`OrderedDict called with ${args.length} unexpected arguments`);
    },
  });
  // _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
  allowed.set("torch._utils._rebuild_tensor_v2", {
    call: (args) => {
      if (args.length < 6 || args.length > 7) {
        throw new UnpickleError(`_rebuild_tensor_v2 takes 6 or 7 arguments, got ${args.length}`);
      }
      return rebuildTensor(args, "_rebuild_tensor_v2");
    },
  });
  // _rebuild_tensor(storage, storage_offset, size, stride): older files.
  allowed.set("torch._utils._rebuild_tensor", {
    call: (args) => {
      if (args.length !== 4) throw new UnpickleError(`_rebuild_tensor takes 4 arguments, got ${args.length}`);
      return rebuildTensor(args, "_rebuild_tensor");
    },
  });
  // _rebuild_parameter(data, requires_grad, backward_hooks): an nn.Parameter is its data here.
  allowed.set("torch._utils._rebuild_parameter", {
    call: (args) => {
      if (!(args[0] instanceof TensorRef)) {
        throw new UnpickleError(
          `_rebuild_parameter: the first argument must be a tensor, got ${describe(args[0])}`,
        );
      }
      return args[0];
    },
  });
  // Storage types are only ever named inside persistent ids; they cannot be called.
  for (const kind of STORAGE_KINDS) allowed.set(`torch.${kind.name}`, {});
  return allowed;
}

const ALLOWED = makeAllowList();

/** The only Python globals a file may name; any other is refused. */
export const ALLOWED_GLOBALS: readonly string[] = [...ALLOWED.keys()];

// ---- the unpickler -----------------------------------------------------------------------------------------

const ascii = new TextDecoder("latin1");
const utf8 = new TextDecoder("utf-8", { fatal: true });

/** Names of opcodes Python's pickle has but this reader refuses, for clearer messages. */
const REFUSED_OP_NAMES: Record<number, string> = {
  0x69: "INST",
  0x6f: "OBJ",
  0x81: "NEWOBJ",
  0x92: "NEWOBJ_EX",
  0x82: "EXT1",
  0x83: "EXT2",
  0x84: "EXT4",
  0x50: "PERSID",
  0x49: "INT",
  0x4c: "LONG",
  0x53: "STRING",
  0x56: "UNICODE",
  0x46: "FLOAT",
  0x67: "GET",
  0x70: "PUT",
  0x6c: "LIST",
  0x64: "DICT",
  0x8f: "EMPTY_SET",
  0x90: "ADDITEMS",
  0x91: "FROZENSET",
  0x96: "BYTEARRAY8",
  0x97: "NEXT_BUFFER",
  0x98: "READONLY_BUFFER",
  0x8e: "BINBYTES8",
};

export interface UnpickleResult {
  value: unknown;
  /** Offset just past the STOP opcode. */
  end: number;
}

/**
 * Run one pickle starting at `start`, with only the opcodes and globals a torch.save file uses.
 * `persistentLoad` resolves BINPERSID ids. Throws UnpickleError (wrapped by the callers) on anything else.
 */
function unpickle(
  bytes: Uint8Array,
  start: number,
  persistentLoad: (pid: unknown) => unknown,
): UnpickleResult {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let pos = start;
  let stack: unknown[] = [];
  const metastack: unknown[][] = [];
  const memo = new Map<number, unknown>();

  const need = (n: number, what: string) => {
    if (!Number.isSafeInteger(n) || n < 0 || pos + n > bytes.length) {
      throw new UnpickleError(
        `the pickle ends inside ${what} at byte ${pos} (needs ${n} bytes, ${
          bytes.length - pos
        } left): truncated`,
      );
    }
  };
  const u8 = (what: string) => {
    need(1, what);
    return bytes[pos++];
  };
  const u16 = (what: string) => {
    need(2, what);
    pos += 2;
    return view.getUint16(pos - 2, true);
  };
  const u32 = (what: string) => {
    need(4, what);
    pos += 4;
    return view.getUint32(pos - 4, true);
  };
  const u64 = (what: string) => {
    need(8, what);
    pos += 8;
    const v = view.getBigUint64(pos - 8, true);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new UnpickleError(`${what} length ${v} is not plausible`);
    return Number(v);
  };
  const take = (n: number, what: string) => {
    need(n, what);
    pos += n;
    return bytes.subarray(pos - n, pos);
  };
  const text = (n: number, what: string) => {
    const b = take(n, what);
    try {
      return utf8.decode(b);
    } catch {
      throw new UnpickleError(`${what} at byte ${pos - n} is not valid UTF-8`);
    }
  };
  const line = (what: string) => {
    const end = bytes.indexOf(0x0a, pos);
    if (end < 0) throw new UnpickleError(`the pickle ends inside ${what} at byte ${pos}: truncated`);
    const s = ascii.decode(bytes.subarray(pos, end));
    pos = end + 1;
    return s;
  };
  const pop = () => {
    if (stack.length === 0) throw new UnpickleError(`stack underflow at byte ${pos - 1}: corrupted pickle`);
    return stack.pop();
  };
  const top = () => {
    if (stack.length === 0) throw new UnpickleError(`stack underflow at byte ${pos - 1}: corrupted pickle`);
    return stack[stack.length - 1];
  };
  const popMark = () => {
    const items = stack;
    const previous = metastack.pop();
    if (previous === undefined) throw new UnpickleError(`no MARK before byte ${pos - 1}: corrupted pickle`);
    stack = previous;
    return items;
  };
  const littleInt = (b: Uint8Array): number | bigint => {
    if (b.length === 0) return 0;
    let v = 0n;
    for (let i = b.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]);
    if (b[b.length - 1] & 0x80) v -= 1n << BigInt(8 * b.length);
    return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  };
  const findGlobal = (module: string, name: string) => {
    const full = `${module}.${name}`;
    if (!ALLOWED.has(full)) {
      throw new RefusedGlobal(full);
    }
    return new PyGlobal(module, name);
  };
  const setItems = (target: unknown, items: unknown[]) => {
    if (!(target instanceof PyDict)) throw new UnpickleError(`SETITEM(S) on a ${describe(target)}`);
    if (items.length % 2) throw new UnpickleError("SETITEMS with an odd number of items");
    for (let i = 0; i < items.length; i += 2) {
      const key = items[i];
      if (typeof key !== "string" && typeof key !== "number" && typeof key !== "bigint" && key !== null) {
        throw new UnpickleError(`dict key of type ${describe(key)} is not supported`);
      }
      target.map.set(key, items[i + 1]);
    }
  };
  const appendItems = (target: unknown, items: unknown[]) => {
    if (!Array.isArray(target) || Object.isFrozen(target)) {
      throw new UnpickleError(`APPEND(S) on a ${describe(target)}`);
    }
    for (const item of items) target.push(item);
  };
  const tuple = (items: unknown[]) => Object.freeze(items);

  for (;;) {
    const opAt = pos;
    const op = u8("an opcode");
    switch (op) {
      case 0x80: { // PROTO
        const proto = u8("PROTO");
        if (proto > 5) throw new UnpickleError(`pickle protocol ${proto} is not supported (0–5)`);
        break;
      }
      case 0x95: // FRAME: a length hint only
        u64("FRAME");
        break;
      case 0x2e: // STOP
        if (metastack.length) throw new UnpickleError(`STOP inside an open MARK at byte ${opAt}: corrupted`);
        return { value: pop(), end: pos };
      case 0x28: // MARK
        metastack.push(stack);
        stack = [];
        break;
      case 0x7d:
        stack.push(new PyDict());
        break;
      case 0x5d:
        stack.push([]);
        break;
      case 0x29:
        stack.push(tuple([]));
        break;
      case 0x74: {
        const items = popMark(); // before `stack.push`: popMark replaces `stack`
        stack.push(tuple(items));
        break;
      }
      case 0x85: {
        const a = pop();
        stack.push(tuple([a]));
        break;
      }
      case 0x86: {
        const b = pop(), a = pop();
        stack.push(tuple([a, b]));
        break;
      }
      case 0x87: {
        const c = pop(), b = pop(), a = pop();
        stack.push(tuple([a, b, c]));
        break;
      }
      case 0x4a:
        need(4, "BININT");
        pos += 4;
        stack.push(view.getInt32(pos - 4, true));
        break;
      case 0x4b:
        stack.push(u8("BININT1"));
        break;
      case 0x4d:
        stack.push(u16("BININT2"));
        break;
      case 0x8a:
        stack.push(littleInt(take(u8("LONG1"), "LONG1")));
        break;
      case 0x8b: {
        const n = u32("LONG4");
        if (n > 1024) throw new UnpickleError(`LONG4 of ${n} bytes at byte ${opAt} is not plausible`);
        stack.push(littleInt(take(n, "LONG4")));
        break;
      }
      case 0x58:
        stack.push(text(u32("BINUNICODE"), "BINUNICODE"));
        break;
      case 0x8c:
        stack.push(text(u8("SHORT_BINUNICODE"), "SHORT_BINUNICODE"));
        break;
      case 0x8d:
        stack.push(text(u64("BINUNICODE8"), "BINUNICODE8"));
        break;
      case 0x54: // BINSTRING (Python 2 str), read as latin-1
        stack.push(ascii.decode(take(u32("BINSTRING"), "BINSTRING")));
        break;
      case 0x55:
        stack.push(ascii.decode(take(u8("SHORT_BINSTRING"), "SHORT_BINSTRING")));
        break;
      case 0x42:
        stack.push(take(u32("BINBYTES"), "BINBYTES").slice());
        break;
      case 0x43:
        stack.push(take(u8("SHORT_BINBYTES"), "SHORT_BINBYTES").slice());
        break;
      case 0x51: // BINPERSID
        stack.push(persistentLoad(pop()));
        break;
      case 0x68:
      case 0x6a: {
        const i = op === 0x68 ? u8("BINGET") : u32("LONG_BINGET");
        if (!memo.has(i)) throw new UnpickleError(`memo key ${i} read before it was set (byte ${opAt})`);
        stack.push(memo.get(i));
        break;
      }
      case 0x71:
        memo.set(u8("BINPUT"), top());
        break;
      case 0x72:
        memo.set(u32("LONG_BINPUT"), top());
        break;
      case 0x94:
        memo.set(memo.size, top());
        break;
      case 0x73: {
        const v = pop(), k = pop();
        setItems(top(), [k, v]);
        break;
      }
      case 0x75: {
        const items = popMark();
        setItems(top(), items);
        break;
      }
      case 0x61: {
        const v = pop();
        appendItems(top(), [v]);
        break;
      }
      case 0x65: {
        const items = popMark();
        appendItems(top(), items);
        break;
      }
      case 0x88:
        stack.push(true);
        break;
      case 0x89:
        stack.push(false);
        break;
      case 0x4e:
        stack.push(null);
        break;
      case 0x47:
        need(8, "BINFLOAT");
        pos += 8;
        stack.push(view.getFloat64(pos - 8, false)); // big-endian, unlike everything else
        break;
      case 0x63: { // GLOBAL "module\nname\n"
        const module = line("GLOBAL");
        const name = line("GLOBAL");
        stack.push(findGlobal(module, name));
        break;
      }
      case 0x93: { // STACK_GLOBAL
        const name = pop(), module = pop();
        if (typeof module !== "string" || typeof name !== "string") {
          throw new UnpickleError(`STACK_GLOBAL needs two strings at byte ${opAt}`);
        }
        stack.push(findGlobal(module, name));
        break;
      }
      case 0x52: { // REDUCE
        const args = pop();
        const fn = pop();
        if (!(fn instanceof PyGlobal)) throw new UnpickleError(`REDUCE on a ${describe(fn)} at byte ${opAt}`);
        const call = ALLOWED.get(fn.fullName)?.call;
        if (!call) throw new UnpickleError(`${fn.fullName} cannot be called (REDUCE at byte ${opAt})`);
        if (!isTuple(args)) throw new UnpickleError(`REDUCE arguments must be a tuple at byte ${opAt}`);
        stack.push(call(args));
        break;
      }
      case 0x62: { // BUILD: only a dict's instance state (a state_dict's _metadata), kept aside
        const state = pop();
        const inst = top();
        if (!(inst instanceof PyDict)) {
          throw new UnpickleError(`BUILD on a ${describe(inst)} at byte ${opAt}`);
        }
        inst.state = state;
        break;
      }
      case 0x30:
        pop();
        break;
      case 0x31:
        popMark();
        break;
      case 0x32:
        stack.push(top());
        break;
      default: {
        const known = REFUSED_OP_NAMES[op];
        throw new UnpickleError(
          `opcode 0x${op.toString(16).padStart(2, "0")}${known ? ` (${known})` : ""} at byte ${opAt} ` +
            (known ? "is not used by torch.save and is not supported" : "is not a pickle opcode: corrupted"),
        );
      }
    }
  }
}

class RefusedGlobal extends Error {
  constructor(readonly global: string) {
    super(global);
  }
}

// ---- the two file formats --------------------------------------------------------------------------------

/** Which torch.save format `bytes` looks like (from the first bytes only). */
export function torchFileFormat(bytes: Uint8Array): "zip" | "legacy" | "unknown" {
  if (bytes[0] === 0x50 && bytes[1] === 0x4b && bytes[2] === 0x03 && bytes[3] === 0x04) return "zip";
  if (bytes[0] === 0x80) return "legacy";
  return "unknown";
}

const LEGACY_MAGIC = 0x1950a86a20f9469cfc6cn;
const LEGACY_PROTOCOL = 1001;

function storageKind(v: unknown): StorageKind {
  if (!(v instanceof PyGlobal) || v.module !== "torch") {
    throw new UnpickleError(`persistent id names ${describe(v)} where a storage type belongs`);
  }
  const kind = STORAGE_KINDS.find((k) => k.name === v.name);
  if (!kind) throw new UnpickleError(`storage type torch.${v.name} is not supported`);
  return kind;
}

function storageId(pid: unknown, length: number): readonly unknown[] {
  if (!isTuple(pid) || pid[0] !== "storage" || pid.length !== length) {
    throw new UnpickleError(
      `persistent id ${isTuple(pid) ? `(${pid.map(describe).join(", ")})` : describe(pid)} is not a ` +
        `${length}-tuple ('storage', …)`,
    );
  }
  return pid;
}

/** Run `fn`, turning unpickler problems into TorchFileErrors that name the file. */
function guarded<T>(name: string, where: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof RefusedGlobal) {
      throw new TorchFileError(
        name,
        `refused: ${where} names the Python global ${e.global}, which is not on the allow-list of a ` +
          `weights file (${ALLOWED_GLOBALS.join(", ")}). Nothing was executed: this reader never runs ` +
          `code from a file. Do not open it with torch.load either, unless you trust its source.`,
      );
    }
    if (e instanceof TorchFileError) throw e;
    throw new TorchFileError(name, `${where}: ${(e as Error).message}`);
  }
}

function readZip(bytes: Uint8Array, name: string): { root: unknown; storages: Map<StorageRef, Uint8Array> } {
  let entries: Record<string, Uint8Array>;
  const names: string[] = [];
  try {
    entries = unzipSync(bytes, {
      filter: (f) => {
        // Each entry takes at least 46 bytes of central directory: more entries is a corrupted count.
        if (names.push(f.name) > bytes.length / 46) throw new Error("implausible number of entries");
        const wanted = /^([^/]*\/)?(data\.pkl|byteorder|data\/[^/]+)$/.test(f.name);
        // torch.save stores entries uncompressed; a deflated one is accepted only within deflate's
        // possible ratio (1032:1), so that a corrupted or hostile size cannot make it allocate gigabytes.
        if (wanted && f.compression !== 0) {
          if (f.compression !== 8) {
            throw new Error(`entry ${f.name} has unknown compression ${f.compression}`);
          }
          if (f.originalSize > 1032 * f.size + 1024 || f.originalSize > 2 ** 31) {
            throw new Error(`entry ${f.name} claims to inflate ${f.size} bytes to ${f.originalSize}`);
          }
        }
        return wanted;
      },
    });
  } catch (e) {
    throw new TorchFileError(
      name,
      `not a readable zip archive (${(e as Error).message}): truncated or corrupted`,
    );
  }
  if (names.some((n) => /^([^/]*\/)?code\//.test(n))) {
    throw new TorchFileError(name, "a TorchScript archive (torch.jit.save), not a torch.save state_dict");
  }
  const pkls = Object.keys(entries).filter((n) => n.endsWith("data.pkl"));
  if (pkls.length !== 1) {
    throw new TorchFileError(
      name,
      pkls.length
        ? `several data.pkl entries (${pkls.join(", ")})`
        : "the zip archive has no data.pkl entry: " +
          `not a torch.save file (entries: ${names.slice(0, 5).join(", ")}${names.length > 5 ? ", …" : ""})`,
    );
  }
  const prefix = pkls[0].slice(0, -"data.pkl".length);
  const byteorder = Object.hasOwn(entries, `${prefix}byteorder`) ? entries[`${prefix}byteorder`] : undefined;
  if (byteorder && ascii.decode(byteorder).trim() !== "little") {
    throw new TorchFileError(
      name,
      `byteorder "${ascii.decode(byteorder).trim()}" is not supported (little only)`,
    );
  }
  const refs = new Map<string, StorageRef>();
  const { value } = guarded(name, "data.pkl", () =>
    unpickle(entries[pkls[0]], 0, (pid) => {
      const [, type, key, _location, numel] = storageId(pid, 5);
      const kind = storageKind(type);
      if (typeof key !== "string") {
        throw new UnpickleError(`storage key must be a string, got ${describe(key)}`);
      }
      const n = asInt(numel, `storage ${key} size`);
      const old = refs.get(key);
      if (old) {
        if (old.kind !== kind || old.numel !== n) {
          throw new UnpickleError(`storage ${key} is named with two different types or sizes`);
        }
        return old;
      }
      const ref = new StorageRef(kind, key, n);
      refs.set(key, ref);
      return ref;
    }));
  const storages = new Map<StorageRef, Uint8Array>();
  for (const ref of refs.values()) {
    const entry = `${prefix}data/${ref.key}`;
    const data = Object.hasOwn(entries, entry) ? entries[entry] : undefined;
    if (!data) {
      throw new TorchFileError(
        name,
        `the archive has no ${entry} (storage ${ref.key}): truncated or corrupted`,
      );
    }
    if (data.length !== ref.numel * ref.kind.bytes) {
      throw new TorchFileError(
        name,
        `${entry} has ${data.length} bytes, storage ${ref.key} needs ${ref.numel} × ${ref.kind.bytes}: corrupted`,
      );
    }
    storages.set(ref, data);
  }
  return { root: value, storages };
}

function readLegacy(
  bytes: Uint8Array,
  name: string,
): { root: unknown; storages: Map<StorageRef, Uint8Array> } {
  const noPersistent = () => {
    throw new UnpickleError("unexpected persistent id");
  };
  const magic = guarded(name, "the pickle", () => unpickle(bytes, 0, noPersistent));
  if (magic.value !== LEGACY_MAGIC) {
    throw new TorchFileError(
      name,
      `a pickle, but not a torch.save file (no magic number 0x1950a86a20f9469cfc6c; it holds a ` +
        `${describe(magic.value)})`,
    );
  }
  const protocol = guarded(name, "the header", () => unpickle(bytes, magic.end, noPersistent));
  if (protocol.value !== LEGACY_PROTOCOL) {
    throw new TorchFileError(name, `torch.save protocol ${String(protocol.value)} is not supported (1001)`);
  }
  const sysInfo = guarded(name, "the header", () => unpickle(bytes, protocol.end, noPersistent));
  if (!(sysInfo.value instanceof PyDict) || sysInfo.value.map.get("little_endian") !== true) {
    throw new TorchFileError(name, "the file was written big-endian (or has no sys info): not supported");
  }

  // Root storages by key, and views of them by view key (old torch could save views of a storage).
  const roots = new Map<string, StorageRef>();
  const views = new Map<string, StorageRef>();
  const object = guarded(name, "the object pickle", () =>
    unpickle(bytes, sysInfo.end, (pid) => {
      const [, type, rootKey, _location, numel, viewMeta] = storageId(pid, 6);
      const kind = storageKind(type);
      if (typeof rootKey !== "string") throw new UnpickleError(`storage key must be a string`);
      const n = asInt(numel, `storage ${rootKey} size`);
      let root = roots.get(rootKey);
      if (!root) roots.set(rootKey, root = new StorageRef(kind, rootKey, n));
      if (root.kind !== kind || root.numel !== n) {
        throw new UnpickleError(`storage ${rootKey} is named with two different types or sizes`);
      }
      if (viewMeta === null) return root;
      if (!isTuple(viewMeta) || viewMeta.length !== 3 || typeof viewMeta[0] !== "string") {
        throw new UnpickleError(`storage view metadata must be (key, offset, size)`);
      }
      const offset = asInt(viewMeta[1], "storage view offset"),
        size = asInt(viewMeta[2], "storage view size");
      if (offset < 0 || size < 0 || offset + size > n) {
        throw new UnpickleError(
          `storage view [${offset}, ${offset + size}) is outside storage ${rootKey} (${n})`,
        );
      }
      let v = views.get(viewMeta[0]);
      if (!v) views.set(viewMeta[0], v = new StorageRef(kind, rootKey, n, { offset, size }));
      return v;
    }));
  const keyList = guarded(name, "the storage key list", () => unpickle(bytes, object.end, noPersistent));
  if (!Array.isArray(keyList.value) || !keyList.value.every((k) => typeof k === "string")) {
    throw new TorchFileError(name, "the storage key list is not a list of strings: corrupted");
  }
  const raw = new Map<string, Uint8Array>();
  let pos = keyList.end;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (const key of keyList.value as string[]) {
    const root = roots.get(key);
    if (!root) {
      throw new TorchFileError(name, `storage key ${key} is listed but no tensor uses it: corrupted`);
    }
    if (pos + 8 > bytes.length) {
      throw new TorchFileError(name, `the file ends before storage ${key} (byte ${pos}): truncated`);
    }
    const count = view.getBigInt64(pos, true);
    if (count !== BigInt(root.numel)) {
      throw new TorchFileError(
        name,
        `storage ${key} has ${count} elements in the file, ${root.numel} expected: corrupted`,
      );
    }
    const n = root.numel * root.kind.bytes;
    if (pos + 8 + n > bytes.length) {
      throw new TorchFileError(
        name,
        `storage ${key} needs ${n} bytes at byte ${pos + 8}, only ${
          bytes.length - pos - 8
        } are left: truncated`,
      );
    }
    raw.set(key, bytes.subarray(pos + 8, pos + 8 + n));
    pos += 8 + n;
  }
  const storages = new Map<StorageRef, Uint8Array>();
  for (const ref of [...roots.values(), ...views.values()]) {
    const data = raw.get(ref.key);
    if (!data) {
      throw new TorchFileError(
        name,
        `storage ${ref.key} is used but not in the file: truncated or corrupted`,
      );
    }
    storages.set(ref, data);
  }
  return { root: object.value, storages };
}

// ---- tensors out ------------------------------------------------------------------------------------------

function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 31) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

function materialize(t: TensorRef, storageBytes: Uint8Array, label: string): TorchTensor {
  const { kind } = t.storage;
  const n = t.shape.reduce((a, b) => a * b, 1);
  // Elements this tensor may read: the root storage, or the legacy view's window of it.
  const lo = t.storage.view ? t.storage.view.offset : 0;
  const hi = t.storage.view ? lo + t.storage.view.size : t.storage.numel;
  if (!Number.isSafeInteger(n) || (n > hi - lo && n > 2 ** 24)) {
    // Only stride-0 (expanded) tensors can hold more elements than their storage; that many is hostile.
    throw new Error(
      `tensor ${label}: size [${t.shape}] on a storage of ${hi - lo} elements is not plausible`,
    );
  }
  if (n > 0) {
    const last = t.offset + t.shape.reduce((s, d, i) => s + (d - 1) * t.stride[i], 0);
    if (t.offset < lo || last >= hi) {
      throw new Error(
        `tensor ${label}: size [${t.shape}], stride [${t.stride}], offset ${t.offset} reach element ${last} ` +
          `of a storage of ${hi} elements: corrupted`,
      );
    }
  }
  // Source element index for each output element, in row-major order.
  let contiguous = true;
  for (let i = t.shape.length - 1, expect = 1; i >= 0; i--) {
    if (t.shape[i] !== 1 && t.stride[i] !== expect) contiguous = false;
    expect *= t.shape[i];
  }
  const es = kind.bytes;
  // A word-aligned copy of the bytes the tensor covers (or of the whole storage for strided tensors).
  const src = contiguous || n === 0
    ? storageBytes.slice(t.offset * es, (t.offset + n) * es)
    : storageBytes.slice();
  const base = contiguous || n === 0 ? 0 : t.offset;
  const read = (() => {
    switch (kind.name) {
      case "FloatStorage":
        return new Float32Array(src.buffer);
      case "DoubleStorage":
        return new Float64Array(src.buffer);
      case "HalfStorage":
      case "BFloat16Storage":
        return new Uint16Array(src.buffer);
      case "LongStorage":
        return new BigInt64Array(src.buffer);
      case "IntStorage":
        return new Int32Array(src.buffer);
      case "ShortStorage":
        return new Int16Array(src.buffer);
      case "CharStorage":
        return new Int8Array(src.buffer);
      default:
        return src;
    }
  })();
  let gathered: typeof read;
  if (contiguous || n === 0) {
    gathered = read;
  } else {
    const out = new (read.constructor as new (n: number) => typeof read)(n);
    const idx = new Array(t.shape.length).fill(0);
    let at = base;
    for (let k = 0; k < n; k++) {
      (out as { [i: number]: number | bigint })[k] = read[at];
      for (let d = t.shape.length - 1; d >= 0; d--) {
        if (++idx[d] < t.shape[d]) {
          at += t.stride[d];
          break;
        }
        at -= (t.shape[d] - 1) * t.stride[d];
        idx[d] = 0;
      }
    }
    gathered = out;
  }
  let data: TorchData;
  if (kind.name === "HalfStorage" || kind.name === "BFloat16Storage") {
    const h = gathered as Uint16Array;
    const f = new Float32Array(n);
    if (kind.name === "HalfStorage") { for (let i = 0; i < n; i++) f[i] = halfToFloat(h[i]); }
    else new Uint32Array(f.buffer).set(Array.from(h, (b) => b << 16));
    data = f;
  } else if (kind.name === "BoolStorage") {
    data = (gathered as Uint8Array).map((b) => (b ? 1 : 0));
  } else {
    data = gathered as TorchData;
  }
  return { dtype: kind.dtype, shape: [...t.shape], data };
}

const MAX_DEPTH = 32;

/**
 * Parse a torch.save file of a state_dict: parameter name → tensor. Nested dicts are flattened with "."
 * (e.g. {"model": {"w": t}} gives "model.w"); values that are not tensors (ints, strings, None, lists) are
 * skipped. Throws a TorchFileError naming the problem for anything unreadable, unsafe or corrupted.
 */
export function readTorchFile(bytes: Uint8Array, name: string): Map<string, TorchTensor> {
  const format = torchFileFormat(bytes);
  if (format === "unknown" && ascii.decode(bytes.subarray(257, 262)) === "ustar") {
    throw new TorchFileError(name, "a tar archive: the pre-0.4 tar format of torch.save is not supported");
  }
  if (format === "unknown") {
    const head = Array.from(bytes.subarray(0, 4), (b) => b.toString(16).padStart(2, "0")).join(" ");
    throw new TorchFileError(
      name,
      bytes.length === 0
        ? "empty file"
        : `not a PyTorch file: neither a zip archive nor a pickle (starts with ${head})`,
    );
  }
  const { root, storages } = format === "zip" ? readZip(bytes, name) : readLegacy(bytes, name);
  if (!(root instanceof PyDict)) {
    throw new TorchFileError(name, `holds a ${describe(root)}, not a state_dict (a dict of tensors)`);
  }
  const out = new Map<string, TorchTensor>();
  const walk = (d: PyDict, prefix: string, depth: number) => {
    if (depth > MAX_DEPTH) {
      throw new TorchFileError(name, `dicts nested deeper than ${MAX_DEPTH}: not a state_dict`);
    }
    for (const [k, v] of d.map) {
      const key = `${prefix}${String(k)}`;
      if (v instanceof PyDict) {
        walk(v, `${key}.`, depth + 1);
      } else if (v instanceof TensorRef) {
        if (out.has(key)) throw new TorchFileError(name, `two tensors are named ${key}`);
        try {
          out.set(key, materialize(v, storages.get(v.storage)!, key));
        } catch (e) {
          throw new TorchFileError(name, (e as Error).message);
        }
      }
    }
  };
  walk(root, "", 0);
  if (out.size === 0) throw new TorchFileError(name, "holds no tensors");
  return out;
}

/** Read a torch.save file of a state_dict from disk (see readTorchFile). */
export async function loadTorchFile(path: string): Promise<Map<string, TorchTensor>> {
  return readTorchFile(await readFileOr(path, () => new TorchFileError(path, "file not found")), path);
}

/**
 * The tensors of a state_dict as safetensors entries. safetensors in this kit holds F32/F64/I32/U8, so:
 * I64 (e.g. BatchNorm's num_batches_tracked) becomes I32 when every value fits, else it is refused with the
 * name; I16/I8 become I32; BOOL becomes U8 (0/1). Returns the entries and the names of the I64 tensors.
 */
export function toSafetensorsEntries(
  tensors: ReadonlyMap<string, TorchTensor>,
  name = "state_dict",
): { entries: Map<string, TensorEntry>; i64ToI32: string[] } {
  const entries = new Map<string, TensorEntry>();
  const i64ToI32: string[] = [];
  for (const [key, t] of tensors) {
    const shape = [...t.shape];
    switch (t.dtype) {
      case "F32":
      case "F64":
      case "I32":
      case "U8":
        entries.set(key, {
          dtype: t.dtype,
          shape,
          data: t.data as Float32Array | Float64Array | Int32Array | Uint8Array,
        });
        break;
      case "BOOL":
        entries.set(key, { dtype: "U8", shape, data: t.data as Uint8Array });
        break;
      case "I16":
      case "I8":
        entries.set(key, { dtype: "I32", shape, data: Int32Array.from(t.data as Int16Array | Int8Array) });
        break;
      case "I64": {
        const src = t.data as BigInt64Array;
        const out = new Int32Array(src.length);
        for (let i = 0; i < src.length; i++) {
          if (src[i] < -2147483648n || src[i] > 2147483647n) {
            throw new TorchFileError(
              name,
              `int64 tensor ${key} holds ${src[i]}, which does not fit the int32 of the safetensors cache`,
            );
          }
          out[i] = Number(src[i]);
        }
        entries.set(key, { dtype: "I32", shape, data: out });
        i64ToI32.push(key);
        break;
      }
    }
  }
  return { entries, i64ToI32 };
}

/**
 * Convert a torch.save state_dict at `inPath` to safetensors at `outPath` (atomically, via writeSafetensors).
 * int64 tensors are stored as int32 (checked to fit; see toSafetensorsEntries) so that every name survives.
 * Metadata: `ict_kit.source` (file name), `ict_kit.source_sha256` (of the whole source file),
 * `ict_kit.source_format` (zip/legacy), `ict_kit.i64_as_i32` (JSON list of names), plus `metadata`.
 */
export async function torchToSafetensors(
  inPath: string,
  outPath: string,
  metadata: Record<string, string> = {},
): Promise<{ sha256: string; names: string[]; i64ToI32: string[] }> {
  const bytes = await readFileOr(inPath, () => new TorchFileError(inPath, "file not found"));
  const sha256 = createHash("sha256").update(bytes).digest("hex");
  const tensors = readTorchFile(bytes, inPath);
  const { entries, i64ToI32 } = toSafetensorsEntries(tensors, inPath);
  await writeSafetensors(outPath, entries, {
    "ict_kit.source": basename(inPath),
    "ict_kit.source_sha256": sha256,
    "ict_kit.source_format": torchFileFormat(bytes),
    "ict_kit.i64_as_i32": JSON.stringify(i64ToI32),
    ...metadata,
  });
  return { sha256, names: [...entries.keys()], i64ToI32 };
}
