// deno task test [deno test's arguments]: sets up what the tests need (the Deno Jupyter kernel, and Jupyter's
// headless runner where that needs no question), then runs `deno test --allow-all tests/` with the arguments.
// When something cannot be set up it stops before any test runs, with the command to run.
// `--setup-only` does the set-up and exits (tests/test_setup_test.ts runs it so).
import {
  APT_ENV,
  aptPackageUnknown,
  capture,
  findSetupFacts,
  NBCONVERT_APT_PACKAGE,
  planSetup,
  type SetupFacts,
  type SetupStep,
} from "../lib/test_setup.ts";

function say(line: string) {
  console.log(`test set-up: ${line}`);
}

function stop(message: string): never {
  console.error(`test set-up: ${message}`);
  Deno.exit(1);
}

async function apt(args: string[]) {
  return await capture("apt-get", args, APT_ENV);
}

async function run(step: SetupStep): Promise<void> {
  if (step.kind === "register-kernel") {
    say(`registering the Deno kernel for Jupyter (${step.why})`);
    const r = await capture(Deno.execPath(), ["jupyter", "--install", ...(step.force ? ["--force"] : [])]);
    if (!r.ok) stop(`\`deno jupyter --install\` failed:\n${r.text.trim()}`);
    return;
  }
  say(`installing ${NBCONVERT_APT_PACKAGE} (jupyter nbconvert) with apt-get`);
  const install = ["install", "-y", "-q", "--no-install-recommends", NBCONVERT_APT_PACKAGE];
  let r = await apt(install);
  if (!r.ok && aptPackageUnknown(r.text)) {
    say("apt-get does not know the package yet: apt-get update, then again");
    const update = await apt(["update", "-q"]);
    if (!update.ok) stop(`apt-get update failed:\n${update.text.trim().slice(-3000)}`);
    r = await apt(install);
  }
  if (!r.ok) {
    stop(`apt-get install ${NBCONVERT_APT_PACKAGE} failed; no test was run:\n${r.text.trim().slice(-3000)}`);
  }
}

function describe(f: SetupFacts): string {
  const kernel = f.kernel.kind === "found" ? f.kernel.specFile : "none";
  return `jupyter nbconvert ${f.nbconvert ? "found" : "missing"}; Deno kernel ${kernel}`;
}

const setupOnly = Deno.args.includes("--setup-only");
const testArgs = Deno.args.filter((a) => a !== "--setup-only");

const plan = planSetup(await findSetupFacts());
for (const step of plan.steps) await run(step);
if (plan.stop) stop(plan.stop);

const facts = await findSetupFacts();
const left = planSetup(facts);
if (left.steps.length || left.stop) {
  const why = left.steps.map((s) =>
    s.kind === "register-kernel" ? s.why : "jupyter nbconvert is still missing"
  );
  stop(`the set-up did not take (${[...why, left.stop].filter((s) => s).join("; ")}); no test was run.`);
}
say(`ready: ${describe(facts)}`);
if (setupOnly) Deno.exit(0);

const child = new Deno.Command(Deno.execPath(), {
  args: ["test", "--allow-all", "tests/", ...testArgs],
  cwd: new URL("..", import.meta.url).pathname, // the kit's root, where deno.json is
  stdin: "inherit",
  stdout: "inherit",
  stderr: "inherit",
}).spawn();
const { code } = await child.status;
Deno.exit(code);
