// deno task bench: the kit's forward-op conv gradients against TF.js's own webgpu kernels at a paper-like shape
// (3×3, [8,32,32,128] → 128, 2.42 GFLOP each), on whatever WebGPU adapter exists (llvmpipe on a CPU machine).
// Each group's baseline is TF.js's kernel, so `deno bench` prints the ratio. No adapter: nothing to measure.
import * as tf from "@tensorflow/tfjs";
import { requestWebgpuAdapter } from "../lib/backend.ts";
import { conv2dFilterGradientByConv, conv2dInputGradient } from "../lib/wasm_kernels.ts";

if (await requestWebgpuAdapter()) {
  // Not initBackend: that replaces TF.js's kernels, which are the baseline here.
  await import("@tensorflow/tfjs-backend-webgpu");
  await tf.setBackend("webgpu");
  const [b, h, c] = [8, 32, 128];
  const x = tf.randomNormal([b, h, h, c]) as tf.Tensor4D;
  const w = tf.randomNormal([3, 3, c, c]) as tf.Tensor4D;
  const dy = tf.randomNormal([b, h, h, c]) as tf.Tensor4D;
  const attrs = { strides: 1, pad: "same", dataFormat: "NHWC" } as const;
  const run = async (f: () => tf.Tensor) => {
    const out = f();
    await out.data();
    out.dispose();
  };
  // A step on llvmpipe takes seconds: few runs, each a whole kernel and its read-back.
  const opts = { n: 3, warmup: 1 };
  const filter = `webgpu Conv2DBackpropFilter 3x3 [8,32,32,128]→128`;
  Deno.bench(
    "TF.js's kernel",
    { group: filter, baseline: true, ...opts },
    () =>
      run(() =>
        tf.engine().runKernel("Conv2DBackpropFilter", { x, dy }, {
          ...attrs,
          filterShape: [3, 3, c, c],
        }) as tf.Tensor
      ),
  );
  Deno.bench(
    "forward-op (lib/wasm_kernels.ts)",
    { group: filter, ...opts },
    () => run(() => conv2dFilterGradientByConv(x, dy, { ...attrs, filterShape: [3, 3, c, c] })),
  );
  const input = `webgpu Conv2DBackpropInput 3x3 [8,32,32,128]→128`;
  Deno.bench(
    "TF.js's kernel",
    { group: input, baseline: true, ...opts },
    () =>
      run(() =>
        tf.engine().runKernel("Conv2DBackpropInput", { dy, filter: w }, {
          ...attrs,
          inputShape: [b, h, h, c],
        }) as tf.Tensor
      ),
  );
  Deno.bench(
    "forward-op (lib/wasm_kernels.ts)",
    { group: input, ...opts },
    () => run(() => conv2dInputGradient(dy, w, [b, h, h, c], attrs)),
  );
} else {
  console.log("webgpu_bench: no WebGPU adapter here, nothing measured");
}
