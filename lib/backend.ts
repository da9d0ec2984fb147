// The one place that picks the TF.js backend: tensorflow on a GPU > webgpu on a real adapter > tensorflow on
// the host CPU > wasm > cpu. Override with `--backend NAME` (any task) or ICT_BACKEND=NAME; the flag wins. An
// explicit request that cannot be met is an error saying what to do, never a silent fallback. It prints one
// line: what and why. Probing has no side effects beyond what was asked for: the tensorflow addon (which
// switches TF.js's backend and creates a TensorFlow context on the GPU) is imported only for auto/tensorflow.
import * as tf from "@tensorflow/tfjs";
import "@tensorflow/tfjs-backend-wasm";
import { guardWebgpuBackend, type WebgpuBackendLike } from "./webgpu_guard.ts";
import {
  registerCpuTrainingKernels,
  registerWasmTrainingKernels,
  registerWebgpuTrainingKernels,
} from "./wasm_kernels.ts";
import {
  initThreadedWasm,
  MAX_WASM_THREADS,
  requestedWasmThreads,
  wasmBackendStarted,
  wasmThreads,
} from "./wasm_threads.ts";

export const BACKENDS = ["tensorflow", "webgpu", "wasm", "cpu"] as const;
export type BackendName = typeof BACKENDS[number];
export type BackendRequest = BackendName | "auto";

/** What probing found for one candidate. */
export interface Probe {
  name: BackendName;
  available: boolean;
  /** Why it is or is not usable, in words. */
  detail: string;
  /** webgpu only: the adapter is a software/fallback one (llvmpipe, SwiftShader …). */
  software?: boolean;
  /**
   * tensorflow only: the addon runs its ops on a GPU (tfjs-node's `isUsingGpuDevice`). libtensorflow falls
   * back to the host CPU without a word when CUDA 11.2 / cuDNN 8.1 are missing, so loading proves nothing.
   */
  gpu?: boolean;
}

export interface BackendChoice {
  name: BackendName;
  reason: string;
  probes: Probe[];
  /** What was asked for: `auto` or an explicit name (an explicit CPU choice is the user's to make). */
  request: BackendRequest;
}

/** `--backend NAME` from args, else ICT_BACKEND, else "auto". */
export function backendRequest(
  args: string[] = Deno.args,
  env: { get(k: string): string | undefined } = Deno.env,
) {
  const i = args.findIndex((a) => a === "--backend" || a.startsWith("--backend="));
  const raw = i < 0 ? env.get("ICT_BACKEND") : args[i].includes("=") ? args[i].split("=")[1] : args[i + 1];
  const value = (raw ?? "auto").trim().toLowerCase();
  if (value !== "auto" && !(BACKENDS as readonly string[]).includes(value)) {
    throw new Error(`unknown backend "${raw}": use one of ${BACKENDS.join(", ")} or auto`);
  }
  return value as BackendRequest;
}

const HOW_TO: Record<BackendName, string> = {
  tensorflow:
    "add it with `deno add npm:@tensorflow/tfjs-node-gpu@4.22.0` (or tfjs-node) and build its native " +
    "addon with `deno install --allow-scripts=npm:@tensorflow/tfjs-node-gpu` on a machine that can download libtensorflow",
  webgpu: "WebGPU needs a GPU adapter visible to Deno (Vulkan/Metal/DX12 drivers); check `deno task backend`",
  wasm: "the wasm backend ships with the kit; reinstall with `deno install`",
  cpu: "the cpu backend ships with TF.js",
};

/** `auto`'s order: a candidate is taken when its probe is available and passes the test. */
const AUTO_ORDER: [BackendName, (p: Probe) => boolean][] = [
  ["tensorflow", (p) => p.gpu === true],
  ["webgpu", (p) => !p.software],
  ["tensorflow", () => true], // libtensorflow on the host CPU (oneDNN, all cores) still beats wasm
  ["wasm", () => true],
  ["cpu", () => true],
];

/** What was probed, on one line (error messages must stay one line: details may carry newlines). */
function probeSummary(probes: Probe[]): string {
  return probes.filter((p) => p.name !== "cpu").map((p) => `${p.name}: ${p.detail}`).join("; ")
    .replace(/\s+/g, " ");
}

