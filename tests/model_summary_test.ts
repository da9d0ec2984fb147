// deno task model:summary: the JSON a script reads, and the errors a user sees.
import { assert, assertEquals, assertMatch } from "@std/assert";
import { runTaskScript } from "./task_runner.ts";

const summary = (...args: string[]) => runTaskScript("model_summary.ts", args);

Deno.test("model:summary --json gives params and gflopsPerImage of the paper configs", async () => {
  const r = await summary("--model", "adm-imagenet64", "--json", "--batch", "4");
  assertEquals(r.code, 0, r.stderr);
  const s = JSON.parse(r.stdout);
  assertEquals(s.params, 295_899_267);
  assert(Math.abs(s.gflopsPerImage - 219.3) < 0.2, `${s.gflopsPerImage}`);
  assertEquals(s.trainGflopsPerImage, 4 * s.gflopsPerImage);
  assertEquals(s.batch, 4);
  assertEquals(s.config.modelChannels, 192);
});

Deno.test("model:summary refuses an unknown model or a bad batch, saying what is valid", async () => {
  const unknown = await summary("--model", "unet");
  assertEquals(unknown.code, 2);
  assertMatch(unknown.stderr, /unknown model "unet": use one of ncsnpp-cifar10, .*adm-imagenet64/);
  const batch = await summary("--model", "mlp-2d", "--batch", "0");
  assertEquals(batch.code, 2);
  assertMatch(batch.stderr, /--batch must be an integer >= 1/);
  const none = await summary();
  assertEquals(none.code, 2);
  assertMatch(none.stderr, /--model is required/);
});

Deno.test("model:summary --step runs one iCT training step of a small model", async () => {
  const r = await summary("--model", "mlp-2d", "--json", "--step", "--batch", "16", "--backend", "cpu");
  assertEquals(r.code, 0, r.stderr);
  const s = JSON.parse(r.stdout);
  assertEquals(s.step.backend, "cpu");
  assert(Number.isFinite(s.step.loss) && s.step.loss > 0, `loss ${s.step.loss}`);
});
