// The tiny NCSN++ and ADM give the same outputs and gradients on the cpu, wasm and (where an adapter exists)
// webgpu backends (wasm's conv gradients come from lib/wasm_kernels.ts), and the same outputs as the
// independent PyTorch implementation (tests/reference/networks_reference.py, whose outputs are committed).
import { assert, assertEquals } from "@std/assert";
import "@tensorflow/tfjs-backend-wasm";
import { readSafetensors } from "../lib/io/checkpoint.ts";
import { registerWasmTrainingKernels } from "../lib/wasm_kernels.ts";
import { assertClose } from "../lib/testing.ts";
import { outputsAndGrads, tinyCases } from "./reference/tiny_networks.ts";

registerWasmTrainingKernels();

const run = outputsAndGrads;

// WebGPU where an adapter exists (software Vulkan counts here: this checks the ops, not the speed).
const hasWebgpu =
  !!(await (navigator as { gpu?: { requestAdapter(): Promise<unknown> } }).gpu?.requestAdapter());
if (hasWebgpu) await import("@tensorflow/tfjs-backend-webgpu");

for (
  const [backend, c] of [
    ...tinyCases().map((c) => ["wasm", c] as const),
    ...tinyCases().map((c) => ["webgpu", c] as const),
  ]
) {
  Deno.test({
    name: `tiny ${c.name}: cpu and ${backend} agree, forward and backward (training, with dropout)`,
    ignore: backend === "webgpu" && !hasWebgpu,
  }, async () => {
    const cpu = await run("cpu", c, true);
    const other = await run(backend, c, true);
    const scale = Math.max(...cpu.out.map(Math.abs));
    await assertClose(other.out, cpu.out, {
      atol: 1e-4 * scale,
      rtol: 1e-4,
      message: `${c.name} output on ${backend}`,
    });
    for (const [name, g] of cpu.grads) {
      const gs = Math.max(1e-6, ...g.map(Math.abs));
      await assertClose(other.grads.get(name)!, g, {
        atol: 2e-4 * gs,
        rtol: 1e-3,
        message: `${c.name} ∂/∂${name}`,
      });
    }
  });
}

Deno.test("tiny NCSN++ and ADM match the PyTorch reference implementation", async () => {
  const fixture = new URL("./fixtures/tiny_networks_torch.safetensors", import.meta.url).pathname;
  const { tensors } = await readSafetensors(fixture);
  const inputs =
    (await readSafetensors(new URL("./fixtures/tiny_networks.safetensors", import.meta.url).pathname))
      .tensors;
  for (const c of tinyCases()) {
    // The reference ran on the committed inputs; they must still be what tiny_networks.ts makes.
    const stale =
      "tests/fixtures are stale: rerun tests/reference/make_network_fixture.ts and networks_reference.py";
    assertEquals(inputs.get(`${c.name}/x`)?.data, c.x, stale);
    for (const [name, v] of c.values) {
      assertEquals(inputs.get(`${c.name}/params/${name}`)?.data, v, stale);
    }
    const torchOut = tensors.get(`${c.name}/out`);
    assert(torchOut, `${c.name}/out missing from ${fixture}`);
    const { out } = await run("cpu", c, false);
    const scale = Math.max(...(torchOut.data as Float32Array).map(Math.abs));
    await assertClose(out, torchOut.data as Float32Array, {
      atol: 1e-4 * scale,
      rtol: 1e-4,
      message: `${c.name} vs PyTorch`,
    });
  }
});
