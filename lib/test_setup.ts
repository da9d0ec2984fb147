// What `deno task test` sets up before the tests: Jupyter's headless runner (`jupyter nbconvert`) and the Deno
// kernel, which the notebook tests need. planSetup decides from what was found (pure, tested in
// tests/test_setup_test.ts); findSetupFacts finds it; tasks/test.ts acts on the plan and then runs the tests.

/** The package that holds `jupyter nbconvert` on Debian and Ubuntu (35 packages, ~17 MB with its deps). */
export const NBCONVERT_APT_PACKAGE = "jupyter-nbconvert";
export const APT_ENV = { DEBIAN_FRONTEND: "noninteractive" };

export interface OsRelease {
  id: string;
  idLike: string[];
}

/** The Deno kernel Jupyter would use: the first `kernels/deno/kernel.json` in its data path, or none. */
export type KernelFound =
  | { kind: "absent"; searched: string[] }
  | { kind: "found"; specFile: string; argv0: string | null };

export interface SetupFacts {
  /** This Deno's executable, symlinks resolved. */
  deno: string;
  /** The kernel's argv[0] is compared with `deno` after resolving symlinks (done by findSetupFacts). */
  kernel: KernelFound;
  nbconvert: boolean;
  /** Deno.build.os */
  os: string;
  /** /etc/os-release, where there is one. */
  osRelease: OsRelease | null;
  isRoot: boolean;
  hasAptGet: boolean;
}

export type SetupStep =
  | { kind: "register-kernel"; force: boolean; why: string }
  | { kind: "install-nbconvert-apt" };

export interface SetupPlan {
  steps: SetupStep[];
  /** Set when the tests must not start: what is missing and the exact command that installs it. */
  stop: string | null;
}

