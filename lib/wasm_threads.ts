// Multi-threaded XNNPACK for TF.js's wasm backend under Deno.
// tfjs-backend-wasm believes Deno is Node (`process` exists): it turns threads off, and if forced on it hands
// `blob:` URLs to `worker_threads`, which Deno refuses (ERR_WORKER_PATH). Here, while the backend initializes:
// the Blob texts tfjs builds (the threaded module and its pthread worker) are written to real files, and the
// worker is pointed at them. The worker is emscripten's CommonJS script, kept as is, with two additions:
// the globals it assigns (getter-only in a Deno worker) are made writable, and the bundler aliases the module
// text refers to (require$$N, commonjsGlobal) are defined. XNNPACK uses half of os.cpus(), so that is
// reported doubled during initialization only.
//
// Emscripten builds its pool of 8 pthread workers at start and waits, through the event loop, until every one
// has said "loaded". Under Deno 2.9, a node:worker_threads worker created in the middle of emscripten's
// synchronous module set-up sometimes never runs its script: no error, no exit event (the same symptom as
// denoland/deno#32034). The wait then never ends and the process hangs with no output (7 of 20 starts beside
// one busy loop on 2 cores). So every pool worker is a SupervisedWorker: its real worker is started later,
// from the event loop, one at a time (each after the previous one's script runs; none of 70 starts beside a busy loop needed a replacement), and
// it must make progress (its script starts, then it loads) within a deadline, or it is replaced by a fresh
// worker that is sent the same messages again. After a few replacements the start fails with an error that
// says what to do, instead of hanging.
//
// Emscripten ref()s a pthread worker while a thread runs on it; XNNPACK's pool threads run forever, so the
// process would never exit. The main thread waits for them synchronously (Atomics), never through the event
// loop, so a supervised worker ignores ref(): once loaded it stays unref'd, and processes exit on their own.
import * as tf from "@tensorflow/tfjs";
import { getThreadsCount, setThreadsCount } from "@tensorflow/tfjs-backend-wasm";
import { EventEmitter } from "node:events";
import os from "node:os";
import { Worker as NodeWorker } from "node:worker_threads";

/** tfjs-backend-wasm 4.22's pthread pool has 8 workers; XNNPACK gets no more threads than that (measured). */
export const MAX_WASM_THREADS = 8;

const MODULE_PREFIX = "var WasmBackendModuleThreadedSimd";
const WORKER_MARK = "WasmBackendModuleThreadedSimd(Module)";
const ALIASES = `var require$$0=require("fs"),require$$1=require("path"),require$$3=require("perf_hooks"),` +
  `require$$4=require("os"),commonjsGlobal=globalThis;`;
const WRITABLE = `for(const k of ["self","location","Worker","importScripts","postMessage","performance"])` +
  `Object.defineProperty(globalThis,k,{value:globalThis[k],writable:true,configurable:true,enumerable:true});`;
/** The first thing a pool worker's script does: tell the supervisor it runs. */
const STARTED = "ict-wasm-worker-started";
const PING = `require("worker_threads").parentPort.postMessage(${JSON.stringify(STARTED)});`;

/** How pool workers are supervised while they start. */
export interface StartPolicy {
  /** Milliseconds for a worker's script to start on the first try; doubled on each further try. */
  startDeadlineMs: number;
  /** Milliseconds for a started worker to load the module once it was asked to. */
  loadDeadlineMs: number;
  /** Fresh workers tried per pool slot before the start fails. */
  attempts: number;
  /** Start pool workers one at a time (each after the previous one's script runs), or all at once. */
  serial: boolean;
  /** Test hook: make a worker's start stall, as Deno sometimes does (slot from 0, attempt from 1). */
  stall?: (slot: number, attempt: number) => boolean;
}

export const DEFAULT_START_POLICY: StartPolicy = {
  startDeadlineMs: 1_000,
  loadDeadlineMs: 30_000,
  attempts: 6,
  serial: true,
};