/** Pure decision from probe results: the first available in preference order, or the requested one. */
export function chooseBackend(probes: Probe[], request: BackendRequest): BackendChoice {
  const byName = new Map(probes.map((p) => [p.name, p]));
  const summary = probeSummary(probes);
  if (request !== "auto") {
    const p = byName.get(request);
    if (!p?.available) {
      throw new Error(
        `backend "${request}" was requested but is not usable: ${p?.detail ?? "not probed"}. ` +
          `To use it, ${
            HOW_TO[request]
          }. Or choose another with --backend / ICT_BACKEND (auto picks the best present).`,
      );
    }
    const note = p.software ? " (software adapter)" : p.gpu === false ? " (host CPU only)" : "";
    return { name: request, reason: `requested${note} — ${summary}`, probes, request };
  }
  for (const [name, ok] of AUTO_ORDER) {
    const p = byName.get(name);
    if (p?.available && ok(p)) return { name, reason: summary, probes, request };
  }
  return { name: "cpu", reason: summary, probes, request };
}

/** Does this choice compute on the host CPU (wasm, cpu, or a tensorflow addon that found no GPU)? */
export function runsOnCpu(choice: BackendChoice): boolean {
  if (choice.name === "wasm" || choice.name === "cpu") return true;
  const p = choice.probes.find((q) => q.name === choice.name);
  return choice.name === "tensorflow" ? p?.gpu !== true : Boolean(p?.software);
}

/** The paper's presets: full-size networks that only a GPU trains in a lifetime. */
export const GPU_PRESETS = /^(cifar10|imagenet64)/;

/**
 * A paper preset may not start on a CPU backend that `auto` picked: that run would take decades, and the
 * user most likely meant to use a GPU that the probes did not find. An explicit `--backend wasm|cpu` runs.
 */
export function checkPresetBackend(preset: string, choice: BackendChoice): void {
  if (!GPU_PRESETS.test(preset) || choice.request !== "auto" || !runsOnCpu(choice)) return;
  throw new Error(
    `the ${preset} preset is a GPU job, but auto found no GPU backend and picked ${choice.name} ` +
      `(${
        probeSummary(choice.probes)
      }): follow README's "GPU setup" and check with \`deno task gpu:check\`, ` +
      `or pass --backend ${choice.name} to run it on the CPU anyway`,
  );
}

const TFJS_NODE_PACKAGES = ["@tensorflow/tfjs-node-gpu", "@tensorflow/tfjs-node"];

/** Is the native addon installed: mapped in deno.json AND its binding built on disk? No import, no download. */
async function tensorflowInstalled(pkg: string): Promise<string | undefined> {
  try {
    import.meta.resolve(pkg);
  } catch {
    return undefined;
  }
  const root = new URL(`../node_modules/${pkg}/lib/`, import.meta.url);
  try {
    for await (const dir of Deno.readDir(root)) {
      if (!dir.name.startsWith("napi-v")) continue;
      const binding = new URL(`${dir.name}/tfjs_binding.node`, root);
      if ((await Deno.stat(binding).catch(() => null))?.isFile) return pkg;
    }
  } catch { /* package directory missing */ }
  return undefined;
}

/** TensorFlow reserves nearly all GPU memory at start by default; grow on demand unless the user chose. */
export function allowGpuMemoryGrowth(
  env: { get(k: string): string | undefined; set(k: string, v: string): void },
) {
  if (env.get("TF_FORCE_GPU_ALLOW_GROWTH") === undefined) env.set("TF_FORCE_GPU_ALLOW_GROWTH", "true");
}

/** Pure: the probe of a loaded addon, from its backend's `isUsingGpuDevice` and the GPU's name if known. */
export function tensorflowProbe(pkg: string, usingGpu: boolean | undefined, gpuName?: string): Probe {
  if (usingGpu) {
    return {
      name: "tensorflow",
      available: true,
      gpu: true,
      detail: `${pkg} on GPU ${gpuName ?? "(name unknown)"}`,
    };
  }
  const why = pkg.endsWith("-gpu")
    ? 'libtensorflow found no usable GPU (it needs CUDA 11.2 and cuDNN 8.1 on LD_LIBRARY_PATH: README "GPU setup")'
    : "the CPU build of the addon";
  return { name: "tensorflow", available: true, gpu: false, detail: `${pkg} on the host CPU only: ${why}` };
}

/** The first NVIDIA GPU's name and memory from nvidia-smi, or undefined without one (no driver, no tool). */
export async function nvidiaGpu(): Promise<{ name: string; memoryBytes: number } | undefined> {
  try {
    const out = await new Deno.Command("nvidia-smi", {
      args: ["--query-gpu=name,memory.total", "--format=csv,noheader,nounits"],
      stdout: "piped",
      stderr: "null",
    }).output();
    if (!out.success) return undefined;
    const [name, mib] = new TextDecoder().decode(out.stdout).split("\n")[0].split(",").map((s) => s.trim());
    return name ? { name, memoryBytes: Number(mib) * 2 ** 20 } : undefined;
  } catch {
    return undefined; // nvidia-smi is not installed
  }
}

