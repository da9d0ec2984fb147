// Parameters by name. A network is built once as a tree of layers; building records every parameter's
// name, shape and initializer (a ParamSpec) and the forward cost of every layer, without allocating
// anything. `initParams` then makes the tensors. Forward passes take the parameters as a plain map
// (name → tensor), so the student's variables, an EMA copy or a checkpoint's tensors all run the same code,
// and checkpoints, EMA and optimizers only ever see names.
import * as tf from "@tensorflow/tfjs";
import { Rng } from "../rng.ts";

/** How a parameter starts (EDM's weight_init modes, times `gain`). */
export type Init =
  | { kind: "xavier_uniform"; fanIn: number; fanOut: number; gain: number }
  | { kind: "kaiming_uniform"; fanIn: number; gain: number }
  | { kind: "kaiming_normal"; fanIn: number; gain: number }
  | { kind: "normal"; std: number }
  | { kind: "constant"; value: number };

export interface ParamSpec {
  name: string;
  shape: number[];
  init: Init;
  /** false for fixed buffers that are saved but never trained (e.g. Fourier frequencies). */
  trainable: boolean;
}

/** Parameters of a network, by name. */
export type Params = ReadonlyMap<string, tf.Tensor>;

/** Options every forward pass takes. */
export interface ForwardContext {
  /** Dropout is active only when training. */
  training: boolean;
  /**
   * Seed of this step's dropout masks. A mask is a function of (seed, layer, global sample index, element)
   * (lib/nn/dropout.ts), so two passes with the same seed (the student and the teacher of one iCT step) use
   * the same masks, and so does a micro-batch or a data-parallel shard of the same step.
   */
  dropoutSeed?: number;
  /** Global index (within the step's whole batch) of this pass's first sample; 0 when the pass is the batch. */
  sampleOffset?: number;
}

export const EVAL: ForwardContext = { training: false };

/** The cost a layer adds to one forward pass of ONE sample. */
export interface Cost {
  /** Floating-point operations (2 per multiply-add). */
  flops: number;
  /** Activations kept for the backward pass, in values. */
  activations: number;
  /** The largest single layer output, in values (for backends with a per-buffer limit: WebGPU). */
  largest: number;
}

/** Collects parameter specs and costs under a name prefix while a network is built. */
export class Scope {
  private constructor(
    private readonly prefix: string,
    private readonly root: { specs: ParamSpec[]; cost: Cost; dropoutLayers: number },
  ) {}

  static root(): Scope {
    return new Scope("", { specs: [], cost: { flops: 0, activations: 0, largest: 0 }, dropoutLayers: 0 });
  }

  /** A sub-scope: its parameters are named `prefix.name.…`. */
  child(name: string): Scope {
    return new Scope(this.path(name), this.root);
  }

  path(name: string): string {
    return this.prefix ? `${this.prefix}.${name}` : name;
  }

  /** Declare a parameter; returns its full name. */
  param(name: string, shape: number[], init: Init, trainable = true): string {
    const full = this.path(name);
    if (this.root.specs.some((s) => s.name === full)) throw new Error(`parameter ${full} declared twice`);
    this.root.specs.push({ name: full, shape, init, trainable });
    return full;
  }

  /** A layer's cost per sample: its FLOPs, the values it keeps for backward, its largest single output. */
  addCost(flops: number, activations: number, largest = activations): void {
    this.root.cost.flops += flops;
    this.root.cost.activations += activations;
    this.root.cost.largest = Math.max(this.root.cost.largest, largest);
  }

  /** A fresh id for a dropout layer (its mask seed is derived from the step's seed and this id). */
  nextDropoutId(): number {
    return this.root.dropoutLayers++;
  }

  get specs(): readonly ParamSpec[] {
    return this.root.specs;
  }

  get cost(): Readonly<Cost> {
    return this.root.cost;
  }
}

/** Number of values in a tensor of this shape. */
export function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** Number of trainable values (buffers excluded, as in PyTorch's `parameters()`). */
export function countParams(specs: readonly ParamSpec[]): number {
  return specs.filter((s) => s.trainable).reduce((n, s) => n + numel(s.shape), 0);
}

function initValues(init: Init, n: number, rng: Rng): Float32Array {
  const out = new Float32Array(n);
  switch (init.kind) {
    case "constant":
      out.fill(init.value);
      break;
    case "normal":
      for (let i = 0; i < n; i++) out[i] = rng.normal() * init.std;
      break;
    case "kaiming_normal": {
      const std = init.gain * Math.sqrt(1 / init.fanIn);
      for (let i = 0; i < n; i++) out[i] = rng.normal() * std;
      break;
    }
    case "xavier_uniform":
    case "kaiming_uniform": {
      const bound = init.gain *
        (init.kind === "xavier_uniform"
          ? Math.sqrt(6 / (init.fanIn + init.fanOut))
          : Math.sqrt(3 / init.fanIn));
      if (bound === 0) break;
      for (let i = 0; i < n; i++) out[i] = (rng.uniform() * 2 - 1) * bound;
      break;
    }
  }
  return out;
}

/**
 * Fresh parameters from a seed: one random stream per parameter (seeded from the seed and the parameter's
 * position), so the values do not depend on the backend. Trainable ones are variables.
 */
export function initParams(specs: readonly ParamSpec[], seed: number): Map<string, tf.Tensor> {
  const params = new Map<string, tf.Tensor>();
  specs.forEach((s, i) => {
    const values = initValues(s.init, numel(s.shape), Rng.seeded((seed * 1000003 + i) | 0));
    const t = tf.tensor(values, s.shape, "float32");
    // Variables keep TF.js's own unique names: two models may hold parameters of the same name.
    params.set(s.name, s.trainable ? tf.variable(t, true) : t);
    if (s.trainable) t.dispose();
  });
  return params;
}

/** A parameter by name, with an error that names it when missing or of the wrong shape. */
export function get(params: Params, name: string, shape?: readonly number[]): tf.Tensor {
  const t = params.get(name);
  if (!t) throw new Error(`parameter ${name} is missing from the parameter map`);
  if (shape && t.shape.join(",") !== shape.join(",")) {
    throw new Error(`parameter ${name} has shape [${t.shape}], the network expects [${shape}]`);
  }
  return t;
}

/** The trainable parameters of a map (the variables `initParams` made), by name. */
export function trainableParams(params: Params): Map<string, tf.Variable> {
  const out = new Map<string, tf.Variable>();
  for (const [name, t] of params) if (t instanceof tf.Variable && t.trainable) out.set(name, t);
  return out;
}

/** Free every tensor of a parameter map. */
export function disposeParams(params: Params): void {
  for (const t of params.values()) t.dispose();
}
