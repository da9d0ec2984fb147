// `deno task test`'s set-up (lib/test_setup.ts, tasks/test.ts): the decision from what was found, and the
// kernel registration for real in an empty user data dir.
import { assert, assertEquals, assertMatch, assertStringIncludes } from "@std/assert";
import {
  aptPackageUnknown,
  nbconvertInstallCommand,
  type OsRelease,
  parseOsRelease,
  planSetup,
  type SetupFacts,
} from "../lib/test_setup.ts";

const DENO = "/opt/deno-2.9.6/deno";
const DEBIAN: OsRelease = { id: "debian", idLike: [] };
const UBUNTU: OsRelease = { id: "ubuntu", idLike: ["debian"] };
const MINT: OsRelease = { id: "linuxmint", idLike: ["ubuntu", "debian"] };
const FEDORA: OsRelease = { id: "fedora", idLike: [] };
const ARCH: OsRelease = { id: "arch", idLike: [] };
const ALPINE: OsRelease = { id: "alpine", idLike: [] };
const SPEC = "/home/u/.local/share/jupyter/kernels/deno/kernel.json";

/** A machine with everything in place; each case changes what it is about. */
function facts(over: Partial<SetupFacts> = {}): SetupFacts {
  return {
    deno: DENO,
    kernel: { kind: "found", specFile: SPEC, argv0: DENO },
    nbconvert: true,
    os: "linux",
    osRelease: DEBIAN,
    isRoot: false,
    hasAptGet: true,
    ...over,
  };
}

Deno.test("planSetup: nothing to do when nbconvert is there and the kernel starts this Deno", () => {
  assertEquals(planSetup(facts()), { steps: [], stop: null });
});

Deno.test("planSetup: registers the kernel when Jupyter has none, without --force", () => {
  const plan = planSetup(facts({ kernel: { kind: "absent", searched: ["/x"] } }));
  assertEquals(plan.stop, null);
  assertEquals(plan.steps.map((s) => s.kind === "register-kernel" && s.force), [false]);
});

Deno.test("planSetup: re-registers (--force) a kernel that starts another Deno, a missing one, or none", () => {
  for (const argv0 of ["/usr/bin/deno", "/gone/deno", null]) {
    const plan = planSetup(facts({ kernel: { kind: "found", specFile: SPEC, argv0 } }));
    assertEquals(plan.steps.length, 1);
    const step = plan.steps[0];
    assert(step.kind === "register-kernel" && step.force, `argv0 ${argv0}`);
    assertStringIncludes(step.why, SPEC);
    assertStringIncludes(step.why, DENO);
  }
});

Deno.test("planSetup: installs nbconvert with apt-get only as root on Debian-likes with apt-get", () => {
  for (const osRelease of [DEBIAN, UBUNTU, MINT]) {
    const plan = planSetup(facts({ nbconvert: false, isRoot: true, osRelease }));
    assertEquals(plan, { steps: [{ kind: "install-nbconvert-apt" }], stop: null }, osRelease.id);
  }
  const both = planSetup(facts({ nbconvert: false, isRoot: true, kernel: { kind: "absent", searched: [] } }));
  assertEquals(both.steps.map((s) => s.kind), ["register-kernel", "install-nbconvert-apt"]);
});

Deno.test("planSetup: stops, with the exact command, where installing would need a question or another tool", () => {
  const cases: [Partial<SetupFacts>, string][] = [
    [
      { isRoot: false },
      "sudo apt-get update && sudo apt-get install -y --no-install-recommends jupyter-nbconvert",
    ],
    [{ isRoot: true, hasAptGet: false }, "apt-get update && apt-get install -y --no-install-recommends"],
    [{ osRelease: FEDORA }, "sudo dnf install -y python3-nbconvert"],
    [{ osRelease: ARCH, isRoot: true }, "pacman -S --noconfirm jupyter-nbconvert"],
    [{ osRelease: ALPINE, isRoot: true }, "python3 -m pip install --user nbconvert"],
    [{ os: "darwin", osRelease: null }, "python3 -m pip install --user nbconvert"],
  ];
  for (const [over, command] of cases) {
    const plan = planSetup(facts({ nbconvert: false, ...over }));
    assert(plan.stop !== null, JSON.stringify(over));
    assertStringIncludes(plan.stop, `\n  ${command}`);
    assertStringIncludes(plan.stop, "No test was run.");
    assert(!plan.steps.some((s) => s.kind === "install-nbconvert-apt"), JSON.stringify(over));
  }
  // The kernel is still registered where the runner cannot be installed: it needs no question.
  const plan = planSetup(facts({ nbconvert: false, kernel: { kind: "absent", searched: [] } }));
  assertEquals(plan.steps.map((s) => s.kind), ["register-kernel"]);
  assert(plan.stop);
});

