// Plotly figures as plain data, shown in the Deno Jupyter kernel.
// A figure is {data, layout} exactly as plotly.js takes it; Jupyter renders the plotly MIME type itself.
import { writeFileAtomic } from "./io/fs.ts";

export interface Figure {
  data: Record<string, unknown>[];
  layout?: Record<string, unknown>;
}

/** The MIME type a notebook output carries for a plotly figure (the notebook tests count these). */
export const PLOTLY_MIME = "application/vnd.plotly.v1+json";

/** One line trace. */
export function line(
  x: ArrayLike<number>,
  y: ArrayLike<number>,
  name?: string,
  extra: Record<string, unknown> = {},
) {
  return { type: "scatter", mode: "lines", x: Array.from(x), y: Array.from(y), name, ...extra };
}

/** A figure with axis titles; pass `log: "x" | "y" | "xy"` for logarithmic axes. */
export function figure(
  traces: Record<string, unknown>[],
  opts: { title?: string; x?: string; y?: string; log?: "x" | "y" | "xy"; width?: number; height?: number } =
    {},
): Figure {
  const axis = (title: string | undefined, log: boolean) => ({
    title: { text: title },
    ...(log ? { type: "log" } : {}),
  });
  return {
    data: traces,
    layout: {
      title: { text: opts.title },
      xaxis: axis(opts.x, opts.log?.includes("x") ?? false),
      yaxis: axis(opts.y, opts.log?.includes("y") ?? false),
      width: opts.width ?? 720,
      height: opts.height ?? 420,
    },
  };
}

/** Display a figure in the Deno Jupyter kernel (with a one-line text fallback for text-only front ends). */
export async function showPlot(fig: Figure): Promise<void> {
  if (!("jupyter" in Deno)) {
    throw new Error(
      "showPlot runs inside the Deno Jupyter kernel (deno jupyter --install); outside it, keep the Figure data",
    );
  }
  const title = (fig.layout?.title as { text?: string } | undefined)?.text ?? "figure";
  await Deno.jupyter.display({ [PLOTLY_MIME]: fig, "text/plain": `[plot: ${title}]` }, { raw: true });
  // The Deno kernel can report the cell finished before this display message is out; nbclient then drops the
  // plot (seen once in CI). A short pause lets the message leave first.
  await new Promise((resolve) => setTimeout(resolve, 100));
}

let plotlyBundle: Promise<string> | undefined;

/** The plotly.js-dist-min bundle's source, read once from the installed npm package. */
function plotlySource(): Promise<string> {
  if (!plotlyBundle) {
    plotlyBundle = (async () => {
      const url = import.meta.resolve("plotly.js-dist-min");
      if (!url.startsWith("file:")) {
        throw new Error(`plotly.js-dist-min resolved to ${url}, not a file: run \`deno install\` first`);
      }
      return await Deno.readTextFile(new URL(url));
    })();
    plotlyBundle.catch(() => {
      plotlyBundle = undefined; // retry after a failure
    });
  }
  return plotlyBundle;
}

const escapeHtml = (s: string) =>
  s.replace(/[&<>"]/g, (ch) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[ch]!);

/**
 * Writes a standalone HTML page that works offline: the plotly.js bundle inlined, then one `Plotly.newPlot`
 * per figure. The figures sit as JSON in `<script type="application/json" id="figures">` (with `<` written
 * as \u003c, so the JSON parses back as is). NaN/±Infinity become null (gaps), as JSON.stringify does.
 * Atomic: a temp file in the same folder, then rename.
 */
export async function writePlotHtml(path: string, fig: Figure | Figure[], title?: string): Promise<void> {
  const figs = Array.isArray(fig) ? fig : [fig];
  const json = JSON.stringify(figs).replace(/</g, "\\u003c");
  const bundle = (await plotlySource()).replace(/<\/(script)/gi, "<\\/$1"); // none in 3.7.0; kept safe
  const t = escapeHtml(title ?? "plots");
  const divs = figs.map((_, i) => `<div id="fig-${i}"></div>`).join("\n");
  const html = `<!DOCTYPE html>
<html>
<head>
<meta charset="utf-8">
<title>${t}</title>
<script>${bundle}</script>
</head>
<body>
${title === undefined ? "" : `<h1 style="font-family: sans-serif">${t}</h1>`}
${divs}
<script type="application/json" id="figures">${json}</script>
<script>
const figures = JSON.parse(document.getElementById("figures").textContent);
figures.forEach((f, i) => Plotly.newPlot("fig-" + i, f.data, f.layout || {}));
</script>
</body>
</html>
`;
  await writeFileAtomic(path, html);
}
