// deno task bench:step [--reps N] [--warmup N] [--models a,b] [--no-torch] [--no-profile] [--python PATH] [--json FILE]
// The kit's iCT training step on wasm (lib/step_timing.ts: teacher forward outside the gradient tape, student
// forward + backward, Pseudo-Huber, one RAdam update) beside the same step in PyTorch on the same cores
// (tests/reference/torch_step.py: the independent NCSN++ of tests/reference/networks_reference.py, with
// torch.set_num_threads = the kit's wasm threads), for ncsnpp-cifar10 at batch 1 and ncsnpp-small-32 at
// batch 8. Repetitions are interleaved (kit, PyTorch, PyTorch, kit, …) after warm-up, so both see the same
// machine load; the ratio is PyTorch's seconds per step over the kit's (the kit's speed as a fraction of
// PyTorch's), from the medians and from the best steps; a warning is printed when the per-repetition ratios
// disagree (a busy machine). PyTorch runs with OMP_WAIT_POLICY=PASSIVE unless the environment sets it. Then one more kit step runs under tf.profile, and the 15 kernels
// with the most time are listed.
// Kernel times on wasm are wall times around each kernel call (the wasm backend's timer is performance.now()
// around the call; its kernels are synchronous, threads included). The kit's own kernels (lib/wasm_kernels.ts)
// call other kernels, so each kernel is charged its self time: its wall time less that of the kernels it ran.
// PyTorch is Debian's python3-torch (apt-get install -y --no-install-recommends python3-torch), run with
// /usr/bin/python3; without it the kit is timed alone and the output says so.
import * as tf from "@tensorflow/tfjs";
import { parseTaskFlags } from "../lib/cli.ts";
import { initBackend } from "../lib/backend.ts";
import { buildNetwork, modelConfig } from "../lib/models/index.ts";
import { trainableParams } from "../lib/nn/params.ts";
import { allocateModel, type StepModel, timeIctStep } from "../lib/step_timing.ts";
import { DEFAULT_OPTIMIZER, Optimizer } from "../lib/train/optim.ts";
import { wasmThreads } from "../lib/wasm_threads.ts";
import { type FastPath, fastPaths } from "../lib/wasm_kernels.ts";

const CASES = [
  { model: "ncsnpp-small-32", batch: 8 },
  { model: "ncsnpp-cifar10", batch: 1 },
] as const;
const TORCH_SCRIPT = new URL("../tests/reference/torch_step.py", import.meta.url).pathname;
const INSTALL = "apt-get install -y --no-install-recommends python3-torch";

/** The flags, or a one-line error (exit 2) that says what is valid. */
function parseOrExit() {
  try {
    const args = parseTaskFlags({
      usage:
        "deno task bench:step [--reps N] [--warmup N] [--models ncsnpp-small-32,ncsnpp-cifar10] [--no-torch] " +
        "[--no-profile] [--python /usr/bin/python3] [--json FILE] [--top 15] [--shapes]",
      flags: [
        { name: "reps", value: "N", default: "3", help: "timed steps per model and side, interleaved" },
        { name: "warmup", value: "N", default: "1", help: "untimed steps first" },
        { name: "models", value: "LIST", default: CASES.map((c) => c.model).join(","), help: "which cases" },
        { name: "no-torch", help: "time the kit only" },
        { name: "no-profile", help: "skip the per-kernel profile" },
        {
          name: "python",
          value: "PATH",
          default: "/usr/bin/python3",
          help: "the Python with Debian's python3-torch",
        },
        { name: "json", value: "FILE", help: "also write the figures as JSON" },
        { name: "top", value: "N", default: "15", help: "kernels in the profile" },
        { name: "shapes", help: "split the profile by input shape" },
        {
          name: "ab",
          value: "LIST",
          help: `instead of PyTorch: time the kit with these speed-ups off (A) and on (B), alternating (${
            Object.keys(fastPaths).join(", ")
          }, or all)`,
        },
      ],
    });
    const values = {
      models: args.values.models!,
      python: args.values.python!,
      json: args.values.json,
      "no-torch": args.flag("no-torch"),
      "no-profile": args.flag("no-profile"),
      shapes: args.flag("shapes"),
      ab: args.values.ab,
    };
    const reps = args.int("reps", 1)!;
    const warmup = args.int("warmup", 0)!;
    const top = args.int("top", 1)!;
    return { values, reps, warmup, top };
  } catch (e) {
    console.error(`error: ${(e as Error).message}`);
    Deno.exit(2);
  }
}
const { values, reps, warmup, top } = parseOrExit();
const wanted = values.models.split(",").map((s) => s.trim());
const abPaths = values.ab === undefined
  ? []
  : values.ab === "all"
  ? Object.keys(fastPaths) as FastPath[]
  : values.ab.split(",").map((s) => s.trim()) as FastPath[];
