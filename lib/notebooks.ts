// Executes the kit's notebooks headlessly in real Jupyter with the Deno kernel, and checks their plots.
import { PLOTLY_MIME } from "./plot.ts";

export const JUPYTER_INSTALL_HELP = "Install Jupyter and register the Deno kernel:\n" +
  "  sudo apt-get install -y --no-install-recommends jupyter-nbconvert   # Debian/Ubuntu\n" +
  "  deno jupyter --install\n" +
  "(`deno task test` does both itself where it can: the kernel always, Jupyter as root on Debian/Ubuntu.)";

async function output(cmd: string, args: string[]): Promise<{ ok: boolean; text: string }> {
  try {
    const r = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
    const dec = new TextDecoder();
    return { ok: r.success, text: dec.decode(r.stdout) + dec.decode(r.stderr) };
  } catch (e) {
    return { ok: false, text: (e as Error).message };
  }
}

/** Throws with install instructions unless `jupyter nbconvert` and a kernel named "deno" are available. */
export async function checkJupyter(): Promise<void> {
  const nbconvert = await output("jupyter", ["nbconvert", "--version"]);
  if (!nbconvert.ok) {
    throw new Error(
      `jupyter nbconvert is not available (${nbconvert.text.trim()}).\n${JUPYTER_INSTALL_HELP}`,
    );
  }
  const paths = await output("jupyter", ["--paths", "--json"]);
  const dataDirs: string[] = paths.ok ? JSON.parse(paths.text.slice(paths.text.indexOf("{"))).data : [];
  for (const dir of dataDirs) {
    try {
      await Deno.stat(`${dir}/kernels/deno/kernel.json`);
      return;
    } catch { /* try the next data dir */ }
  }
  throw new Error(
    `Jupyter has no "deno" kernel (looked in ${dataDirs.join(", ")}).\n${JUPYTER_INSTALL_HELP}`,
  );
}

interface NotebookCell {
  cell_type: string;
  source: string | string[];
  outputs?: { output_type: string; data?: Record<string, unknown>; ename?: string; evalue?: string }[];
}

export interface NotebookResult {
  notebook: string;
  executed: string;
  seconds: number;
  /** Code cells that call showPlot(…) — each must have produced a plotly output. */
  plotCells: number;
  plotsShown: number;
  /** Code cells that call showPlot but produced no plot (cell index, first line). */
  missingPlots: string[];
}

/** Run one notebook top to bottom with nbconvert; throws (with Jupyter's message) if any cell fails. */
export async function executeNotebook(
  path: string,
  outDir: string,
  timeoutSec = 600,
): Promise<NotebookResult> {
  const name = path.split("/").pop()!;
  const executed = `${outDir}/${name}`;
  const started = performance.now();
  const r = await new Deno.Command("jupyter", {
    args: [
      "nbconvert",
      "--to",
      "notebook",
      "--execute",
      `--ExecutePreprocessor.timeout=${timeoutSec}`,
      "--ExecutePreprocessor.kernel_name=deno",
      // nbclient waits only 4 s for a cell's last outputs by default; on a busy machine a plot can arrive later
      // and be dropped silently. Wait longer, and make a timeout an error instead of a lost output.
      "--ExecutePreprocessor.iopub_timeout=120",
      "--ExecutePreprocessor.raise_on_iopub_timeout=True",
      "--output",
      executed,
      path,
    ],
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const seconds = (performance.now() - started) / 1000;
  if (!r.success) {
    const log = new TextDecoder().decode(r.stderr);
    throw new Error(`notebook ${name} failed after ${seconds.toFixed(1)} s:\n${log.slice(-4000)}`);
  }
  const nb = JSON.parse(await Deno.readTextFile(executed)) as { cells: NotebookCell[] };
  const result: NotebookResult = {
    notebook: name,
    executed,
    seconds,
    plotCells: 0,
    plotsShown: 0,
    missingPlots: [],
  };
  nb.cells.forEach((cell, i) => {
    if (cell.cell_type !== "code") return;
    const source = Array.isArray(cell.source) ? cell.source.join("") : cell.source;
    const errors = (cell.outputs ?? []).filter((o) => o.output_type === "error");
    if (errors.length) {
      throw new Error(`notebook ${name}, cell ${i}: ${errors[0].ename}: ${errors[0].evalue}`);
    }
    const plots = (cell.outputs ?? []).filter((o) => o.data && PLOTLY_MIME in o.data).length;
    result.plotsShown += plots;
    if (/\bshowPlot\(/.test(source)) {
      result.plotCells++;
      if (plots === 0) result.missingPlots.push(`cell ${i}: ${source.split("\n")[0]}`);
    }
  });
  return result;
}

/** Every notebook under `dir`, sorted by name. */
export async function listNotebooks(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    if (e.isFile && e.name.endsWith(".ipynb")) out.push(`${dir}/${e.name}`);
  }
  return out.sort();
}

/** The kit's modules in `dir` (lib/, tasks/, …): each .ts file with the first line of its header comment. */
export async function describeModules(
  dir: string,
  prefix = "",
): Promise<{ file: string; summary: string }[]> {
  const out: { file: string; summary: string }[] = [];
  for await (const e of Deno.readDir(dir)) {
    if (e.isDirectory) out.push(...await describeModules(`${dir}/${e.name}`, `${prefix}${e.name}/`));
    else if (e.isFile && e.name.endsWith(".ts")) {
      const first = (await Deno.readTextFile(`${dir}/${e.name}`)).split("\n").find((l) => l.startsWith("//"));
      out.push({
        file: `${prefix}${e.name}`,
        summary: first ? first.replace(/^\/\/\s*/, "") : "(no header comment)",
      });
    }
  }
  return out.sort((a, b) => a.file.localeCompare(b.file));
}
