// The kit's networks described from what building them records (parameter specs and per-layer costs): the
// parameter/GFLOP table against the paper's counts, and the block structure of a U-Net, resolution by
// resolution. Nothing is allocated, so the largest configs are described instantly.
import { buildNetwork, modelConfig } from "./models/index.ts";
import { countParams, numel } from "./nn/params.ts";
import { PAPER_NETWORKS } from "./paper.ts";

export interface NetworkComparison {
  model: string;
  paperName: string;
  kitParams: number;
  paperParams: number;
  kitGflops: number;
  paperGflops: number;
  /** Relative differences kit/paper − 1. */
  paramsDiff: number;
  gflopsDiff: number;
  /** SETTINGS.md's status of the paper's row. */
  status: "C" | "U";
}

/** Each network of the paper's table (SETTINGS.md "Networks") built from lib/models/ and counted. */
export function compareNetworks(): NetworkComparison[] {
  return PAPER_NETWORKS.map((p) => {
    const net = buildNetwork(modelConfig(p.model));
    const kitParams = countParams(net.specs);
    const kitGflops = net.cost.flops / 1e9;
    return {
      model: p.model,
      paperName: p.paperName,
      kitParams,
      paperParams: p.params,
      kitGflops,
      paperGflops: p.gflopsPerImage,
      paramsDiff: kitParams / p.params - 1,
      gflopsDiff: kitGflops / p.gflopsPerImage - 1,
      status: p.source.status,
    };
  });
}

export interface BlockRow {
  /** "embedding", "encoder", "decoder", "output". */
  part: string;
  /** Feature resolution ("32x32"), or "" for the embedding. */
  resolution: string;
  /** What sits there, in build order: "conv", "4 × res block (2 with attention)", "down", … */
  layers: string;
  params: number;
}

const PART: Record<string, string> = { enc: "encoder", dec: "decoder" };

/**
 * The block structure of a U-Net (NCSN++ or ADM) from its parameter names (`enc.16x16_block2.qkv.weight`):
 * one row per part and resolution, listing its layers in order with their parameter count; residual blocks
 * that hold attention weights (qkv) are counted as such.
 */
export function blockStructure(model: string): BlockRow[] {
  const net = buildNetwork(modelConfig(model));
  const rows = new Map<
    string,
    { part: string; resolution: string; layers: Map<string, boolean>; params: number }
  >();
  for (const s of net.specs) {
    if (!s.trainable) continue;
    const [top, layer] = s.name.split(".");
    const m = /^(\d+x\d+)_([a-z_]+?)(\d*)$/.exec(layer ?? "");
    const part = PART[top] ?? (top.startsWith("map") ? "embedding" : "output");
    const resolution = PART[top] && m ? m[1] : "";
    const key = `${part} ${resolution}`;
    if (!rows.has(key)) rows.set(key, { part, resolution, layers: new Map(), params: 0 });
    const row = rows.get(key)!;
    row.params += numel(s.shape);
    const layerName = PART[top] && m ? `${m[2]}${m[3]}` : top;
    const attn = /\.(qkv|proj)\./.test(s.name);
    row.layers.set(layerName, (row.layers.get(layerName) ?? false) || attn);
  }
  return [...rows.values()].map(({ part, resolution, layers, params }) => ({
    part,
    resolution,
    layers: describeLayers(layers),
    params,
  }));
}

/** "conv, 4 × res block (2 with attention), down": runs of blockN collapsed, others named in order. */
function describeLayers(layers: Map<string, boolean>): string {
  const out: string[] = [];
  let blocks = 0, attn = 0;
  const flush = () => {
    if (blocks) out.push(`${blocks} × res block${attn ? ` (${attn} with attention)` : ""}`);
    blocks = attn = 0;
  };
  for (const [name, hasAttn] of layers) {
    if (/^block\d+$/.test(name)) {
      blocks++;
      if (hasAttn) attn++;
    } else {
      flush();
      out.push(name.replaceAll("_", " ") + (hasAttn ? " (attention)" : ""));
    }
  }
  flush();
  return out.join(", ");
}