for (const p of abPaths) {
  if (!(p in fastPaths)) {
    console.error(`--ab: ${p} is not one of ${Object.keys(fastPaths).join(", ")}, all`);
    Deno.exit(2);
  }
}
for (const m of wanted) {
  if (!CASES.some((c) => c.model === m)) {
    console.error(`--models: ${m} is not one of ${CASES.map((c) => c.model).join(", ")}`);
    Deno.exit(2);
  }
}

// ---- PyTorch, a line-oriented child process -------------------------------------------------------------

/** Why PyTorch cannot run here, or undefined when it can. */
async function torchMissing(python: string): Promise<string | undefined> {
  try {
    const out = await new Deno.Command(python, {
      args: ["-c", "import torch; print(torch.__version__)"],
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (out.success) return undefined;
    return `${python} cannot import torch (${
      new TextDecoder().decode(out.stderr).trim().split("\n").at(-1)
    })`;
  } catch (e) {
    return `${python} is not there (${(e as Error).message})`;
  }
}

class TorchStep {
  private readonly lines: AsyncIterator<string>;
  private readonly writer: WritableStreamDefaultWriter<Uint8Array>;
  private constructor(private readonly child: Deno.ChildProcess) {
    this.lines = readLines(child.stdout);
    this.writer = child.stdin.getWriter();
  }

  static start(python: string, config: unknown, batch: number, threads: number, warmup: number): TorchStep {
    const child = new Deno.Command(python, {
      args: [
        TORCH_SCRIPT,
        "--config",
        JSON.stringify(config),
        "--batch",
        String(batch),
        "--threads",
        String(threads),
        "--warmup",
        String(warmup),
      ],
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
      // One thread pool, the size asked for. OpenMP threads that sleep between parallel regions: with the
      // default (spinning) policy, a core busy with another process made PyTorch's small-NCSN++ step take
      // 28–40 s instead of 1.5 s here. OMP_WAIT_POLICY from the environment wins.
      env: {
        OMP_NUM_THREADS: String(threads),
        MKL_NUM_THREADS: String(threads),
        OMP_WAIT_POLICY: Deno.env.get("OMP_WAIT_POLICY") ?? "PASSIVE",
      },
    }).spawn();
    return new TorchStep(child);
  }

  async next(): Promise<Record<string, unknown>> {
    const r = await this.lines.next();
    if (r.done) throw new Error(`${TORCH_SCRIPT} exited early (${(await this.child.status).code})`);
    return JSON.parse(r.value);
  }

  async step(): Promise<number> {
    await this.writer.write(new TextEncoder().encode("step\n"));
    const r = await this.next();
    if (typeof r.seconds !== "number" || !Number.isFinite(r.loss as number)) {
      throw new Error(`PyTorch step: ${JSON.stringify(r)}`);
    }
    return r.seconds;
  }

  async close(): Promise<void> {
    await this.writer.write(new TextEncoder().encode("quit\n")).catch(() => {});
    await this.writer.close().catch(() => {});
    await this.child.status;
  }
}

async function* readLines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  let buf = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    buf += chunk;
    let i;
    while ((i = buf.indexOf("\n")) >= 0) {
      yield buf.slice(0, i);
      buf = buf.slice(i + 1);
    }
  }
  if (buf) yield buf;
}

// ---- The profile: self time per kernel ------------------------------------------------------------------

interface KernelRow {
  name: string;
  calls: number;
  selfMs: number;
}

/**
 * One kit step under tf.profile. The engine's per-kernel profiler is wrapped to time each call and subtract the
 * time of the kernels it ran itself (tf.profile's kernelTimeMs on wasm is the wall time around the call,
 * nested kernels included, so composite kernels would be counted twice).
 */
