// A small communicator for data-parallel training: MPI through Deno's FFI, no compiled glue.
//
// Supported: MPICH's ABI (MPICH, Intel MPI, Cray MPICH, MVAPICH), whose handles are integers:
// MPI_COMM_WORLD = 0x44000000, MPI_FLOAT = 0x4c00040a, MPI_SUM = 0x58000003, MPI_IN_PLACE = (void*)−1.
// Open MPI's handles are addresses of global symbols (another ABI): not supported; the error says so.
// The library comes from ICT_MPI_LIB, else the usual sonames. Run `deno` itself under mpirun: through `npx`
// the process manager's descriptor (PMI_FD) does not reach Deno and MPI_Init fails.
// A one-process run never loads MPI: `localCommunicator()` does everything in place.

/** What data-parallel training needs from a communicator. */
export interface Communicator {
  readonly rank: number;
  readonly size: number;
  /** Rank among the processes of this machine (picks the GPU). */
  readonly localRank: number;
  /** What runs it, in words. */
  readonly description: string;
  /** Sum `buf` over all ranks, in place. Every rank must call it with the same length. */
  allReduceSum(buf: Float32Array): void;
  /** Rank `root`'s `buf` to every rank, in place. */
  broadcast(buf: Uint8Array, root?: number): void;
  barrier(): void;
  /** End MPI (once, at exit). */
  finalize(): void;
  /** End the whole job now (every rank), with this exit code. */
  abort(code: number): never;
}

/** One process: nothing to communicate. */
export function localCommunicator(): Communicator {
  return {
    rank: 0,
    size: 1,
    localRank: 0,
    description: "one process",
    allReduceSum() {},
    broadcast() {},
    barrier() {},
    finalize() {},
    abort(code) {
      Deno.exit(code);
    },
  };
}

const MPI_COMM_WORLD = 0x44000000;
const MPI_FLOAT = 0x4c00040a;
const MPI_BYTE = 0x4c00010d;
const MPI_SUM = 0x58000003;
const MPI_THREAD_SERIALIZED = 2;
const MPI_SUCCESS = 0;
/** MPICH's sonames, newest first. */
const SONAMES = ["libmpich.so.12", "libmpi.so.12", "libmpich.so"];
/** Elements per MPI call: counts are C ints. */
const CHUNK = 1 << 28;

const SYMBOLS = {
  MPI_Init_thread: { parameters: ["pointer", "pointer", "i32", "buffer"], result: "i32" },
  MPI_Initialized: { parameters: ["buffer"], result: "i32" },
  MPI_Comm_rank: { parameters: ["i32", "buffer"], result: "i32" },
  MPI_Comm_size: { parameters: ["i32", "buffer"], result: "i32" },
  MPI_Allreduce: { parameters: ["pointer", "buffer", "i32", "i32", "i32", "i32"], result: "i32" },
  MPI_Bcast: { parameters: ["buffer", "i32", "i32", "i32", "i32"], result: "i32" },
  MPI_Barrier: { parameters: ["i32"], result: "i32" },
  MPI_Finalize: { parameters: [], result: "i32" },
  MPI_Abort: { parameters: ["i32", "i32"], result: "i32" },
  MPI_Get_library_version: { parameters: ["buffer", "buffer"], result: "i32" },
} as const;

/** Whether this process was started by an MPI launcher (mpirun/mpiexec, srun --mpi=pmi2). */
export function launchedByMpi(env = Deno.env.toObject()): boolean {
  return ["PMI_RANK", "PMI_SIZE", "PMIX_RANK", "OMPI_COMM_WORLD_SIZE", "MPI_LOCALNRANKS"].some((k) =>
    k in env
  ) ||
    ("PMI_FD" in env);
}

/** This machine's rank from the launcher's environment (MPICH hydra, Open MPI, Slurm), else 0. */
export function localRankFromEnv(env = Deno.env.toObject()): number {
  for (const k of ["MPI_LOCALRANKID", "OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID", "PMI_LOCAL_RANK"]) {
    if (k in env && Number.isInteger(Number(env[k]))) return Number(env[k]);
  }
  return 0;
}

function openLibrary() {
  const explicit = Deno.env.get("ICT_MPI_LIB");
  const tried: string[] = [];
  for (const name of explicit ? [explicit] : SONAMES) {
    try {
      return { lib: Deno.dlopen(name, SYMBOLS), name };
    } catch (e) {
      tried.push(`${name}: ${(e as Error).message.split("\n")[0]}`);
    }
  }
  throw new Error(
    `MPI was asked for but no MPICH-ABI library could be loaded (${tried.join("; ")}). Install MPICH ` +
      `(Debian/Ubuntu: sudo apt-get install mpich) or point ICT_MPI_LIB at libmpich.so.12 (Intel MPI: ` +
      `libmpi.so.12). Open MPI's ABI is not supported.`,
  );
}

