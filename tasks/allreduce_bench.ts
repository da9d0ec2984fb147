// Run under MPI: mpirun -np N deno run -A tasks/allreduce_bench.ts [--floats 56395523] [--reps 3]
// Times the data-parallel step's one all-reduce: the gradients of the paper's NCSN++ (56.4M floats, 225.6 MB)
// summed over the ranks, as the trainer does it (one Float32Array, in place). Rank 0 prints JSON.
import { mpiCommunicator } from "../lib/distributed/mpi.ts";
import { parseTaskFlags } from "../lib/cli.ts";

const args = parseTaskFlags({
  usage: "mpirun -np N deno run -A tasks/allreduce_bench.ts [--floats F] [--reps R]",
  flags: [
    { name: "floats", value: "F", default: "56395523", help: "floats per all-reduce (the paper's NCSN++)" },
    { name: "reps", value: "R", default: "3", help: "timed repetitions" },
  ],
});
const floats = args.int("floats", 1)!;
const reps = args.int("reps", 1)!;
const comm = mpiCommunicator();
const buf = new Float32Array(floats).fill(comm.rank + 1);
comm.barrier();
comm.allReduceSum(buf); // warm-up: connections, pinned buffers
const seconds: number[] = [];
for (let r = 0; r < reps; r++) {
  buf.fill(comm.rank + 1);
  comm.barrier();
  const t = performance.now();
  comm.allReduceSum(buf);
  seconds.push((performance.now() - t) / 1000);
}
const expected = (comm.size * (comm.size + 1)) / 2;
if (buf[0] !== expected || buf[floats - 1] !== expected) {
  throw new Error(`wrong sum ${buf[0]}, expected ${expected}`);
}
if (comm.rank === 0) {
  const best = Math.min(...seconds);
  console.log(JSON.stringify({
    ranks: comm.size,
    floats,
    megabytes: (floats * 4) / 1e6,
    seconds,
    best,
    gbPerSecond: (floats * 4) / 1e9 / best,
  }));
}
comm.finalize();