async function profileStep(run: () => Promise<unknown>, byShape: boolean) {
  const profiler = (tf.engine() as unknown as {
    profiler: { profileKernel: (name: string, inputs: unknown, f: () => unknown) => unknown };
  }).profiler;
  const original = profiler.profileKernel;
  const rows = new Map<string, KernelRow>();
  const children: number[] = [];
  let topLevelMs = 0;
  profiler.profileKernel = function (name, inputs, f) {
    children.push(0);
    const t = performance.now();
    try {
      return original.call(this, name, inputs, f);
    } finally {
      const ms = performance.now() - t;
      const nested = children.pop()!;
      if (children.length) children[children.length - 1] += ms;
      else topLevelMs += ms;
      const key = byShape ? `${name} ${shapesOf(inputs)}` : name;
      const row = rows.get(key) ?? { name: key, calls: 0, selfMs: 0 };
      row.calls++;
      row.selfMs += ms - nested;
      rows.set(key, row);
    }
  };
  try {
    const t = performance.now();
    const info = await tf.profile(async () => {
      await run();
      return [];
    });
    const wallMs = performance.now() - t;
    // What tf.profile itself reports: the sum of its kernelTimeMs counts nested kernels twice.
    const profileSumMs = info.kernels.reduce((s, k) => s + (k.kernelTimeMs as number), 0);
    return {
      wallMs,
      topLevelMs,
      profileSumMs,
      kernels: info.kernels.length,
      rows: [...rows.values()].sort((a, b) => b.selfMs - a.selfMs),
    };
  } finally {
    profiler.profileKernel = original;
  }
}

/** The input shapes of a kernel call, for --shapes. */
function shapesOf(inputs: unknown): string {
  return Object.values(inputs as Record<string, { shape?: number[] } | null>)
    .map((t) => (t?.shape ? `[${t.shape}]` : "-")).join(" ");
}

// ---- Main -----------------------------------------------------------------------------------------------

const choice = await initBackend({ backend: "wasm", quiet: true });
const threads = wasmThreads();
const missing = values["no-torch"]
  ? "--no-torch"
  : abPaths.length
  ? "--ab"
  : await torchMissing(values.python!);
const loadavg = () => Deno.loadavg().map((v) => v.toFixed(2)).join(" ");
console.log(
  `bench:step — the kit on ${choice.name} with ${threads} thread${threads > 1 ? "s" : ""}; ` +
    (missing
      ? `PyTorch NOT RUN: ${missing}. Install it with \`${INSTALL}\` for the side-by-side figures.`
      : `PyTorch (${values.python}) with torch.set_num_threads(${threads}) and OMP_WAIT_POLICY=` +
        `${Deno.env.get("OMP_WAIT_POLICY") ?? "PASSIVE"}, interleaved with the kit.`),
);
console.log(`${warmup} warm-up step(s), then ${reps} timed; load average at start: ${loadavg()}`);

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const fmt = (xs: number[]) => xs.map((x) => x.toFixed(2)).join(" ");
const results: Record<string, unknown>[] = [];

