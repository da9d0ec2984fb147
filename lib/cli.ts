// What every task shares: one flag parser with one set of rules and one help format, SIGINT/SIGTERM
// handling, and what a task does with an error (print its message, not a stack trace: the messages say what
// to do, and exit with status 1; set ICT_DEBUG=1 to see the stack).
//
// Flags: `--key value`, `--key=value`, or a bare `--key` (value "true"). Boolean flags never take a value.
// Every task answers `--help` with its usage and flag list, and refuses unknown flags, naming the known ones.
//
// Signals: the first SIGINT/SIGTERM asks a stoppable task to stop: long loops (training steps, sample
// batches, feature batches, evaluation) call `checkStop` between batches, which throws `StopRequested`;
// `train` then saves a checkpoint and exits 0; a task whose result is not complete (sample, fid, tune:steps,
// denoise, edit) exits 130 without writing it. A second signal exits at once (status 130). A task that is not
// stoppable exits at the first signal. `yieldToEvents` says why a signal waits at most ~0.2 s plus one batch.

import { setImmediate } from "node:timers";

// ---- flags ------------------------------------------------------------------------------------------------

/**
 * Command-line flags in order: `--key value`, `--key=value`, or a bare `--key` (value "true"). Flags named in
 * `booleans` never take a value (`--resume`); any other takes the next argument unless it is a flag.
 */
export function parseFlags(args: string[], booleans: readonly string[] = []): [string, string][] {
  const out: [string, string][] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (!a.startsWith("--")) throw new Error(`unexpected argument "${a}": flags look like --key value`);
    const eq = a.indexOf("=");
    if (eq > 0) out.push([a.slice(2, eq), a.slice(eq + 1)]);
    else {
      const key = a.slice(2);
      const next = args[i + 1];
      out.push([
        key,
        !booleans.includes(key) && next !== undefined && !next.startsWith("--") ? args[++i] : "true",
      ]);
    }
  }
  return out;
}

export interface FlagSpec {
  /** Without the dashes, kebab case: "max-steps". */
  name: string;
  /** What the value is, for the help ("DIR", "N"); absent for a boolean flag. */
  value?: string;
  /** Used when the flag is not given. */
  default?: string;
  help: string;
}

/** The flags every task that trains, samples or evaluates shares, written once. */
export const BACKEND_FLAG: FlagSpec = {
  name: "backend",
  value: "NAME",
  help: "TF.js backend: auto, tensorflow, webgpu, wasm, cpu",
};
/** The run that sample, edit, tune:steps and denoise read. */
export const RUN_FLAG: FlagSpec = {
  name: "run",
  value: "DIR|FILE",
  help: "a run directory (its newest checkpoint) or a .safetensors file",
};
/** Which weights of that run. */
export const WEIGHTS_FLAG: FlagSpec = {
  name: "weights",
  value: "ema|params",
  default: "ema",
  help: "the student's EMA or the online student",
};

export interface TaskSpec {
  /** The command line(s) the help starts with, e.g. "deno task sample --run DIR [--n N]". */
  usage: string;
  /** Flags the task reads. */
  flags: FlagSpec[];
  /** Words before the flags (`fid.ts ref …`): their names, in order. */
  positionals?: string[];
  /** Accept any other `--SETTING VALUE` (config overrides, checked by the caller); text for the help. */
  settings?: string;
  /** More lines for the help. */
  notes?: string;
}

export interface ParsedFlags {
  /** Flag values by name (last one wins), defaults filled in. */
  values: Record<string, string | undefined>;
  /** Words before the flags, by the spec's names. */
  positionals: Record<string, string | undefined>;
  /** The `--SETTING VALUE` pairs that are not the task's own flags (only with `settings`), in order. */
  settings: [string, string][];
  /** Whether a flag was given on the command line (not filled from a default). */
  given(name: string): boolean;
  /** A boolean flag: given without a value, or =true/=1. */
  flag(name: string): boolean;
  /** An integer flag >= min; the error names the flag. */
  int(name: string, min?: number): number | undefined;
  /** A number flag > 0 or >= min. */
  number(name: string, min?: number): number | undefined;
}

