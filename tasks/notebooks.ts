// deno task notebooks [--out DIR]: executes every notebook in notebooks/ in Jupyter (Deno kernel) and writes
// the executed copies, with their plots, to DIR (default runs/notebooks/). The sources stay output-free.
import { parseTaskFlags } from "../lib/cli.ts";
import { checkJupyter, executeNotebook, listNotebooks } from "../lib/notebooks.ts";

const { values } = parseTaskFlags({
  usage: "deno task notebooks [--out DIR]",
  flags: [{ name: "out", value: "DIR", default: "runs/notebooks", help: "where the executed copies go" }],
});
const root = new URL("..", import.meta.url).pathname;
const outDir = values.out!.startsWith("/") ? values.out! : `${root}${values.out}`;
try {
  await checkJupyter();
} catch (e) {
  console.error((e as Error).message);
  Deno.exit(1);
}
await Deno.mkdir(outDir, { recursive: true });
let failed = 0;
for (const path of await listNotebooks(`${root}notebooks`)) {
  try {
    const r = await executeNotebook(path, outDir);
    const missing = r.missingPlots.length ? `, MISSING plots in ${r.missingPlots.join("; ")}` : "";
    console.log(
      `ok    ${r.notebook}  ${r.seconds.toFixed(1)} s, ${r.plotsShown} plots${missing} → ${r.executed}`,
    );
    if (missing) failed++;
  } catch (e) {
    failed++;
    console.error(`FAIL  ${path}\n${(e as Error).message}`);
  }
}
Deno.exit(failed ? 1 : 0);
