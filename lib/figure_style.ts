// Layout touches shared by the notebooks' figures (plain plotly layout data, no computation).
import type { Figure } from "./plot.ts";
import { type RawImage, showImage } from "./images.ts";

/**
 * Tick labels as powers of ten ("10⁻⁴") on every axis instead of plotly's SI prefixes ("100μ"), which read like
 * the paper's μ. Returns the figure.
 */
export function powerTicks(fig: Figure): Figure {
  for (const [key, axis] of Object.entries(fig.layout ?? {})) {
    if (/^[xy]axis\d*$/.test(key) && axis && typeof axis === "object") {
      Object.assign(axis, { exponentformat: "power" });
    }
  }
  return fig;
}

/** The legend in a row under the plot, where it covers no axis (a second y axis included). Returns the figure. */
export function legendBelow(fig: Figure, y = -0.3): Figure {
  fig.layout = { ...fig.layout, legend: { orientation: "h", y } };
  return fig;
}

/**
 * Two panels stacked over one x axis instead of a second y axis: traces marked `yaxis: "y2"` go to the lower
 * panel, titled `lower`. Returns the figure.
 */
export function stackedPanels(fig: Figure, lower: { title: string; log?: boolean }): Figure {
  const layout = fig.layout ?? {};
  layout.yaxis = { ...(layout.yaxis as object), domain: [0.42, 1] };
  layout.xaxis = { ...(layout.xaxis as object), anchor: "y2" }; // the shared x axis under the lower panel
  layout.yaxis2 = {
    title: { text: lower.title },
    domain: [0, 0.32],
    anchor: "x",
    ...(lower.log ? { type: "log" } : {}),
  };
  layout.height = Math.max((layout.height as number | undefined) ?? 420, 560);
  fig.layout = layout;
  return fig;
}

/**
 * An image with its caption visible: the caption as its own markdown output above the PNG (a caption inside
 * the PNG's bundle lives in text/plain, which Jupyter hides when it can show the image).
 */
export async function showCaptionedImage(img: RawImage, caption: string, zoom = 1): Promise<void> {
  await Deno.jupyter.display({ "text/markdown": `**${caption}**`, "text/plain": caption }, { raw: true });
  await showImage(img, caption, zoom);
}
