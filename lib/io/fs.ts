// Files the kit writes and checks: atomic writes (temp file in the same folder, fsync, rename: a failed or
// killed write leaves the old file as it was) and small stat helpers. Every writer of the kit goes through here.
import { createHash } from "node:crypto";
import { concat } from "../arrays.ts";

/** Size in bytes of a file, or −1 if there is none. */
export function fileSize(path: string): number {
  try {
    return Deno.statSync(path).size;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return -1;
    throw e;
  }
}

/** A whole file; a missing one throws `missing()` instead of Deno's NotFound. */
export async function readFileOr(path: string, missing: () => Error): Promise<Uint8Array> {
  try {
    return await Deno.readFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw missing();
    throw e;
  }
}

/** Write all of `bytes` (FsFile.write may write less). */
export async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  for (let done = 0; done < bytes.length;) done += await file.write(bytes.subarray(done));
}

/**
 * A test hook called inside every atomic write, after the data and before the rename: it may throw (an
 * injected ENOSPC or EIO) or wait. Tests set it with `setWriteHook`; ICT_TEST_WRITE_DELAY_MS makes every
 * write of a checkpoint (*.safetensors) that much longer, so subprocess tests can signal or kill mid-write.
 */
type WriteHook = (path: string) => void | Promise<void>;
let writeHook: WriteHook | undefined;

/** Install (or with undefined, remove) the write hook. Tests only. */
export function setWriteHook(hook: WriteHook | undefined): void {
  writeHook = hook;
}

/** An error like the one the OS gives for `code` (ENOSPC: disk full, EIO: I/O error), for injected faults. */
export function osError(code: "ENOSPC" | "EIO", path: string): Error {
  const text = code === "ENOSPC"
    ? "No space left on device (os error 28)"
    : "Input/output error (os error 5)";
  return Object.assign(new Error(`${text}: write ${path}`), { code });
}

async function beforeRename(path: string): Promise<void> {
  const delay = Number(Deno.env.get("ICT_TEST_WRITE_DELAY_MS") ?? 0);
  if (delay > 0 && path.endsWith(".safetensors")) {
    if (Deno.env.get("ICT_TRACE_PHASES") === "1") console.error(`phase: checkpoint-write ${path}`);
    await new Promise((r) => setTimeout(r, delay));
  }
  await writeHook?.(path);
}

/**
 * Create `path` atomically: `write` fills a temp file in the same folder, which is synced and renamed over
 * `path`. On any error the temp file is removed and `path` is left as it was.
 */
export async function writeAtomic(path: string, write: (file: Deno.FsFile) => Promise<void>): Promise<void> {
  const tmp = `${path}.tmp-${Deno.pid}-${Date.now()}-${Math.random().toString(36).slice(2, 8)}`;
  const file = await Deno.open(tmp, { write: true, createNew: true });
  try {
    await write(file);
    await beforeRename(path);
    await file.sync();
    file.close();
    await Deno.rename(tmp, path);
  } catch (e) {
    try {
      file.close();
    } catch { /* already closed */ }
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
}

/** Bytes or text to `path`, atomically. */
export function writeFileAtomic(path: string, content: Uint8Array | string): Promise<void> {
  const bytes = typeof content === "string" ? new TextEncoder().encode(content) : content;
  return writeAtomic(path, (file) => writeAll(file, bytes));
}

/** A whole download in memory with its digest (md5, sha256 …), reporting bytes as they arrive. */
export async function downloadWithHash(
  url: string,
  algorithm: "md5" | "sha256",
  onProgress?: (received: number, total?: number) => void,
): Promise<{ bytes: Uint8Array; digest: string }> {
  let res: Response;
  try {
    res = await fetch(url);
  } catch (e) {
    throw new Error(`could not download ${url}: ${(e as Error).message}`);
  }
  if (!res.ok || !res.body) {
    await res.body?.cancel();
    throw new Error(`download of ${url} failed: HTTP ${res.status} ${res.statusText}`);
  }
  const total = Number(res.headers.get("content-length")) || undefined;
  const hash = createHash(algorithm);
  const chunks: Uint8Array[] = [];
  let received = 0;
  for await (const chunk of res.body) {
    hash.update(chunk);
    chunks.push(chunk);
    received += chunk.length;
    onProgress?.(received, total);
  }
  return { bytes: concat(chunks, Uint8Array), digest: hash.digest("hex") };
}
