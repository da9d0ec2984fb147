// One training process per run directory: RUN/lock holds the owner's PID and host. A second process is refused
// while the owner lives; a lock whose process is gone (a crash, kill -9) is taken over, so it never sticks.
import { writeFileAtomic } from "../io/fs.ts";

export interface RunLock {
  path: string;
  release(): Promise<void>;
}

interface LockInfo {
  pid: number;
  host: string;
  started: string;
}

/** Whether process `pid` exists on this machine (Linux /proc, else `kill -0`). */
export function processAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    Deno.statSync(`/proc/${pid}`);
    return true;
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
    if (Deno.build.os === "linux") return false;
  }
  try {
    return new Deno.Command("kill", { args: ["-0", String(pid)], stdout: "null", stderr: "null" })
      .outputSync()
      .success;
  } catch {
    return true; // cannot tell: assume alive, the message says how to remove the lock
  }
}

async function readLock(path: string): Promise<LockInfo | null> {
  try {
    return JSON.parse(await Deno.readTextFile(path));
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    return { pid: -1, host: "", started: "" }; // torn or foreign: treated as stale
  }
}

/** Take RUN/lock for this process, or throw naming the process that holds it. */
export async function acquireRunLock(runDir: string): Promise<RunLock> {
  const path = `${runDir}/lock`;
  const host = Deno.hostname();
  const mine: LockInfo = { pid: Deno.pid, host, started: new Date().toISOString() };
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      // createNew: of two processes racing for a free directory, exactly one succeeds.
      const f = await Deno.open(path, { write: true, createNew: true });
      await f.write(new TextEncoder().encode(JSON.stringify(mine) + "\n"));
      f.close();
      return { path, release: () => releaseLock(path) };
    } catch (e) {
      if (!(e instanceof Deno.errors.AlreadyExists)) throw e;
    }
    const owner = await readLock(path);
    if (!owner) continue; // released meanwhile
    if (owner.host === host && owner.pid === Deno.pid) {
      throw new Error(`${runDir} is already being trained by this process`);
    }
    if (owner.host && owner.host !== host) {
      throw new Error(
        `${runDir} is locked by process ${owner.pid} on host ${owner.host} (since ${owner.started}): another ` +
          `run trains into it. If that run is gone, delete ${path} and start again`,
      );
    }
    if (processAlive(owner.pid)) {
      throw new Error(
        `${runDir} is being trained by process ${owner.pid} (since ${owner.started}): two runs cannot write one ` +
          `directory. Stop that one first, or choose another --run directory`,
      );
    }
    // The owner is gone (crashed or killed): take the lock over, atomically.
    await writeFileAtomic(path, JSON.stringify(mine) + "\n");
    const now = await readLock(path);
    if (now?.pid === Deno.pid) return { path, release: () => releaseLock(path) };
  }
  throw new Error(`could not take ${path}: another process keeps taking it`);
}

async function releaseLock(path: string): Promise<void> {
  const owner = await readLock(path);
  if (owner?.pid === Deno.pid) await Deno.remove(path).catch(() => {});
}