/** Parses /etc/os-release (KEY=value lines, values optionally quoted). */
export function parseOsRelease(text: string): OsRelease {
  const vars: Record<string, string> = {};
  for (const line of text.split("\n")) {
    const m = line.match(/^([A-Z_]+)=(.*)$/);
    if (m) vars[m[1]] = m[2].trim().replace(/^(["'])(.*)\1$/, "$2");
  }
  return {
    id: (vars.ID ?? "").toLowerCase(),
    idLike: (vars.ID_LIKE ?? "").toLowerCase().split(/\s+/).filter((s) => s),
  };
}

function isLike(os: OsRelease | null, ...names: string[]): boolean {
  return !!os && [os.id, ...os.idLike].some((n) => names.includes(n));
}

export function isDebianLike(os: OsRelease | null): boolean {
  return isLike(os, "debian", "ubuntu");
}

/** The command that installs `jupyter nbconvert` on this system, for a user to run. */
export function nbconvertInstallCommand(f: Pick<SetupFacts, "os" | "osRelease" | "isRoot">): string {
  const sudo = f.isRoot ? "" : "sudo ";
  if (f.os === "linux" && isDebianLike(f.osRelease)) {
    return `${sudo}apt-get update && ${sudo}apt-get install -y --no-install-recommends ${NBCONVERT_APT_PACKAGE}`;
  }
  if (f.os === "linux" && isLike(f.osRelease, "fedora", "rhel", "centos")) {
    return `${sudo}dnf install -y python3-nbconvert`;
  }
  if (f.os === "linux" && isLike(f.osRelease, "arch")) {
    return `${sudo}pacman -S --noconfirm jupyter-nbconvert`;
  }
  return "python3 -m pip install --user nbconvert";
}

/**
 * What to do before the tests. The kernel is registered (user-level) when Jupyter has none named "deno" or
 * its kernel starts another Deno binary; `jupyter nbconvert` is installed when missing and that needs no
 * question (root on Debian/Ubuntu with apt-get); otherwise `stop` says what to run and no test starts.
 */
export function planSetup(f: SetupFacts): SetupPlan {
  const steps: SetupStep[] = [];
  if (f.kernel.kind === "absent") {
    steps.push({ kind: "register-kernel", force: false, why: "Jupyter has no kernel named deno" });
  } else if (f.kernel.argv0 !== f.deno) {
    steps.push({
      kind: "register-kernel",
      force: true,
      why: `${f.kernel.specFile} starts ${f.kernel.argv0 ?? "no program"}, not this Deno (${f.deno})`,
    });
  }
  let stop: string | null = null;
  if (!f.nbconvert) {
    if (f.os === "linux" && isDebianLike(f.osRelease) && f.isRoot && f.hasAptGet) {
      steps.push({ kind: "install-nbconvert-apt" });
    } else {
      stop =
        "Jupyter's headless runner (`jupyter nbconvert`) is missing: the notebook tests run every notebook " +
        `in it. Install it with\n\n  ${
          nbconvertInstallCommand(f)
        }\n\nthen run the tests again. No test was run.`;
    }
  }
  return { steps, stop };
}

/** True when apt-get's output says the package is unknown to it, which an `apt-get update` can fix. */
export function aptPackageUnknown(output: string): boolean {
  return /Unable to locate package|has no installation candidate|is not available, but is referred to/.test(
    output,
  );
}

// ---- finding the facts (I/O) ----

export interface CommandResult {
  ok: boolean;
  code: number;
  text: string;
}

/** Runs a command, capturing stdout and stderr together; a missing program is `ok: false`, never a throw. */
export async function capture(
  cmd: string,
  args: string[],
  env?: Record<string, string>,
): Promise<CommandResult> {
  try {
    const r = await new Deno.Command(cmd, { args, env, stdout: "piped", stderr: "piped", stdin: "null" })
      .output();
    const dec = new TextDecoder();
    return { ok: r.success, code: r.code, text: dec.decode(r.stdout) + dec.decode(r.stderr) };
  } catch (e) {
    return { ok: false, code: -1, text: (e as Error).message };
  }
}

async function realPathOr(path: string): Promise<string> {
  try {
    return await Deno.realPath(path);
  } catch {
    return path;
  }
}

/** Where `deno jupyter --install` writes (Jupyter's user data dir), for when Jupyter itself is not installed. */
export function userJupyterDataDir(): string {
  const env = (k: string) => Deno.env.get(k);
  if (Deno.build.os === "windows") return `${env("APPDATA")}\\jupyter`;
  if (Deno.build.os === "darwin") return `${env("HOME")}/Library/Jupyter`;
  return `${env("XDG_DATA_HOME") || `${env("HOME")}/.local/share`}/jupyter`;
}

async function onPath(program: string): Promise<boolean> {
  for (const dir of (Deno.env.get("PATH") ?? "").split(Deno.build.os === "windows" ? ";" : ":")) {
    if (!dir) continue;
    try {
      if ((await Deno.stat(`${dir}/${program}`)).isFile) return true;
    } catch { /* not here */ }
  }
  return false;
}

/** Finds what planSetup decides from: Jupyter, its data path and kernel, this Deno, the OS, root or not. */
export async function findSetupFacts(): Promise<SetupFacts> {
  const nbconvert = (await capture("jupyter", ["nbconvert", "--version"])).ok;
  const paths = await capture("jupyter", ["--paths", "--json"]);
  let dataDirs = [userJupyterDataDir()];
  if (paths.ok) dataDirs = JSON.parse(paths.text.slice(paths.text.indexOf("{"))).data;
  let kernel: KernelFound = { kind: "absent", searched: dataDirs };
  for (const dir of dataDirs) {
    const specFile = `${dir}/kernels/deno/kernel.json`;
    let text: string;
    try {
      text = await Deno.readTextFile(specFile);
    } catch {
      continue;
    }
    let argv0: string | null = null;
    try {
      const argv = JSON.parse(text).argv;
      if (Array.isArray(argv) && typeof argv[0] === "string") argv0 = await realPathOr(argv[0]);
    } catch { /* unreadable spec: argv0 stays null, and it is re-registered */ }
    kernel = { kind: "found", specFile, argv0 };
    break;
  }
  let osRelease: OsRelease | null = null;
  try {
    osRelease = parseOsRelease(await Deno.readTextFile("/etc/os-release"));
  } catch { /* not Linux, or no os-release */ }
  return {
    deno: await realPathOr(Deno.execPath()),
    kernel,
    nbconvert,
    os: Deno.build.os,
    osRelease,
    isRoot: Deno.uid?.() === 0,
    hasAptGet: await onPath("apt-get"),
  };
}