/** The help of a task: usage, flags with their values and defaults, notes. */
export function helpText(spec: TaskSpec): string {
  const rows = [...spec.flags, { name: "help", help: "print this help and exit" }].map((f) => {
    const left = `  --${f.name}${"value" in f && f.value ? ` ${f.value}` : ""}`;
    const def = "default" in f && f.default !== undefined ? ` (default ${f.default})` : "";
    return `${left.padEnd(30)} ${f.help}${def}`;
  });
  return [
    `usage: ${spec.usage}`,
    ...(rows.length ? ["flags:", ...rows] : []),
    ...(spec.settings ? [`  --SETTING VALUE                ${spec.settings}`] : []),
    ...(spec.notes ? [spec.notes] : []),
    "flags: --key value, --key=value, or a bare --key for a switch. SIGINT/SIGTERM stop a long task after its " +
    "current batch; a second signal exits at once.",
  ].join("\n");
}

/**
 * Parse a task's command line by its spec. `--help` prints the help and exits 0; unknown flags (when the task
 * takes no settings), a value given to a switch, or a missing positional are errors that point to --help.
 */
export function parseTaskFlags(spec: TaskSpec, args: string[] = Deno.args): ParsedFlags {
  const names = spec.positionals ?? [];
  const positionals: Record<string, string | undefined> = {};
  let i = 0;
  for (; i < names.length && i < args.length && !args[i].startsWith("--"); i++) {
    positionals[names[i]] = args[i];
  }
  const switches = ["help", ...spec.flags.filter((f) => !f.value).map((f) => f.name)];
  const pairs = parseFlags(args.slice(i), switches);
  if (pairs.some(([k]) => k === "help")) {
    console.log(helpText(spec));
    Deno.exit(0);
  }
  const known = new Set(spec.flags.map((f) => f.name));
  const settings = pairs.filter(([k]) => !known.has(k));
  if (settings.length && !spec.settings) {
    throw new Error(
      `unknown flag ${settings.map(([k]) => `--${k}`).join(", ")}: this task takes ${
        spec.flags.map((f) => `--${f.name}`).join(", ") || "no flags"
      } (see --help)`,
    );
  }
  if (names.length && i < names.length) {
    throw new Error(`missing ${names.slice(i).join(", ")}: usage: ${spec.usage} (see --help)`);
  }
  const values: Record<string, string | undefined> = {};
  for (const f of spec.flags) values[f.name] = f.default;
  for (const [k, v] of pairs) if (known.has(k)) values[k] = v;
  for (const f of spec.flags) {
    if (
      !f.value && pairs.some(([k]) => k === f.name) && !["true", "false", "1", "0"].includes(values[f.name]!)
    ) {
      throw new Error(`--${f.name} is a switch: give it alone (or =true / =false), got "${values[f.name]}"`);
    }
  }
  const numberOf = (name: string, integer: boolean, min: number, strict: boolean) => {
    const raw = values[name];
    if (raw === undefined) return undefined;
    const x = Number(raw.replaceAll("_", ""));
    const ok = raw.trim() !== "" && Number.isFinite(x) && (!integer || Number.isInteger(x)) &&
      (strict ? x > min : x >= min);
    if (!ok) {
      throw new Error(
        `--${name} takes ${integer ? "an integer" : "a number"} ${strict ? ">" : ">="} ${min}, got "${raw}"`,
      );
    }
    return x;
  };
  return {
    values,
    positionals,
    settings,
    given: (name) => pairs.some(([k]) => k === name),
    flag: (name) => values[name] === "true" || values[name] === "1",
    int: (name, min = 0) => numberOf(name, true, min, false),
    number: (name, min) => numberOf(name, false, min ?? 0, min === undefined),
  };
}

// ---- signals ------------------------------------------------------------------------------------------------

/** Thrown by `checkStop` once a stop was asked for: a long loop ends where it is. */
export class StopRequested extends Error {
  constructor(readonly reason: string) {
    super(`stopped by ${reason}`);
    this.name = "StopRequested";
  }
}

let stopReason: string | null = null;
const stopListeners = new Set<(reason: string) => void>();
let installed: { graceful: boolean; dispose: () => void } | null = null;

/** Whether a stop was asked for (a signal, or `requestStop`). */
export function stopRequested(): boolean {
  return stopReason !== null;
}

/** Ask the running task to stop after its current batch (what the first signal does). */
export function requestStop(reason: string): void {
  if (stopReason !== null) return;
  stopReason = reason;
  for (const f of [...stopListeners]) f(reason);
}

/** Forget a stop request (tests that run several tasks in one process). */
export function clearStop(): void {
  stopReason = null;
}

/** Call `f` when a stop is asked for; returns the function that removes it. */
export function onStop(f: (reason: string) => void): () => void {
  stopListeners.add(f);
  return () => stopListeners.delete(f);
}

const encoder = new TextEncoder();

/**
 * Install the SIGINT/SIGTERM handlers (once per process). `graceful`: the first signal asks for a stop and a
 * second exits at once; otherwise the first exits at once. Returns a function that removes them.
 */
