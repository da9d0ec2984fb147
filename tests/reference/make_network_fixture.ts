// Writes tests/fixtures/tiny_networks.safetensors: the tiny NCSN++ and ADM of tiny_networks.ts, their
// parameters and inputs, for the PyTorch reference (networks_reference.py). Tensor names:
//   <net>/params/<parameter name>   TF.js layouts: conv [k, k, in, out], dense [in, out]
//   <net>/x [B, H, W, C]   <net>/c_noise [B]   adm/labels [B, classes] (one-hot)
// Metadata "<net>.config" holds each config as JSON. Not run in CI; its output is committed.
// Run: deno run -A tests/reference/make_network_fixture.ts
import { type TensorEntry, writeSafetensors } from "../../lib/io/checkpoint.ts";
import { tinyCases } from "./tiny_networks.ts";

const tensors = new Map<string, TensorEntry>();
const metadata: Record<string, string> = {};
for (const c of tinyCases()) {
  for (const s of c.network.specs) {
    tensors.set(`${c.name}/params/${s.name}`, { dtype: "F32", shape: s.shape, data: c.values.get(s.name)! });
  }
  tensors.set(`${c.name}/x`, { dtype: "F32", shape: [c.batch, ...c.network.sampleShape], data: c.x });
  tensors.set(`${c.name}/c_noise`, { dtype: "F32", shape: [c.batch], data: c.cNoise });
  if (c.classes) {
    const labels = new Float32Array(c.batch * c.network.labelDim);
    c.classes.forEach((k, i) => labels[i * c.network.labelDim + k] = 1);
    tensors.set(`${c.name}/labels`, { dtype: "F32", shape: [c.batch, c.network.labelDim], data: labels });
  }
  metadata[`${c.name}.config`] = JSON.stringify((c.network as unknown as { config: unknown }).config);
}
const out = new URL("../fixtures/tiny_networks.safetensors", import.meta.url).pathname;
await writeSafetensors(out, tensors, metadata);
console.log(`wrote ${out}: ${tensors.size} tensors`);
