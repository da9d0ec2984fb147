// Multi-threaded XNNPACK for TF.js's wasm backend under Deno.
// tfjs-backend-wasm believes Deno is Node (`process` exists): it turns threads off, and if forced on it hands
// `blob:` URLs to `worker_threads`, which Deno refuses (ERR_WORKER_PATH). Here, while the backend initializes:
// the Blob texts tfjs builds (the threaded module and its pthread worker) are written to real files, and the
// worker is pointed at them. The worker is emscripten's CommonJS script, kept as is, with two additions:
// the globals it assigns (getter-only in a Deno worker) are made writable, and the bundler aliases the module
// text refers to (require$$N, commonjsGlobal) are defined. XNNPACK uses half of os.cpus(), so that is
// reported doubled during initialization only.
// Emscripten ref()s a pthread worker while a thread runs on it; XNNPACK's pool threads run forever, so the
// process would never exit. The main thread waits for them synchronously (Atomics), never through the event
// loop, so emscripten's workers (they carry a `loaded` flag) are kept unref'd.
import * as tf from "@tensorflow/tfjs";
import { getThreadsCount, setThreadsCount } from "@tensorflow/tfjs-backend-wasm";
import os from "node:os";
import { Worker as NodeWorker } from "node:worker_threads";

const origRef = NodeWorker.prototype.ref;
NodeWorker.prototype.ref = function (this: NodeWorker) {
  if (!("loaded" in this)) origRef.call(this);
};

const MODULE_PREFIX = "var WasmBackendModuleThreadedSimd";
const WORKER_MARK = "WasmBackendModuleThreadedSimd(Module)";
const ALIASES = `var require$$0=require("fs"),require$$1=require("path"),require$$3=require("perf_hooks"),` +
  `require$$4=require("os"),commonjsGlobal=globalThis;`;
const WRITABLE = `for(const k of ["self","location","Worker","importScripts","postMessage","performance"])` +
  `Object.defineProperty(globalThis,k,{value:globalThis[k],writable:true,configurable:true,enumerable:true});`;

/** Initialize the wasm backend with `threads` XNNPACK threads; returns the count it actually runs. */
export async function initThreadedWasm(threads: number): Promise<number> {
  const dir = await Deno.makeTempDir({ prefix: "ict-wasm-threads-" });
  const modulePath = `${dir}/tfjs-backend-wasm-threaded-simd.js`;
  const workerPath = `${dir}/tfjs-backend-wasm-threaded-simd.worker.cjs`;
  const texts = new WeakMap<Blob, string>();
  const [OrigBlob, origCreateObjectURL, origCpus] = [globalThis.Blob, URL.createObjectURL, os.cpus];
  globalThis.Blob = class extends OrigBlob {
    constructor(parts?: BlobPart[], opts?: BlobPropertyBag) {
      super(parts, opts);
      if (!parts?.every((p) => typeof p === "string")) return;
      const text = (parts as string[]).join("");
      texts.set(this, text);
      if (text.startsWith(MODULE_PREFIX)) Deno.writeTextFileSync(modulePath, ALIASES + text);
    }
  } as typeof Blob;
  URL.createObjectURL = (obj: Parameters<typeof URL.createObjectURL>[0]) => {
    const text = obj instanceof OrigBlob ? texts.get(obj) : undefined;
    if (!text?.includes(WORKER_MARK)) return origCreateObjectURL(obj);
    const loadFromFile = `;{const o=self.onmessage;self.onmessage=e=>{if(e.data&&e.data.cmd==="load")` +
      `e.data.urlOrBlob=${JSON.stringify(modulePath)};return o(e)}}`;
    Deno.writeTextFileSync(workerPath, WRITABLE + text + "\n" + loadFromFile + "\n");
    return workerPath;
  };
  (os as { cpus: typeof os.cpus }).cpus = () => Array.from({ length: 2 * threads }, () => origCpus()[0]);
  try {
    tf.env().set("WASM_HAS_MULTITHREAD_SUPPORT", true);
    setThreadsCount(threads);
    if (!(await tf.setBackend("wasm"))) {
      throw new Error("TF.js could not initialize the threaded wasm backend");
    }
    await tf.ready();
    return getThreadsCount();
  } finally {
    globalThis.Blob = OrigBlob;
    URL.createObjectURL = origCreateObjectURL;
    (os as { cpus: typeof os.cpus }).cpus = origCpus;
  }
}

/** Threads asked for: ICT_WASM_THREADS, else every logical core. */
export function requestedWasmThreads(): number {
  const raw = Deno.env.get("ICT_WASM_THREADS");
  const n = raw === undefined ? navigator.hardwareConcurrency : Number(raw);
  if (!Number.isInteger(n) || n < 1) {
    throw new Error(`ICT_WASM_THREADS must be an integer >= 1, got "${raw}"`);
  }
  return n;
}

/** Threads of an initialized wasm backend. */
export function wasmThreads(): number {
  return getThreadsCount();
}