Deno.test("nbconvertInstallCommand: root gets no sudo", () => {
  assertEquals(
    nbconvertInstallCommand({ os: "linux", osRelease: UBUNTU, isRoot: true }),
    "apt-get update && apt-get install -y --no-install-recommends jupyter-nbconvert",
  );
  assertEquals(
    nbconvertInstallCommand({ os: "linux", osRelease: FEDORA, isRoot: true }),
    "dnf install -y python3-nbconvert",
  );
});

Deno.test("parseOsRelease: ID and ID_LIKE, quoted or not", () => {
  assertEquals(
    parseOsRelease('PRETTY_NAME="Ubuntu 24.04 LTS"\nID=ubuntu\nID_LIKE=debian\nVERSION_ID="24.04"\n'),
    { id: "ubuntu", idLike: ["debian"] },
  );
  assertEquals(parseOsRelease('ID="rocky"\nID_LIKE="rhel centos fedora"\n'), {
    id: "rocky",
    idLike: ["rhel", "centos", "fedora"],
  });
  assertEquals(parseOsRelease("NAME=x\n"), { id: "", idLike: [] });
});

Deno.test("aptPackageUnknown: apt-get's messages for a package its lists do not have", () => {
  assert(aptPackageUnknown("E: Unable to locate package jupyter-nbconvert"));
  assert(aptPackageUnknown("E: Package 'jupyter-nbconvert' has no installation candidate"));
  assert(!aptPackageUnknown("E: Could not get lock /var/lib/dpkg/lock-frontend"));
});

Deno.test({
  name: "tasks/test.ts --setup-only registers the Deno kernel in an empty user data dir, once",
  // Jupyter must be installed (deno task test installs it, or stops, before any test runs). XDG_DATA_HOME
  // places Jupyter's user data dir on Linux only (macOS uses ~/Library/Jupyter).
  ignore: Deno.build.os !== "linux",
  async fn() {
    const home = await Deno.makeTempDir({ prefix: "ict-setup-" });
    try {
      const env: Record<string, string> = {};
      for (const [k, v] of Object.entries(Deno.env.toObject())) {
        if (!k.startsWith("JUPYTER")) env[k] = v; // only the default, user-level data path
      }
      // A fresh HOME too: Jupyter also searches ~/.local/share/jupyter. Deno keeps its own cache.
      const info = await new Deno.Command(Deno.execPath(), { args: ["info", "--json"], stdout: "piped" })
        .output();
      const denoDir = JSON.parse(new TextDecoder().decode(info.stdout)).denoDir;
      Object.assign(env, { HOME: home, XDG_DATA_HOME: `${home}/data`, DENO_DIR: denoDir, NO_COLOR: "1" });
      const script = new URL("../tasks/test.ts", import.meta.url).pathname;
      const run = async () => {
        const r = await new Deno.Command(Deno.execPath(), {
          args: ["run", "--allow-all", script, "--setup-only"],
          env,
          clearEnv: true,
          stdout: "piped",
          stderr: "piped",
        }).output();
        const dec = new TextDecoder();
        return { code: r.code, out: dec.decode(r.stdout) + dec.decode(r.stderr) };
      };
      const first = await run();
      assertEquals(first.code, 0, first.out);
      assertMatch(first.out, /registering the Deno kernel for Jupyter \(Jupyter has no kernel named deno\)/);
      const spec = JSON.parse(await Deno.readTextFile(`${home}/data/jupyter/kernels/deno/kernel.json`));
      const deno = await Deno.realPath(Deno.execPath());
      assertEquals(await Deno.realPath(spec.argv[0]), deno);
      assertStringIncludes(
        first.out,
        `ready: jupyter nbconvert found; Deno kernel ${home}/data/jupyter/kernels`,
      );
      const second = await run();
      assertEquals(second.code, 0, second.out);
      assert(!second.out.includes("registering"), second.out);

      // A kernel that starts another Deno is replaced.
      spec.argv[0] = "/nonexistent/deno";
      await Deno.writeTextFile(`${home}/data/jupyter/kernels/deno/kernel.json`, JSON.stringify(spec));
      const third = await run();
      assertEquals(third.code, 0, third.out);
      assertMatch(third.out, /starts \/nonexistent\/deno, not this Deno/);
      const again = JSON.parse(await Deno.readTextFile(`${home}/data/jupyter/kernels/deno/kernel.json`));
      assertEquals(await Deno.realPath(again.argv[0]), deno);
    } finally {
      await Deno.remove(home, { recursive: true });
    }
  },
});
