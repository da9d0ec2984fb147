import { assertEquals, assertMatch, assertNotEquals, assertThrows } from "@std/assert";
import { requestedWasmThreads } from "../lib/wasm_threads.ts";
import { assertClose } from "../lib/testing.ts";

const child = new URL("./wasm_threads_child.ts", import.meta.url).pathname;

/** One fresh process that starts threaded wasm; it must exit on its own within `timeoutMs`. */
async function start(policy?: object | string, timeoutMs = 60_000) {
  const arg = typeof policy === "string" ? policy : JSON.stringify(policy);
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", child, ...(policy ? [arg] : [])],
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(timeoutMs),
  }).output().catch((e: Error) => ({
    code: -1,
    stdout: new Uint8Array(),
    stderr: new TextEncoder().encode(
      `${e.name}: did not finish in ${timeoutMs / 1000} s (a hung start or exit)`,
    ),
  }));
  const line = new TextDecoder().decode(out.stdout).split("\n").findLast((l) => l.startsWith("{"));
  return {
    code: out.code,
    result: out.code === 0 && line ? JSON.parse(line) : undefined,
    stderr: new TextDecoder().decode(out.stderr),
  };
}

/** A busy loop on one core while `body` runs: Deno's worker start stalled most often beside one. */
async function besideBusyLoop<T>(body: () => Promise<T>): Promise<T> {
  const busy = new Deno.Command(Deno.execPath(), {
    args: ["eval", "for (;;) {}"],
    stdout: "null",
    stderr: "null",
  })
    .spawn();
  try {
    return await body();
  } finally {
    busy.kill("SIGKILL");
    await busy.status;
  }
}

// Before the fix, beside one busy loop: 7 of 20 starts hung for good (a pool worker whose script never ran),
// and through initBackend 5 of 12 came up with 1 thread (tf.findBackend("wasm") had started a 1-thread init).
Deno.test("threaded wasm: 20 starts in a row beside a busy loop (initBackend, as every task) all get 2 threads, compute like cpu, and exit", async () => {
  await besideBusyLoop(async () => {
    for (let i = 1; i <= 20; i++) {
      const { code, result, stderr } = await start();
      assertEquals(code, 0, `start ${i}: ${stderr}`);
      assertEquals(result.threads, 2, `start ${i}: ${result.report}`);
      assertMatch(result.report, /^2 thread\(s\) \(ICT_WASM_THREADS\)/);
      // The emscripten factory's global Worker assignment does not leak: Deno's web Worker is back.
      assertEquals(result.globalWorker, "Worker");
      if (i === 1) await assertClose(result.wasm, result.cpu, { atol: 1e-4, rtol: 1e-4 });
    }
  });
});

Deno.test("threaded wasm: refused, with what to do, once something has started a TF.js backend", async () => {
  const { code, stderr } = await start("after-findBackend");
  assertNotEquals(code, 0);
  assertMatch(
    stderr,
    /threaded wasm must start before any TF.js backend initializes.*call initBackend\(\) first/,
  );
});

Deno.test("threaded wasm: a pool worker whose start stalls is replaced, and the start completes", async () => {
  // Slot 3 stalls twice, slot 6 once; all at once (not serial), so later slots load while 3 is replaced.
  const policy = { startDeadlineMs: 300, serial: false, stall: [[3, 1], [3, 2], [6, 1]] };
  const { code, result, stderr } = await start(policy);
  assertEquals(code, 0, stderr);
  assertEquals(result.threads, 2);
  assertEquals(result.replaced, 3);
  await assertClose(result.wasm, result.cpu, { atol: 1e-4, rtol: 1e-4 });
  // Serially: a stalled slot holds the next ones back until its replacement runs.
  const serial = await start({ startDeadlineMs: 300, serial: true, stall: [[0, 1], [5, 1]] });
  assertEquals(serial.code, 0, serial.stderr);
  assertEquals([serial.result.threads, serial.result.replaced], [2, 2]);
});

Deno.test("threaded wasm: a slot that never starts fails the start with what to do, and does not hang", async () => {
  const { code, stderr } = await start({ startDeadlineMs: 100, attempts: 3, stall: "all" }, 30_000);
  assertNotEquals(code, 0);
  assertMatch(stderr, /did not start after 3 tries/);
  assertMatch(stderr, /ICT_WASM_THREADS=1/);
});

Deno.test("requestedWasmThreads: ICT_WASM_THREADS, default all cores, bad values refused", () => {
  const saved = Deno.env.get("ICT_WASM_THREADS");
  try {
    Deno.env.delete("ICT_WASM_THREADS");
    assertEquals(requestedWasmThreads(), navigator.hardwareConcurrency);
    Deno.env.set("ICT_WASM_THREADS", "3");
    assertEquals(requestedWasmThreads(), 3);
    Deno.env.set("ICT_WASM_THREADS", "0");
    assertThrows(() => requestedWasmThreads(), Error, "integer >= 1");
  } finally {
    if (saved === undefined) Deno.env.delete("ICT_WASM_THREADS");
    else Deno.env.set("ICT_WASM_THREADS", saved);
  }
});
