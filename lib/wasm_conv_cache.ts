// A budget for the packed filters that TF.js's wasm backend keeps. Its Conv2D and FusedConv2D kernels build
// one XNNPACK operator per filter tensor and cache it until that tensor is disposed; the operator holds a packed
// copy of the filter, made from a transposed copy that is freed again, and the hole that one leaves is mostly
// taken by the next small allocation. So every filter used once costs about twice its size on the 4 GiB heap
// for as long as it lives (measured: 20 [3, 3, 768, 768] filters, 405 MiB, grew the heap by 810 MiB), and the
// full-size ImageNet 64 ADM (1.18 GB of weights) ran out of heap in its first forward pass.
//
// Here the two kernels are wrapped: filters are let into the cache while the float32 bytes of the cached ones
// stay within `convCache.budgetBytes`; every other filter is copied to a fresh tensor for the call and the copy
// is disposed after it, which deletes its operator and packed weights (the heap stays flat). The arithmetic is
// the backend's own kernel either way, so results are bit-identical; a copied filter costs its copy and packing
// on every call (about 1 ms per MB here: ~1 s per forward pass of the full-size ADM, of ~16 s).
import * as tf from "@tensorflow/tfjs";
import type { HeapBackend } from "./simd/heap.ts";
import { replaceOwnKernel } from "./wasm_kernels.ts";

/** The budget, and what the wrapped kernels did (for tests and benchmarks). */
export const convCache = {
  /**
   * Float32 bytes of filters whose operators may stay cached. 512 MiB: every network up to iCT's CIFAR-10
   * NCSN++ (225 MB) keeps all of its filters, and the full-size ADM's cached share costs ~1 GiB of heap.
   */
  budgetBytes: 512 * 2 ** 20,
  /** Calls that ran on a copy of their filter since start (or since a test reset it). */
  copies: 0,
};

/** Filter tensors let into the cache: dataId → float32 bytes (disposed ones until the next prune). */
const cached = new Map<object, number>();
/** Their sum. */
let cachedBytes = 0;

/** Bytes of the cached filters that are still alive. */
export function cachedFilterBytes(): number {
  prune();
  return cachedBytes;
}

interface WasmBackendLike extends HeapBackend {
  dataIdMap: { has(dataId: object): boolean };
  disposeData(dataId: object): boolean;
}

/** Forget the filters disposed since (a training step's old weights, a block's activations). */
function prune(): void {
  const be = tf.findBackend("wasm") as unknown as WasmBackendLike | null;
  for (const [id, bytes] of cached) {
    if (be?.dataIdMap.has(id)) continue;
    cached.delete(id);
    cachedBytes -= bytes;
  }
}

/** Entries before a prune even within the budget (training's many small filters, one set a step). */
const PRUNE_ENTRIES = 4096;

/** May this filter's operator stay cached? Records it when it may. */
function admit(filter: tf.TensorInfo): boolean {
  if (cached.has(filter.dataId)) return true;
  const bytes = 4 * filter.shape.reduce((a, b) => a * b, 1);
  if (cachedBytes + bytes > convCache.budgetBytes || cached.size >= PRUNE_ENTRIES) prune();
  if (cachedBytes + bytes > convCache.budgetBytes) return false;
  cached.set(filter.dataId, bytes);
  cachedBytes += bytes;
  return true;
}

let registered = false;

/** Wrap wasm's Conv2D and FusedConv2D (idempotent; before or after the backend starts). */
export function registerWasmConvCache(): void {
  if (registered) return;
  registered = true;
  for (const name of ["Conv2D", "FusedConv2D"]) {
    replaceOwnKernel(name, "wasm", (args, own) => {
      const filter = (args.inputs as Record<string, tf.TensorInfo>).filter;
      if (filter.dtype !== "float32" || admit(filter)) return own.kernelFunc(args);
      const be = args.backend as unknown as WasmBackendLike;
      const copy = be.makeOutput([...filter.shape], "float32");
      be.typedArrayFromHeap(copy).set(be.typedArrayFromHeap(filter)); // after makeOutput: the heap may grow
      convCache.copies++;
      try {
        return own.kernelFunc({ ...args, inputs: { ...args.inputs, filter: copy } });
      } finally {
        be.disposeData(copy.dataId); // and with it the operator and its packed weights
      }
    });
  }
}