/** How the pool started. */
export interface StartReport {
  /** XNNPACK's threads. */
  threads: number;
  /** Pool workers that stalled and were replaced (0 on a clean start). */
  replaced: number;
}

interface Pool {
  policy: StartPolicy;
  slots: number;
  replaced: number;
  /** Resolves when the previously created worker's script runs (serial starts). */
  turn: Promise<void>;
  fail: (err: Error) => void;
}

/**
 * One emscripten pool worker (the object emscripten's PThread code holds), backed by a node:worker_threads
 * worker that is replaced if it stalls before it has loaded. Messages posted before it loaded are kept and
 * posted again, in order, to a replacement; messages from a replaced worker are never delivered.
 */
class SupervisedWorker extends EventEmitter {
  #inner: NodeWorker | undefined;
  #attempt = 0;
  #pending: [unknown, readonly Transferable[] | undefined][] = [];
  #started = false;
  #loaded = false;
  #refed = true;
  #terminated = false;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #startedSignal = Promise.withResolvers<void>();

  constructor(readonly path: string, readonly pool: Pool, readonly slot = pool.slots++) {
    super();
    const turn = pool.policy.serial ? pool.turn : Promise.resolve();
    pool.turn = this.#startedSignal.promise;
    turn.then(() => this.#spawn());
  }

  #spawn() {
    if (this.#terminated) return;
    this.#attempt++;
    this.#started = false;
    const inner = this.pool.policy.stall?.(this.slot, this.#attempt)
      ? new NodeWorker("setInterval(() => {}, 1e9)", { eval: true }) // runs, but never says it started
      : new NodeWorker(this.path);
    this.#inner = inner;
    if (!this.#refed) inner.unref();
    inner.on("message", (m: unknown) => {
      if (inner !== this.#inner) return; // a replaced worker
      if (m === STARTED) {
        this.#started = true;
        this.#startedSignal.resolve();
        return this.#arm();
      }
      if ((m as { cmd?: string })?.cmd === "loaded") {
        this.#loaded = true;
        this.#pending = [];
        clearTimeout(this.#timer);
      }
      this.emit("message", m);
    });
    inner.on("error", (e: unknown) => inner === this.#inner && this.emit("error", e));
    inner.on("exit", (code: number) => inner === this.#inner && this.emit("exit", code));
    for (const [m, t] of this.#pending) inner.postMessage(m, t as never);
    this.#arm();
  }

  /** The deadline for the worker's next step: its script starts, then (once asked) it loads. */
  #arm() {
    clearTimeout(this.#timer);
    if (this.#loaded || this.#terminated) return;
    const { startDeadlineMs, loadDeadlineMs } = this.pool.policy;
    if (!this.#started) {
      this.#timer = setTimeout(() => this.#replace(), startDeadlineMs * 2 ** (this.#attempt - 1));
    } else if (this.#pending.length > 0) this.#timer = setTimeout(() => this.#replace(), loadDeadlineMs);
  }

  #replace() {
    const stalled = this.#inner!;
    stalled.unref();
    stalled.terminate();
    if (this.#attempt >= this.pool.policy.attempts) {
      this.#startedSignal.resolve(); // let the other slots go on; the start has failed anyway
      const step = this.#started ? "load" : "start";
      return this.pool.fail(
        new Error(
          `threaded wasm: pthread worker ${this.slot} of XNNPACK's pool did not ${step} after ${this.#attempt} ` +
            `tries (Deno's worker start stalls now and then, as in denoland/deno#32034). Rerun, or set ` +
            `ICT_WASM_THREADS=1 to run the wasm backend on one thread.`,
        ),
      );
    }
    this.pool.replaced++;
    this.#spawn();
  }

  postMessage(message: unknown, transfer?: readonly Transferable[]) {
    if (!this.#loaded) this.#pending.push([message, transfer]);
    this.#inner?.postMessage(message, transfer as never);
    if (this.#inner && !this.#loaded) this.#arm();
  }

  /** Ignored: pool threads run forever and are waited for through Atomics, so they must not hold the loop. */
  ref() {}

  unref() {
    this.#refed = false;
    this.#inner?.unref();
  }

  terminate() {
    this.#terminated = true;
    clearTimeout(this.#timer);
    return this.#inner?.terminate() ?? Promise.resolve(0);
  }
}

/**
 * Initialize the wasm backend with `threads` XNNPACK threads (at most MAX_WASM_THREADS); returns the count it
 * actually runs and how many stalled pool workers were replaced on the way.
 */
export async function initThreadedWasm(
  threads: number,
  policy: StartPolicy = DEFAULT_START_POLICY,
): Promise<StartReport> {
  if (
    wasmBackendStarted() || (tf.engine() as unknown as { pendingBackendInit: unknown }).pendingBackendInit
  ) {
    throw new Error(
      "threaded wasm must start before any TF.js backend initializes (a TF.js op, tf.ready() or " +
        "tf.findBackend('wasm') starts one): call initBackend() first",
    );
  }
  const dir = await Deno.makeTempDir({ prefix: "ict-wasm-threads-" });
  const modulePath = `${dir}/tfjs-backend-wasm-threaded-simd.js`;
  const workerPath = `${dir}/tfjs-backend-wasm-threaded-simd.worker.cjs`;
  const texts = new WeakMap<Blob, string>();
  const [OrigBlob, origCreateObjectURL, origCpus] = [globalThis.Blob, URL.createObjectURL, os.cpus];
  const workerDescriptor = Object.getOwnPropertyDescriptor(globalThis, "Worker");
  const failure = Promise.withResolvers<never>();
  const pool: Pool = { policy, slots: 0, replaced: 0, turn: Promise.resolve(), fail: failure.reject };
  // Emscripten's factory assigns the global Worker (node's) and then calls `new Worker(path)` for each pool slot:
  // while it initializes, that name is the supervised worker, and the assignment is ignored.
  Object.defineProperty(globalThis, "Worker", {
    configurable: true,
    get: () =>
      function (path: string) {
        return new SupervisedWorker(path, pool);
      },
    set: () => {},
  });
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
    Deno.writeTextFileSync(workerPath, PING + WRITABLE + text + "\n" + loadFromFile + "\n");
    return workerPath;
  };
  (os as { cpus: typeof os.cpus }).cpus = () => Array.from({ length: 2 * threads }, () => origCpus()[0]);
  try {
    tf.env().set("WASM_HAS_MULTITHREAD_SUPPORT", true);
    setThreadsCount(Math.min(threads, MAX_WASM_THREADS));
    // The pool loads (and stalled workers are replaced) while this waits; a slot that never loads rejects.
    const ok = await Promise.race([tf.setBackend("wasm"), failure.promise]);
    if (!ok) throw new Error("TF.js could not initialize the threaded wasm backend");
    await tf.ready();
    return { threads: getThreadsCount(), replaced: pool.replaced };
  } finally {
    globalThis.Blob = OrigBlob;
    URL.createObjectURL = origCreateObjectURL;
    (os as { cpus: typeof os.cpus }).cpus = origCpus;
    if (workerDescriptor) Object.defineProperty(globalThis, "Worker", workerDescriptor);
    else delete (globalThis as { Worker?: unknown }).Worker;
    // Every pool worker has read both files by now (or the start failed).
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

/**
 * Whether the wasm backend is initialized. Side-effect free, unlike tf.findBackend("wasm"), which starts a
 * single-threaded initialization when there is none: a later threaded start then raced it, and on a busy
 * machine lost (1 thread instead of 2, seen in 5 of 12 starts beside a busy loop).
 */
export function wasmBackendStarted(): boolean {
  return "wasm" in tf.engine().registry;
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
