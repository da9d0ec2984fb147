// Data-parallel training over MPI (lib/distributed/mpi.ts, `mpirun -np N deno run -A tasks/train.ts …`):
// 2 ranks take the steps of one process with the same global batch, a run resumes with another number of
// ranks, and one rank killed ends the job. The MPI runs need MPICH (`.ci/run` installs Debian's `mpich`);
// without it they are skipped and say so.
import { assert, assertEquals, assertMatch, assertNotEquals, assertThrows } from "@std/assert";
import { loadCheckpoint } from "../lib/io/checkpoint.ts";
import {
  communicatorFor,
  launchedByMpi,
  localRankFromEnv,
  localSizeFromEnv,
  rankEnvironment,
} from "../lib/distributed/mpi.ts";
import { assertClose } from "../lib/testing.ts";

const root = new URL("..", import.meta.url).pathname;
const mpirun = await new Deno.Command("mpirun", { args: ["--version"], stdout: "null", stderr: "null" })
  .output().then((o) => o.success).catch(() => false);
const noMpi = !mpirun && "mpirun not found: install MPICH (Debian: apt-get install mpich)";

Deno.test("launcher environment: MPI detected, local rank and size, each rank's GPU and core share", () => {
  assertEquals(launchedByMpi({}), false);
  assertEquals(launchedByMpi({ PMI_RANK: "1", PMI_SIZE: "2" }), true);
  assertEquals(launchedByMpi({ OMPI_COMM_WORLD_SIZE: "2" }), true);
  assertEquals(localRankFromEnv({ MPI_LOCALRANKID: "3" }), 3);
  assertEquals(localRankFromEnv({ SLURM_LOCALID: "1" }), 1);
  assertEquals(localRankFromEnv({}), 0);
  assertEquals(localSizeFromEnv({ MPI_LOCALNRANKS: "4" }), 4);
  const env = { MPI_LOCALNRANKS: "2" };
  assertEquals(rankEnvironment({ size: 2, localRank: 1 }, env, 16), {
    CUDA_VISIBLE_DEVICES: "1",
    ICT_WASM_THREADS: "8",
  });
  assertEquals(rankEnvironment({ size: 2, localRank: 1 }, { ...env, CUDA_VISIBLE_DEVICES: "5" }, 2), {
    ICT_WASM_THREADS: "1",
  }, "the user's own setting wins");
  assertEquals(rankEnvironment({ size: 1, localRank: 0 }, {}, 16), {}, "one process: nothing");
  assertEquals(communicatorFor("none").size, 1);
  assertThrows(() => communicatorFor("nccl"), Error, "--distributed must be mpi, none or auto");
});

/** `tasks/train.ts` with `args`, under `mpirun -np ranks` when ranks > 1 (the deno binary itself). */
async function train(ranks: number, args: string[]) {
  const deno = Deno.execPath();
  const cmd = ["run", "--allow-all", `${root}tasks/train.ts`, ...args];
  const out = await new Deno.Command(ranks > 1 ? "mpirun" : deno, {
    args: ranks > 1 ? ["-np", String(ranks), deno, ...cmd] : cmd,
    cwd: root,
    env: { NO_COLOR: "1", ICT_WASM_THREADS: "1" },
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(300_000),
  }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  assertEquals(out.code, 0, text.slice(-3000));
  return text;
}

async function losses(run: string): Promise<number[]> {
  const text = await Deno.readTextFile(`${run}/metrics.jsonl`);
  return text.trim().split("\n").map((l) => JSON.parse(l).loss);
}

async function finalParams(run: string, step: number) {
  const path = `${run}/checkpoints/step-${String(step).padStart(8, "0")}.safetensors`;
  return (await loadCheckpoint(path, {}, { groups: ["params"] })).groups.params;
}

/** Float32 sums in another order: the all-reduce adds the ranks' partial sums. */
const TOL = { rtol: 1e-5, atol: 1e-6 };

Deno.test({
  name:
    "2 MPI ranks take the steps of one process: toy2d (12 steps) and a small NCSN++ with dropout (3 steps)",
  ignore: !!noMpi,
  fn: async () => {
    const cases = [
      { steps: 12, args: ["--config", "toy2d", "--batch", "16"] },
      {
        steps: 3,
        args: ["--config", "mnist", "--batch", "4", "--model.dropout", "0.3", "--model.num-blocks", "1"],
      },
    ];
    for (const { steps, args } of cases) {
      const common = [...args, "--max-steps", String(steps), "--log-every", "1", "--sample-every", "0"];
      const [one, two] = [await Deno.makeTempDir(), await Deno.makeTempDir()];
      await train(1, [...common, "--run", one]);
      const log = await train(2, [...common, "--run", two]);
      assertMatch(log, /data parallel: 2 ranks/);
      assertEquals((log.match(/^run: /gm) ?? []).length, 1, "rank 0 alone reports");
      await assertClose(await losses(two), await losses(one), { ...TOL, message: `${args[1]}: losses` });
      const [a, b] = [await finalParams(one, steps), await finalParams(two, steps)];
      for (const [name, t] of a) {
        await assertClose(b.get(name)!, t, { ...TOL, message: `${args[1]}: ${name}` });
      }
    }
  },
});

Deno.test({
  name: "a run of 2 ranks resumes with 1 and takes the steps of an uninterrupted run",
  ignore: !!noMpi,
  fn: async () => {
    const common = ["--config", "toy2d", "--batch", "16", "--log-every", "1", "--sample-every", "0"];
    const [whole, split] = [await Deno.makeTempDir(), await Deno.makeTempDir()];
    await train(1, [...common, "--max-steps", "10", "--run", whole]);
    await train(2, [...common, "--max-steps", "5", "--run", split]);
    await train(1, ["--run", split, "--resume", "--max-steps", "10"]);
    await assertClose(await losses(split), await losses(whole), { ...TOL, message: "losses" });
  },
});

/**
 * A long 2-rank toy2d run under mpirun, returned once it has logged step 3. `finish(ms)` waits for the job
 * (killing it after `ms`, so a job that ignores a signal fails instead of hanging) and returns its exit code
 * and everything it printed.
 */
async function startLongJob(run: string) {
  const job = new Deno.Command("mpirun", {
    args: ["-np", "2", Deno.execPath(), "run", "--allow-all", `${root}tasks/train.ts`, "--config", "toy2d"]
      .concat(["--run", run, "--max-steps", "100000", "--log-every", "1", "--sample-every", "0"]),
    cwd: root,
    env: { NO_COLOR: "1", ICT_WASM_THREADS: "1" },
    stdout: "piped", // mpirun reports a dead rank here
    stderr: "piped",
  }).spawn();
  const reader = job.stderr.getReader();
  let seen = "";
  while (!/\] 3\/100000/.test(seen)) seen += new TextDecoder().decode((await reader.read()).value);
  const finish = async (ms: number) => {
    const guard = setTimeout(() => job.kill("SIGKILL"), ms);
    const stdout = new Response(job.stdout).text();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      seen += new TextDecoder().decode(value);
    }
    const status = await job.status;
    clearTimeout(guard);
    return { code: status.code, stdout: await stdout, stderr: seen };
  };
  return { job, finish };
}

