// deno task bench: the data-parallel step's all-reduce of the paper's NCSN++ gradients (56.4M floats) over 2
// MPI ranks on this machine, timed inside the ranks (tasks/allreduce_bench.ts prints the figures); the bench's
// own time includes starting mpirun and 2 Deno processes. Skipped without MPICH.
const mpirun = await new Deno.Command("mpirun", { args: ["--version"], stdout: "null", stderr: "null" })
  .output().then((o) => o.success).catch(() => false);

Deno.bench({
  name: "mpirun -np 2: all-reduce of 56.4M floats (3 timed, after a warm-up)",
  group: "data parallel",
  n: 1,
  warmup: 0,
  ignore: !mpirun,
  fn: async () => {
    const script = new URL("../tasks/allreduce_bench.ts", import.meta.url).pathname;
    const out = await new Deno.Command("mpirun", {
      args: ["-np", "2", Deno.execPath(), "run", "--allow-all", script],
      stdout: "piped",
      stderr: "inherit",
    }).output();
    if (!out.success) throw new Error("the all-reduce benchmark failed");
    console.log(new TextDecoder().decode(out.stdout).trim());
  },
});