export function handleSignals(graceful = true): () => void {
  if (installed) {
    installed.graceful ||= graceful;
    return () => {};
  }
  const signals = ["SIGINT", "SIGTERM"] as const;
  const handler = (name: string) => () => {
    if (stopReason !== null || !installed?.graceful) {
      Deno.stderr.writeSync(encoder.encode(`\n${name}: exiting now\n`));
      Deno.exit(130);
    }
    Deno.stderr.writeSync(
      encoder.encode(
        `\n${name} received: stopping after the current batch (send it again to exit at once)\n`,
      ),
    );
    requestStop(name);
  };
  const listeners = signals.map((s) => [s, handler(s)] as const);
  if (Deno.build.os !== "windows") { for (const [s, f] of listeners) Deno.addSignalListener(s, f); }
  else Deno.addSignalListener("SIGINT", listeners[0][1]);
  installed = {
    graceful,
    dispose: () => {
      if (Deno.build.os !== "windows") { for (const [s, f] of listeners) Deno.removeSignalListener(s, f); }
      else Deno.removeSignalListener("SIGINT", listeners[0][1]);
      installed = null;
    },
  };
  return installed.dispose;
}

/** At most this long between two yields that wait for a timer (see `yieldToEvents`). */
export const SIGNAL_POLL_MS = 200;
let lastTimerWait = -Infinity;

/**
 * Let pending signals be delivered between two batches of synchronous work (TF.js's cpu and wasm reads resolve
 * as microtasks, which never let a signal listener run). Deno notices a signal only when its event loop waits
 * for I/O or a timer; a turn that finds work ready (a MessageChannel message, a setImmediate) skips that wait
 * and delivered a signal only after ~20-60 such turns (once node:worker_threads is loaded, as the threaded wasm
 * backend does, a MessageChannel round trip did not even run due timers more than once in ~64). A loop of
 * 1-4 s batches then ignored Ctrl-C for minutes. So: a fresh 0 ms timer, which makes the loop wait (about 2
 * ms), when SIGNAL_POLL_MS have passed since the last one, else a node setImmediate (about 10 µs). A signal is
 * then delivered within SIGNAL_POLL_MS plus one batch, for at most ~1% of the time.
 */
export function yieldToEvents(): Promise<void> {
  if (performance.now() - lastTimerWait < SIGNAL_POLL_MS) return new Promise((r) => setImmediate(r));
  return new Promise((resolve) =>
    setTimeout(() => {
      lastTimerWait = performance.now();
      resolve();
    }, 0)
  );
}

const tracePhases = () => Deno.env.get("ICT_TRACE_PHASES") === "1";
const phaseDelay = () => Number(Deno.env.get("ICT_TEST_PHASE_DELAY_MS") ?? 0);

/**
 * Between two batches of a long loop: let signals arrive, then throw `StopRequested` if a stop was asked for.
 * `phase` names the loop ("sample-grid", "eval", …); with ICT_TRACE_PHASES=1 each call prints `phase: NAME`
 * to stderr, and ICT_TEST_PHASE_DELAY_MS makes each batch that much longer (subprocess tests use both to
 * signal a task in a known phase).
 */
export async function checkStop(phase: string): Promise<void> {
  if (tracePhases()) Deno.stderr.writeSync(encoder.encode(`phase: ${phase}\n`));
  const delay = phaseDelay();
  if (delay > 0) await new Promise((r) => setTimeout(r, delay));
  await yieldToEvents();
  if (stopReason !== null) throw new StopRequested(stopReason);
}

// ---- running a task -----------------------------------------------------------------------------------------

export interface TaskOptions {
  /**
   * The task checks `checkStop` in its long loops: the first SIGINT/SIGTERM asks it to stop (it ends with
   * status 0 and says so), a second exits at once. Otherwise the first signal exits at once.
   */
  stoppable?: boolean;
}

/** Run a task's main function; errors become one "error: …" line and exit status 1. */
export async function runTask(main: () => Promise<void>, opts: TaskOptions = {}): Promise<never> {
  handleSignals(opts.stoppable ?? false);
  try {
    await main();
    Deno.exit(0);
  } catch (e) {
    if (e instanceof StopRequested) {
      console.error(`stopped (${e.reason}) before the task finished; nothing partial was written`);
      Deno.exit(130);
    }
    const err = e as Error;
    console.error(Deno.env.get("ICT_DEBUG") ? err.stack : `error: ${err.message ?? err}`);
    Deno.exit(1);
  }
}
