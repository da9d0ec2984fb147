// Runs one of tasks/*.ts as a user would (a subprocess of the same deno, from the repository root, NO_COLOR)
// and returns its exit code and output: the one helper the task-level tests share.
const root = new URL("..", import.meta.url).pathname;

export interface TaskOutput {
  code: number;
  stdout: string;
  stderr: string;
  /** stdout, then stderr. */
  text: string;
}

/** `deno run --allow-all tasks/<script> ...args` with `env` added to this process's environment. */
export async function runTaskScript(
  script: string,
  args: string[],
  env: Record<string, string> = {},
): Promise<TaskOutput> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", `${root}tasks/${script}`, ...args],
    cwd: root,
    env: { NO_COLOR: "1", ...env },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  const stdout = dec.decode(out.stdout), stderr = dec.decode(out.stderr);
  return { code: out.code, stdout, stderr, text: stdout + stderr };
}