for (const { model, batch } of CASES.filter((c) => wanted.includes(c.model))) {
  const config = modelConfig(model);
  const torch = missing ? undefined : TorchStep.start(values.python!, config, batch, threads, warmup);
  let m: StepModel | undefined;
  let optimizer: Optimizer | undefined;
  try {
    m = allocateModel(buildNetwork(config));
    optimizer = new Optimizer(DEFAULT_OPTIMIZER, trainableParams(m.params));
    let seed = 1;
    const kitStep = async () => (await timeIctStep(m!, config, batch, seed++, optimizer)).seconds;
    for (let i = 0; i < warmup; i++) await kitStep();
    if (abPaths.length) {
      // A/B: the same steps with the named speed-ups off (A) and on (B), alternating which goes first.
      const setPaths = (on: boolean) => abPaths.forEach((p) => fastPaths[p] = on);
      const [a, b]: number[][] = [[], []];
      for (let i = 0; i < reps; i++) {
        for (const on of i % 2 === 0 ? [false, true] : [true, false]) {
          setPaths(on);
          (on ? b : a).push(await kitStep());
        }
      }
      setPaths(true);
      const perRep = a.map((x, i) => x / b[i]);
      console.log(`\n${model}, batch ${batch}: A/B of ${abPaths.join(", ")} (${reps} pairs, interleaved)`);
      console.log(`  A (off)  ${median(a).toFixed(3)} s/step (median; steps: ${fmt(a)})`);
      console.log(`  B (on)   ${median(b).toFixed(3)} s/step (median; steps: ${fmt(b)})`);
      console.log(
        `  A/B time ratio ${(median(a) / median(b)).toFixed(3)} (medians); per pair ${
          perRep.map((r) => r.toFixed(3)).join(" ")
        }; median pair ${median(perRep).toFixed(3)}`,
      );
      results.push({ model, batch, threads, ab: abPaths, off: a, on: b, ratio: median(a) / median(b) });
      continue;
    }
    const ready = torch ? await torch.next() : undefined;
    const kit: number[] = [];
    const py: number[] = [];
    for (let i = 0; i < reps; i++) {
      // Alternate who goes first, so a slow spell of the machine does not always fall on one side.
      if (torch && i % 2 === 1) py.push(await torch.step());
      kit.push(await kitStep());
      if (torch && i % 2 === 0) py.push(await torch.step());
    }
    await torch?.close();
    const kitS = median(kit);
    const pyS = torch ? median(py) : undefined;
    const paired = torch ? kit.map((k, i) => py[i] / k) : [];
    console.log(`\n${model}, batch ${batch}`);
    console.log(
      `  kit      ${kitS.toFixed(2)} s/step (median; steps: ${fmt(kit)})  ${(batch / kitS).toFixed(3)} img/s`,
    );
    if (pyS !== undefined) {
      console.log(
        `  PyTorch  ${pyS.toFixed(2)} s/step (median; steps: ${fmt(py)})  ${
          (batch / pyS).toFixed(3)
        } img/s ` +
          `(torch ${ready!.torch}, ${ready!.params} parameters)`,
      );
      console.log(
        `  kit/PyTorch speed: ${(pyS / kitS).toFixed(3)}× (per repetition: ${fmt(paired)}; the kit takes ` +
          `${(kitS / pyS).toFixed(1)}× as long)`,
      );
      console.log(
        `  best of ${reps} (the least disturbed steps): kit ${Math.min(...kit).toFixed(2)} s, PyTorch ` +
          `${Math.min(...py).toFixed(2)} s, kit/PyTorch speed ${
            (Math.min(...py) / Math.min(...kit)).toFixed(3)
          }×`,
      );
      const spread = Math.max(...paired) / Math.min(...paired);
      if (spread > 1.25) {
        console.log(
          `  WARNING: the per-repetition ratios differ by ${
            spread.toFixed(2)
          }×: the machine was busy; repeat`,
        );
      }
    } else console.log(`  PyTorch  not run (${missing})`);
    const row: Record<string, unknown> = { model, batch, threads, kitSeconds: kit, kitMedian: kitS };
    if (pyS !== undefined) {
      Object.assign(row, {
        torchSeconds: py,
        torchMedian: pyS,
        ratio: pyS / kitS,
        bestRatio: Math.min(...py) / Math.min(...kit),
      });
    }

    if (!values["no-profile"]) {
      const p = await profileStep(() => timeIctStep(m!, config, batch, seed++, optimizer), values.shapes!);
      const total = p.rows.reduce((s, r) => s + r.selfMs, 0);
      console.log(
        `  profile of one step: ${(p.wallMs / 1000).toFixed(2)} s wall (with the profiler's overhead), ` +
          `${(p.topLevelMs / 1000).toFixed(2)} s in ${p.kernels} kernel calls, ` +
          `${((p.wallMs - p.topLevelMs) / 1000).toFixed(2)} s outside kernels (JS, tape, reads); ` +
          `tf.profile's kernelTimeMs sum ${(p.profileSumMs / 1000).toFixed(2)} s counts nested kernels twice`,
      );
      const w = values.shapes ? 60 : 24;
      console.log(
        `  ${"kernel".padEnd(w)} ${"calls".padStart(6)} ${"self s".padStart(8)} ${"share".padStart(6)}`,
      );
      for (const r of p.rows.slice(0, top)) {
        console.log(
          `  ${r.name.padEnd(w)} ${String(r.calls).padStart(6)} ${
            (r.selfMs / 1000).toFixed(3).padStart(8)
          } ` +
            `${(100 * r.selfMs / total).toFixed(1).padStart(5)}%`,
        );
      }
      row.profile = { wallMs: p.wallMs, kernelMs: p.topLevelMs, top: p.rows.slice(0, top) };
    }
    results.push(row);
  } finally {
    optimizer?.dispose();
    if (m) { for (const t of m.params.values()) t.dispose(); }
    await torch?.close().catch(() => {});
  }
}
console.log(`\nload average at end: ${loadavg()}`);
if (values.json) await Deno.writeTextFile(values.json, JSON.stringify({ threads, results }, null, 2) + "\n");