/** MPI_COMM_WORLD through MPICH's ABI. Initializes MPI (once per process). */
export function mpiCommunicator(): Communicator {
  const { lib, name } = openLibrary();
  const s = lib.symbols;
  const check = (what: string, rc: number) => {
    if (rc !== MPI_SUCCESS) throw new Error(`${what} failed with MPI error ${rc}`);
  };
  const version = new Uint8Array(8192);
  const len = new Int32Array(1);
  s.MPI_Get_library_version(version, new Uint8Array(len.buffer));
  const versionText = new TextDecoder().decode(version.subarray(0, len[0])).split("\n")[0].trim();
  if (/open mpi/i.test(versionText)) {
    throw new Error(`${name} is Open MPI (${versionText}), whose ABI the kit does not support: use MPICH`);
  }
  const flag = new Int32Array(1);
  s.MPI_Initialized(new Uint8Array(flag.buffer));
  if (!flag[0]) {
    const provided = new Int32Array(1);
    const rc = s.MPI_Init_thread(null, null, MPI_THREAD_SERIALIZED, new Uint8Array(provided.buffer));
    if (rc !== MPI_SUCCESS) {
      throw new Error(
        `MPI_Init failed (error ${rc}). Start deno itself under mpirun (not through npx, which drops the ` +
          `process manager's PMI_FD): mpirun -np N deno run -A tasks/train.ts …`,
      );
    }
  }
  const out = new Int32Array(1);
  check("MPI_Comm_rank", s.MPI_Comm_rank(MPI_COMM_WORLD, new Uint8Array(out.buffer)));
  const rank = out[0];
  check("MPI_Comm_size", s.MPI_Comm_size(MPI_COMM_WORLD, new Uint8Array(out.buffer)));
  const size = out[0];
  const inPlace = Deno.UnsafePointer.create(-1n); // MPICH's MPI_IN_PLACE
  let finalized = false;
  return {
    rank,
    size,
    localRank: localRankFromEnv(),
    description: `MPI rank ${rank} of ${size} (${(versionText || name).replace(/\s+/g, " ")})`,
    allReduceSum(buf) {
      for (let off = 0; off < buf.length; off += CHUNK) {
        const part = buf.subarray(off, Math.min(buf.length, off + CHUNK));
        const bytes = new Uint8Array(part.buffer, part.byteOffset, part.byteLength);
        check(
          "MPI_Allreduce",
          s.MPI_Allreduce(inPlace, bytes, part.length, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD),
        );
      }
    },
    broadcast(buf, root = 0) {
      for (let off = 0; off < buf.length; off += CHUNK) {
        const part = buf.subarray(off, Math.min(buf.length, off + CHUNK));
        check("MPI_Bcast", s.MPI_Bcast(part, part.length, MPI_BYTE, root, MPI_COMM_WORLD));
      }
    },
    barrier() {
      check("MPI_Barrier", s.MPI_Barrier(MPI_COMM_WORLD));
    },
    finalize() {
      if (finalized) return;
      finalized = true;
      s.MPI_Finalize();
    },
    abort(code) {
      s.MPI_Abort(MPI_COMM_WORLD, code);
      Deno.exit(code);
    },
  };
}

/** `--distributed mpi|none|auto`: MPI when asked, or (auto) when an MPI launcher started this process. */
export function communicatorFor(mode: string = "auto"): Communicator {
  if (mode === "none") return localCommunicator();
  if (mode === "mpi" || (mode === "auto" && launchedByMpi())) return mpiCommunicator();
  if (mode !== "auto") throw new Error(`--distributed must be mpi, none or auto, got "${mode}"`);
  return localCommunicator();
}

/** Processes on this machine, from the launcher's environment, else 1. */
export function localSizeFromEnv(env = Deno.env.toObject()): number {
  for (const k of ["MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE", "SLURM_NTASKS_PER_NODE"]) {
    if (k in env && Number(env[k]) >= 1) return Math.floor(Number(env[k]));
  }
  return 1;
}

/**
 * Environment each rank of a multi-process job sets before its backend starts, unless the user set it: its own
 * GPU for tensorflow (CUDA_VISIBLE_DEVICES = local rank), and its share of the cores for wasm.
 */
export function rankEnvironment(
  comm: Pick<Communicator, "size" | "localRank">,
  env: Record<string, string>,
  cores: number,
): Record<string, string> {
  if (comm.size === 1) return {};
  const out: Record<string, string> = {};
  if (!("CUDA_VISIBLE_DEVICES" in env)) out.CUDA_VISIBLE_DEVICES = String(comm.localRank);
  if (!("ICT_WASM_THREADS" in env)) {
    out.ICT_WASM_THREADS = String(Math.max(1, Math.floor(cores / localSizeFromEnv(env))));
  }
  return out;
}