async function probeTensorflow(): Promise<Probe> {
  for (const pkg of TFJS_NODE_PACKAGES) {
    if (!(await tensorflowInstalled(pkg))) continue;
    allowGpuMemoryGrowth(Deno.env); // read by libtensorflow when the import creates its context
    try {
      await import(pkg);
    } catch (e) {
      return {
        name: "tensorflow",
        available: false,
        detail: `${pkg} failed to load: ${(e as Error).message}`,
      };
    }
    const backend = tf.findBackend("tensorflow") as { isUsingGpuDevice?: boolean } | null;
    const usingGpu = backend?.isUsingGpuDevice;
    return tensorflowProbe(pkg, usingGpu, usingGpu ? (await nvidiaGpu())?.name : undefined);
  }
  return { name: "tensorflow", available: false, detail: "not installed (tfjs-node-gpu / tfjs-node)" };
}

/** The adapter TF.js's webgpu backend will get: it asks for high-performance (tfjs-backend-webgpu base.ts). */
export function requestWebgpuAdapter(): Promise<GPUAdapter | null> {
  const gpu = (navigator as { gpu?: GPU }).gpu;
  return gpu
    ? gpu.requestAdapter({ powerPreference: "high-performance" }).catch(() => null)
    : Promise.resolve(null);
}

const MIB = 2 ** 20;

/** A byte count in MiB or GiB, for limits. */
export function formatBytes(n: number): string {
  return n >= 2 ** 30 ? `${+(n / 2 ** 30).toFixed(2)} GiB` : `${+(n / MIB).toFixed(1)} MiB`;
}

async function probeWebgpu(): Promise<Probe> {
  if (!(navigator as { gpu?: GPU }).gpu) {
    return { name: "webgpu", available: false, detail: "navigator.gpu is absent in this Deno" };
  }
  const adapter = await requestWebgpuAdapter();
  if (!adapter) return { name: "webgpu", available: false, detail: "no adapter" };
  const info = adapter.info as GPUAdapterInfo & { isFallbackAdapter?: boolean };
  const label = [info.vendor, info.architecture, info.device, info.description].filter(Boolean).join(" ");
  const software = Boolean(info.isFallbackAdapter) || /llvmpipe|lavapipe|swiftshader|software/i.test(label);
  // The limits that bound what one op may touch: TF.js binds every tensor whole.
  const limits = `binding ≤ ${formatBytes(adapter.limits.maxStorageBufferBindingSize)}, buffer ≤ ${
    formatBytes(adapter.limits.maxBufferSize)
  }`;
  return {
    name: "webgpu",
    available: true,
    software,
    detail: software ? `software adapter only (${label}; ${limits})` : `${label} (${limits})`,
  };
}

export interface Probers {
  tensorflow(): Promise<Probe>;
  webgpu(): Promise<Probe>;
}

let tensorflowImport: Promise<Probe> | undefined; // a failed import floods the log on a retry: import once

const PROBERS: Probers = { tensorflow: () => (tensorflowImport ??= probeTensorflow()), webgpu: probeWebgpu };

/**
 * Probe the candidates for `request`. The tensorflow addon is imported only for auto or tensorflow (at most
 * once per process); `probers` is for tests.
 */
export async function probeBackends(
  request: BackendRequest = "auto",
  probers: Probers = PROBERS,
): Promise<Probe[]> {
  const tensorflow: Probe = request === "auto" || request === "tensorflow"
    ? await probers.tensorflow()
    : { name: "tensorflow", available: false, detail: `not loaded (--backend ${request} was asked for)` };
  return [
    tensorflow,
    await probers.webgpu(),
    { name: "wasm", available: true, detail: "XNNPACK SIMD" },
    { name: "cpu", available: true, detail: "pure JavaScript" },
  ];
}

export interface InitOptions {
  /** Overrides --backend / ICT_BACKEND. */
  backend?: BackendRequest;
  /** Do not print the one-line report. */
  quiet?: boolean;
}