Deno.test({
  name: "SIGTERM to mpirun stops every rank after the same step, and rank 0 saves a checkpoint",
  ignore: !!noMpi,
  fn: async () => {
    const run = await Deno.makeTempDir({ prefix: "ict-mpi-term-" });
    const { job, finish } = await startLongJob(run);
    job.kill("SIGTERM");
    const { code, stdout, stderr } = await finish(60_000);
    assertEquals(code, 0, stderr.slice(-2000));
    const step = Number(/stopped at step (\d+)/.exec(stderr)?.[1]);
    assert(step >= 3, stderr.slice(-2000));
    assertMatch(stdout, new RegExp(`step ${step}  checkpoint .*step-${String(step).padStart(8, "0")}`));
    await Deno.stat(`${run}/checkpoints/step-${String(step).padStart(8, "0")}.safetensors`);
  },
});

Deno.test({
  name: "one rank killed with SIGKILL ends the whole job within seconds, never a hang",
  ignore: !!noMpi,
  fn: async () => {
    const run = await Deno.makeTempDir({ prefix: "ict-mpi-kill-" });
    const { finish } = await startLongJob(run);
    // The two ranks are deno processes whose command line names this run directory.
    const ps = await new Deno.Command("pgrep", { args: ["-f", run], stdout: "piped" }).output();
    const pids = new TextDecoder().decode(ps.stdout).trim().split("\n").map(Number).filter((pid) => {
      try {
        return Deno.readTextFileSync(`/proc/${pid}/comm`).trim() === "deno";
      } catch {
        return false;
      }
    });
    assertEquals(pids.length, 2, `the ranks: ${pids}`);
    const killed = performance.now();
    Deno.kill(pids[1], "SIGKILL");
    const { code, stdout, stderr } = await finish(30_000);
    const seconds = (performance.now() - killed) / 1000;
    assert(seconds < 20, `the job ended ${seconds.toFixed(1)} s after the kill`);
    assertNotEquals(code, 0);
    assertMatch(stdout + stderr, /KILLED BY SIGNAL: 9|BAD TERMINATION/, (stdout + stderr).slice(-1500));
  },
});

Deno.test("a rank's shard of a batch is the batch's samples, flips included, and the loader stays in step", async () => {
  const { DataLoader } = await import("../lib/data/dataset.ts");
  const images = {
    name: "ramp",
    sampleShape: [2, 3, 1] as const,
    size: 10,
    labelDim: 0,
    get: (idx: ArrayLike<number>) => ({
      x: Float32Array.from({ length: idx.length * 6 }, (_, i) => idx[Math.floor(i / 6)] * 10 + (i % 6)),
    }),
  };
  const opts = { seed: 4, flip: true };
  const whole = new DataLoader(images, 4, opts);
  const ranks = [new DataLoader(images, 4, opts), new DataLoader(images, 4, opts)];
  for (let step = 0; step < 7; step++) { // crosses epochs
    const all = whole.nextHost();
    const parts = ranks.map((l, r) => l.nextHost({ offset: 2 * r, count: 2 }));
    assertEquals([...parts[0].x, ...parts[1].x], [...all.x], `step ${step}`);
    assertEquals([...parts[0].indices, ...parts[1].indices], [...all.indices]);
  }
  assertEquals(ranks[1].state(), whole.state(), "position and flip RNG are global");
  assert(
    [...whole.nextHost().x].some((v, i) => v % 10 !== i % 6 && (v % 10) >= 0),
    "some samples are flipped (so the check above covers flips)",
  );
});
