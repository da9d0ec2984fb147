// The kit's SIMD128 kernels (lib/simd/*.wat) run inside TF.js's wasm heap: each module imports the backend's
// own WebAssembly.Memory, so a kernel reads and writes tensors where they are, by their heap offsets, with no
// copy. Threaded wasm has a shared memory (Module.wasmMemory), single-threaded wasm exports a plain one
// (Module.asm.memory); each .wasm.ts carries a binary for either.
import * as tf from "@tensorflow/tfjs";

/** A kernel module's two binaries (base64), as lib/simd/build.ts writes them. */
export interface WasmBinaries {
  shared: string;
  plain: string;
}

interface Emscripten {
  wasmMemory?: WebAssembly.Memory;
  asm?: { memory?: WebAssembly.Memory };
  _malloc(bytes: number): number;
  _free(ptr: number): void;
}

/** What a kernel needs of TF.js's wasm backend: outputs on its heap and views of tensors there. */
export interface HeapBackend {
  makeOutput(shape: number[], dtype: "float32"): tf.TensorInfo;
  typedArrayFromHeap(t: tf.TensorInfo): Float32Array;
}

/** What the SIMD modules need of TF.js's wasm backend besides: its memory, allocator and tensor offsets. */
interface WasmHeapBackend {
  wasm: Emscripten;
  getMemoryOffset(dataId: unknown): number;
}

const decoded = new Map<string, WebAssembly.Module>();
const instances = new WeakMap<WebAssembly.Memory, Map<WasmBinaries, WebAssembly.Exports>>();

function memoryOf(be: WasmHeapBackend): WebAssembly.Memory {
  const m = be.wasm?.wasmMemory ?? be.wasm?.asm?.memory;
  if (!(m instanceof WebAssembly.Memory)) {
    throw new Error("lib/simd: the wasm backend's WebAssembly.Memory was not found (TF.js changed?)");
  }
  return m;
}

/**
 * The exports of `binaries` instantiated on `backend`'s heap (compiled and instantiated once per heap).
 * Throws when the backend's memory is not found or the engine lacks SIMD128.
 */
export function simdModule<T>(backend: unknown, binaries: WasmBinaries): T {
  const be = backend as WasmHeapBackend;
  const memory = memoryOf(be);
  let byBinary = instances.get(memory);
  if (!byBinary) instances.set(memory, byBinary = new Map());
  let exports = byBinary.get(binaries);
  if (!exports) {
    const shared = memory.buffer instanceof SharedArrayBuffer;
    const b64 = shared ? binaries.shared : binaries.plain;
    let module = decoded.get(b64);
    if (!module) {
      module = new WebAssembly.Module(Uint8Array.from(atob(b64), (c) => c.charCodeAt(0)));
      decoded.set(b64, module);
    }
    exports = new WebAssembly.Instance(module, { env: { memory } }).exports;
    byBinary.set(binaries, exports);
  }
  return exports as T;
}

/** Byte offset of a tensor's data in the wasm heap. */
export function heapOffset(backend: unknown, t: tf.TensorInfo): number {
  return (backend as WasmHeapBackend).getMemoryOffset(t.dataId);
}

/** Run `f` with `bytes` of scratch heap memory (16-byte aligned by malloc), freed after. */
export function withScratch<T>(backend: unknown, bytes: number, f: (ptr: number) => T): T {
  const { wasm } = backend as WasmHeapBackend;
  const ptr = wasm._malloc(bytes) >>> 0;
  if (ptr === 0) throw new Error(`lib/simd: malloc of ${bytes} bytes failed (wasm heap full)`);
  try {
    return f(ptr);
  } finally {
    wasm._free(ptr);
  }
}

/**
 * A view of `n` elements of `type` at byte offset `ptr` of the heap (take it after the last allocation: growth
 * replaces the buffer).
 */
export function heapView<T>(
  backend: unknown,
  type: new (buffer: ArrayBufferLike, byteOffset: number, length: number) => T,
  ptr: number,
  n: number,
): T {
  return new type(memoryOf(backend as WasmHeapBackend).buffer, ptr, n);
}
