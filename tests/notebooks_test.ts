// Executes every notebook in notebooks/ in real Jupyter with the Deno kernel; fails on any cell error
// and on any showPlot(…) cell that produced no plot. Without Jupyter it fails and says how to install it.
import { assert, assertEquals } from "@std/assert";
import { checkJupyter, executeNotebook, listNotebooks } from "../lib/notebooks.ts";

const dir = new URL("../notebooks", import.meta.url).pathname;
const notebooks = await listNotebooks(dir);

Deno.test("notebooks/ holds the kit's notebooks", () => {
  assert(notebooks.length >= 1, `no notebooks found in ${dir}`);
});

for (const path of notebooks) {
  Deno.test(`notebook ${path.split("/").pop()} runs in Jupyter and shows its plots`, async () => {
    await checkJupyter();
    const outDir = await Deno.makeTempDir({ prefix: "ict-notebooks-" });
    try {
      const r = await executeNotebook(path, outDir);
      assertEquals(r.missingPlots, [], `cells that should have shown a plot but did not`);
      // Plots come from showPlot(…) cells or from library functions that show them (showRun in 04).
      assert(
        r.plotsShown >= 1 && r.plotsShown >= r.plotCells,
        `${r.plotsShown} plots for ${r.plotCells} showPlot cells`,
      );
      console.log(`${r.notebook}: ${r.plotsShown} plots, ${r.seconds.toFixed(1)} s`);
    } finally {
      await Deno.remove(outDir, { recursive: true });
    }
  });
}
