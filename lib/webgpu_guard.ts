// TF.js 4.22's webgpu backend asks for the adapter's largest limits, then never checks a tensor against them
// and listens for no GPU errors. An op whose tensor is over the binding limit is dropped by wgpu with a
// validation error that nobody sees: on llvmpipe (128 MiB) `tf.add` of a 144 MB tensor returned zeros, and a
// pooled buffer later returned stale values. Garbage is not NaN, so no NaN guard fires either. This turns
// both into exceptions: sizes are checked before a tensor gets a GPU buffer (before any dispatch), and every
// GPU error is thrown at the next read (`await t.data()`, the kit's sync points) with wgpu's own message.

/** The parts of tfjs-backend-webgpu's WebGPUBackend that the guard wraps. */
export interface WebgpuBackendLike {
  device: GPUDevice;
  tensorMap: { get(dataId: object): { shape: number[]; dtype: string; resource?: unknown } };
  uploadToGPU(dataId: object): void;
  read(dataId: object): Promise<unknown>;
  readSync(dataId: object): unknown;
}

export interface BufferLimits {
  maxStorageBufferBindingSize: number;
  maxBufferSize: number;
}

/** Exact bytes (a tensor one element over the limit must not read "128 MiB, over 128 MiB"), then MiB. */
const bytesText = (n: number) => `${n.toLocaleString("en-US")} bytes (${+(n / 2 ** 20).toFixed(1)} MiB)`;

/**
 * Pure: refuse a tensor that cannot be bound whole (TF.js binds every input and output whole). The error
 * names the tensor, the limit and what to do.
 */
export function checkTensorFits(shape: number[], dtype: string, limits: BufferLimits): void {
  const bytes = 4 * shape.reduce((a, b) => a * b, 1); // webgpu stores float32, int32 and bool in 4 bytes
  const [limit, name] = bytes > limits.maxBufferSize
    ? [limits.maxBufferSize, "maxBufferSize"]
    : [limits.maxStorageBufferBindingSize, "maxStorageBufferBindingSize"];
  if (bytes <= limit) return;
  throw new Error(
    `webgpu: a ${dtype} tensor of shape [${shape}] is ${bytesText(bytes)}, over this device's ${name} of ` +
      `${bytesText(limit)}; the op would silently compute garbage. ` +
      `Use a smaller (micro-)batch, or the tensorflow backend`,
  );
}

const guarded = new WeakSet<object>();

/** Install the size check and the error listener on a webgpu backend instance (idempotent). */
export function guardWebgpuBackend(backend: WebgpuBackendLike): void {
  if (guarded.has(backend)) return;
  guarded.add(backend);
  const device = backend.device;
  const errors: string[] = [];
  device.addEventListener(
    "uncapturederror",
    (e) => errors.push((e as GPUUncapturedErrorEvent).error.message),
  );
  device.lost.then((info) => {
    if (info.reason !== "destroyed") errors.push(`device lost: ${info.message}`);
  });
  const throwPending = () => {
    if (errors.length === 0) return;
    const more = errors.length > 1 ? ` (and ${errors.length - 1} more)` : "";
    const first = errors[0];
    errors.length = 0;
    throw new Error(`webgpu reported an error, so results since the last read are garbage: ${first}${more}`);
  };

  const upload = backend.uploadToGPU.bind(backend);
  backend.uploadToGPU = (dataId) => {
    const data = backend.tensorMap.get(dataId);
    if (data.resource == null) checkTensorFits(data.shape, data.dtype, device.limits);
    upload(dataId);
  };
  const read = backend.read.bind(backend);
  backend.read = async (dataId) => {
    const values = await read(dataId); // the copy has been mapped: the GPU has run everything before it
    throwPending();
    return values;
  };
  const readSync = backend.readSync.bind(backend);
  backend.readSync = (dataId) => {
    const values = readSync(dataId);
    throwPending();
    return values;
  };
}
