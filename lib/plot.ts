// Plotly figures as plain data, shown in the Deno Jupyter kernel.
// A figure is {data, layout} exactly as plotly.js takes it; Jupyter renders the plotly MIME type itself.

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
}