/** Choose, initialize and report the backend; returns the choice. */
export async function initBackend(opts: InitOptions = {}): Promise<BackendChoice> {
  const request = opts.backend ?? backendRequest();
  const choice = chooseBackend(await probeBackends(request), request);
  if (choice.name === "webgpu") {
    await import("@tensorflow/tfjs-backend-webgpu");
    registerWebgpuTrainingKernels();
  }
  if (choice.name === "cpu") registerCpuTrainingKernels();
  const threads = choice.name === "wasm" ? requestedWasmThreads() : 1;
  let replaced = 0;
  if (choice.name === "wasm") {
    registerWasmTrainingKernels();
    // Fixed at first initialization; stalled pool workers are replaced (lib/wasm_threads.ts).
    if (threads > 1 && !wasmBackendStarted()) replaced = (await initThreadedWasm(threads)).replaced;
  }
  if (!(await tf.setBackend(choice.name))) {
    throw new Error(`TF.js could not initialize the ${choice.name} backend`);
  }
  await tf.ready();
  // TF.js's webgpu backend checks no sizes and listens for no errors: garbage instead of exceptions.
  if (choice.name === "webgpu") guardWebgpuBackend(tf.backend() as unknown as WebgpuBackendLike);
  if (choice.name === "wasm") {
    const got = wasmThreads();
    const expected = Math.min(threads, MAX_WASM_THREADS);
    const notes = [
      threads > MAX_WASM_THREADS ? `tfjs-backend-wasm runs at most ${MAX_WASM_THREADS}` : "",
      got < expected ? `fewer than the ${expected} asked for: XNNPACK could not start its threads` : "",
      replaced > 0 ? `${replaced} stalled pool worker(s) replaced at start` : "",
    ].filter(Boolean);
    choice.reason = `${got} thread(s) (ICT_WASM_THREADS${
      notes.map((n) => `; ${n}`).join("")
    }) — ${choice.reason}`;
  }
  if (!opts.quiet) console.error(`backend: ${choice.name} — ${choice.reason}`);
  return choice;
}

/** What bounds a run on the current backend: per-tensor limits (webgpu) and the memory tensors can use. */
export interface DeviceLimits {
  backend: BackendName;
  /** The device in words: adapter or GPU name, or "host CPU". */
  device: string;
  /** webgpu: the largest tensor one op may bind (maxStorageBufferBindingSize). */
  maxBindingBytes?: number;
  /** webgpu: the largest buffer (maxBufferSize). */
  maxBufferBytes?: number;
  /** Memory available to tensors, where it is known. */
  memoryBytes?: number;
  /** Where memoryBytes comes from, or why it is unknown. */
  memorySource: string;
}

/** The wasm backend's heap is 32-bit: 4 GiB at most. */
const WASM_HEAP_BYTES = 4 * 2 ** 30;

/** Limits of the backend initBackend chose (call it after initBackend). */
export async function deviceLimits(): Promise<DeviceLimits> {
  const backend = tf.getBackend() as BackendName;
  const host = () => ({
    device: "host CPU",
    memoryBytes: Deno.systemMemoryInfo().total,
    memorySource: "system memory (Deno.systemMemoryInfo)",
  });
  const nvidia = async (fallback: string) => {
    const gpu = await nvidiaGpu();
    return gpu
      ? {
        memoryBytes: gpu.memoryBytes,
        memorySource: `nvidia-smi memory.total of ${gpu.name}`,
        gpu: gpu.name,
      }
      : { memorySource: fallback, gpu: undefined };
  };
  if (backend === "webgpu") {
    const b = tf.backend() as unknown as WebgpuBackendLike & { adapterInfo?: { vendor?: string } };
    const info = (await requestWebgpuAdapter())?.info;
    const { gpu: _, ...memory } = await nvidia(
      "unknown: WebGPU reports no device memory and nvidia-smi found no GPU",
    );
    return {
      backend,
      device: [info?.vendor, info?.architecture, info?.device, info?.description].filter(Boolean).join(" "),
      maxBindingBytes: b.device.limits.maxStorageBufferBindingSize,
      maxBufferBytes: b.device.limits.maxBufferSize,
      ...memory,
    };
  }
  if (backend === "tensorflow") {
    const onGpu = (tf.backend() as { isUsingGpuDevice?: boolean }).isUsingGpuDevice;
    if (!onGpu) return { backend, ...host() };
    const { gpu, ...memory } = await nvidia("unknown: nvidia-smi found no GPU");
    return { backend, device: gpu ?? "GPU (name unknown: no nvidia-smi)", ...memory };
  }
  if (backend === "wasm") {
    return { backend, device: "host CPU", memoryBytes: WASM_HEAP_BYTES, memorySource: "wasm32 heap (4 GiB)" };
  }
  return { backend, ...host() };
}
