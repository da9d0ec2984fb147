// The one place that picks the TF.js backend: tensorflow > webgpu > wasm > cpu.
// Override with `--backend NAME` (any task) or ICT_BACKEND=NAME; the flag wins. An explicit request that
// cannot be met is an error saying what to do, never a silent fallback. It prints one line: what and why.
import * as tf from "@tensorflow/tfjs";
import "@tensorflow/tfjs-backend-wasm";
import { registerCpuTrainingKernels, registerWasmTrainingKernels } from "./wasm_kernels.ts";
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
}

export interface BackendChoice {
  name: BackendName;
  reason: string;
  probes: Probe[];
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

/** Pure decision from probe results: the first available in preference order, or the requested one. */
export function chooseBackend(probes: Probe[], request: BackendRequest): BackendChoice {
  const byName = new Map(probes.map((p) => [p.name, p]));
  const summary = probes.filter((p) => p.name !== "cpu").map((p) => `${p.name}: ${p.detail}`).join("; ");
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
    return {
      name: request,
      reason: `requested${p.software ? " (software adapter)" : ""} — ${summary}`,
      probes,
    };
  }
  for (const name of BACKENDS) {
    const p = byName.get(name);
    if (p?.available && !(name === "webgpu" && p.software)) return { name, reason: summary, probes };
  }
  return { name: "cpu", reason: summary, probes };
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

let tensorflowImport: Promise<Probe> | undefined; // a failed import floods the log on a retry: import once

async function probeTensorflow(): Promise<Probe> {
  for (const pkg of TFJS_NODE_PACKAGES) {
    if (!(await tensorflowInstalled(pkg))) continue;
    try {
      await import(pkg);
      return { name: "tensorflow", available: true, detail: `${pkg} loaded` };
    } catch (e) {
      return {
        name: "tensorflow",
        available: false,
        detail: `${pkg} failed to load: ${(e as Error).message}`,
      };
    }
  }
  return { name: "tensorflow", available: false, detail: "not installed (tfjs-node-gpu / tfjs-node)" };
}

async function probeWebgpu(): Promise<Probe> {
  const gpu = (navigator as { gpu?: GPU }).gpu;
  if (!gpu) return { name: "webgpu", available: false, detail: "navigator.gpu is absent in this Deno" };
  const adapter = await gpu.requestAdapter().catch(() => null);
  if (!adapter) return { name: "webgpu", available: false, detail: "no adapter" };
  const info = adapter.info as GPUAdapterInfo & { isFallbackAdapter?: boolean };
  const label = [info.vendor, info.architecture, info.device, info.description].filter(Boolean).join(" ");
  const software = Boolean(info.isFallbackAdapter) || /llvmpipe|lavapipe|swiftshader|software/i.test(label);
  return {
    name: "webgpu",
    available: true,
    software,
    detail: software ? `software adapter only (${label})` : label,
  };
}

/** Probe every candidate (each at most once per process for tensorflow). */
export async function probeBackends(): Promise<Probe[]> {
  tensorflowImport ??= probeTensorflow();
  return [
    await tensorflowImport,
    await probeWebgpu(),
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
  const choice = chooseBackend(await probeBackends(), request);
  if (choice.name === "webgpu") await import("@tensorflow/tfjs-backend-webgpu");
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
