// deno task gpu:check --quick: the report a GPU owner reads first, run here on wasm (tiny models only).
import { assert, assertEquals, assertMatch } from "@std/assert";
import { runTaskScript } from "./task_runner.ts";

const gpuCheck = (...args: string[]) => runTaskScript("gpu_check.ts", args);

Deno.test("gpu:check --quick --json on wasm: backend, limits and the tiny networks against cpu", async () => {
  const r = await gpuCheck("--quick", "--backend", "wasm", "--json");
  assertEquals(r.code, 0, r.stderr);
  const report = JSON.parse(r.stdout); // stdout is the JSON alone
  assertEquals(report.backend, "wasm");
  assertEquals(report.limits.backend, "wasm");
  assertEquals(report.limits.memoryBytes, 4 * 2 ** 30);
  assertEquals(report.tiny.map((t: { model: string }) => t.model), ["ncsnpp", "adm"]);
  for (const t of report.tiny) {
    assert(t.agrees, `${t.model} agrees`);
    assert(t.outputError < 1e-4 && t.gradError < 1e-3, `${t.model}: ${t.outputError}, ${t.gradError}`);
    // wasm (XNNPACK) and cpu sum in different orders: an error of exactly 0 means cpu was compared to itself.
    assert(t.outputError + t.gradError > 0, `${t.model}: compared against another backend`);
    assert(t.worstParam.length > 0);
  }
  assertEquals(report.steps, undefined, "--quick times no paper step");
  assertMatch(r.stderr, /tiny NCSN\+\+ and ADM on wasm against cpu/);
});

Deno.test("gpu:check refuses bad flags, saying what is valid", async () => {
  const steps = await gpuCheck("--quick", "--steps", "1");
  assertEquals(steps.code, 1);
  assertMatch(steps.stderr, /--steps takes an integer >= 3, got "1"/);
  const backend = await gpuCheck("--quick", "--backend", "tpu");
  assertEquals(backend.code, 1);
  assertMatch(backend.stderr, /unknown backend "tpu": use one of tensorflow, webgpu, wasm, cpu or auto/);
});
