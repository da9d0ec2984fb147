"""A tiny UNet of openai/consistency_models, with random weights, and its `denoise` outputs: the parity fixture
of tests/openai_cm_test.ts (the kit's `deno task import:openai-cm` + `denoise` must reproduce them).

Not run in CI; its outputs in tests/fixtures/openai_cm/ are committed. OpenAI's code is NOT part of the kit: this
script imports it from a checkout given on the command line (or /tmp/consistency_models), e.g.

    git clone https://github.com/openai/consistency_models /tmp/consistency_models
    /usr/bin/python3 tests/reference/openai_cm_reference.py /tmp/consistency_models

(written against commit e32b69e of their main branch, with Debian's torch 1.13 and numpy 1.24).

What it builds: their `cm.unet.UNetModel` exactly as `cm.script_util.create_model` would for the flags in
tiny_unet.json (16×16, 32 channels, channel_mult 1,1, one res block, attention at 8×8 with 16 channels per head
i.e. 2 heads, scale-shift norm, resblock_updown, class-conditional), except `num_classes` = 10
instead of create_model's fixed 1000 (UNetModel's own argument; it keeps the fixture small). Every parameter is
redrawn at random and nonzero, the zero-initialised output layers (out_layers.3, proj_out, out.2) included, so a
wrongly mapped tensor changes the outputs. Matrices (ndim ≥ 2) are stored as float16 and the rest (biases, norm
scales) as float32, so the file stays under 1 MB and the importer's F16 and F32 paths both run; the model is
evaluated in float32 on exactly the float16-rounded values.

Attention: UNetModel never passes `attention_type`, so every AttentionBlock of the released checkpoints is built
with the default "flash" (QKVFlashAttention, CUDA-only flash_attn): its qkv channels are laid out
"b (three h d) s", i.e. [q | k | v] each [head, channel]. This script swaps in their own `QKVAttention`, which
takes the same layout (qkv.chunk(3), then heads) in plain float32 torch, and checks once that it equals a direct
einsum over the "(three h d)" layout. (Their QKVAttentionLegacy was rewritten to that layout too, but casts to
float16; guided-diffusion's original legacy order, "(h three d)", is NOT what these checkpoints use.)

Outputs, from their `KarrasDenoiser(sigma_data=0.5, sigma_min=0.002, sigma_max=80, distillation=True).denoise`
(the consistency-model scalings with σ_min, and c_noise = 1000·0.25·ln(σ + 1e-44)):
  tiny_unet.pt     torch.save(state_dict) in their parameter names (zip format)
  tiny_unet.json   the model flags (the kit's `--arch FILE.json`)
  released_shapes.json   {arch: {parameter name: shape}} of the networks of the released checkpoints, built by
                   their create_model with the flags of their scripts/launch.sh (imagenet64; bedroom256, which
                   cat256 shares): the kit's name mapping must cover exactly these names and shapes
  denoise.npz      x [N, 3, 16, 16] (NCHW, float32), sigma [N], y [N] (int32 classes), model_output [N, 3, 16, 16]
                   (F_θ(c_in·x, c_noise)), denoised [N, 3, 16, 16] (f_θ(x, σ)); float32, torch on the CPU
"""

import json
import math
import os
import sys
import types

import numpy as np
import torch as th

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "fixtures", "openai_cm")

FLAGS = {
    "image_size": 16,
    "num_channels": 32,
    "num_res_blocks": 1,
    "channel_mult": "1,1",
    "attention_resolutions": "8",
    "num_head_channels": 16,
    "num_heads": 4,
    "num_heads_upsample": -1,
    "class_cond": True,
    "num_classes": 10,
    "use_scale_shift_norm": True,
    "resblock_updown": True,
    "dropout": 0.0,
    "learn_sigma": False,
    "use_fp16": False,
    "use_new_attention_order": False,
}
SIGMAS = [0.002, 0.02, 0.3, 2.5, 80.0]
BATCH = 4


def stub(name, **attrs):
    """An empty module for an import their code makes but this script never uses (no network, no GPU)."""
    m = types.ModuleType(name)
    m.__dict__.update(attrs)
    sys.modules[name] = m
    return m


def import_cm(checkout):
    if not os.path.isfile(os.path.join(checkout, "cm", "unet.py")):
        sys.exit(
            f"no openai/consistency_models checkout at {checkout} (cm/unet.py is missing): run\n"
            f"  git clone https://github.com/openai/consistency_models {checkout}"
        )
    for name, attrs in [
        ("blobfile", {}),
        ("mpi4py", {"MPI": types.SimpleNamespace(COMM_WORLD=None)}),
        ("piq", {"LPIPS": lambda **kw: None}),  # built by KarrasDenoiser, used only by its losses
        ("torchvision", {}),
        ("torchvision.transforms", {"RandomCrop": object}),
    ]:
        try:
            __import__(name)
        except ImportError:
            stub(name, **attrs)
    sys.path.insert(0, checkout)
    import cm.unet as unet
    from cm.karras_diffusion import KarrasDenoiser

    # flash_attn is CUDA-only: their own QKVAttention takes the same "(three h d)" layout in plain torch.
    unet.QKVFlashAttention = lambda embed_dim, num_heads, **kw: unet.QKVAttention(num_heads)
    return unet, KarrasDenoiser


def check_attention_layout(unet):
    """QKVAttention == softmax(qᵀk/√d)·v with qkv channels laid out (three, head, d), like flash's rearrange."""
    g = th.Generator().manual_seed(1)
    heads, d, s = 2, 8, 5
    qkv = th.randn(3, 3 * heads * d, s, generator=g)
    got = unet.QKVAttention(heads)(qkv)
    t = qkv.reshape(3, 3, heads, d, s)  # b three h d s
    q, k, v = t[:, 0], t[:, 1], t[:, 2]
    w = th.softmax(th.einsum("bhds,bhdt->bhst", q, k) / math.sqrt(d), dim=-1)
    want = th.einsum("bhst,bhdt->bhds", w, v).reshape(3, heads * d, s)
    err = (got - want).abs().max().item()
    assert err < 1e-5, f"QKVAttention does not take the (three h d) layout: max error {err}"


def build(unet):
    f = FLAGS
    mult = tuple(int(m) for m in f["channel_mult"].split(","))
    attention_ds = tuple(f["image_size"] // int(r) for r in f["attention_resolutions"].split(","))
    # cm.script_util.create_model's arguments, with num_classes given instead of its fixed 1000.
    return unet.UNetModel(
        image_size=f["image_size"],
        in_channels=3,
        model_channels=f["num_channels"],
        out_channels=3,
        num_res_blocks=f["num_res_blocks"],
        attention_resolutions=attention_ds,
        dropout=f["dropout"],
        channel_mult=mult,
        num_classes=f["num_classes"],
        use_checkpoint=False,
        use_fp16=False,
        num_heads=f["num_heads"],
        num_head_channels=f["num_head_channels"],
        num_heads_upsample=f["num_heads_upsample"],
        use_scale_shift_norm=f["use_scale_shift_norm"],
        resblock_updown=f["resblock_updown"],
        use_new_attention_order=f["use_new_attention_order"],
    )


def randomize(model, g):
    """Every parameter redrawn, nonzero; matrices rounded to float16 (they are saved as float16)."""
    with th.no_grad():
        for name, p in model.named_parameters():
            if p.ndim >= 2:
                fan_in = p[0].numel() if not name.endswith("label_emb.weight") else 1
                v = th.randn(p.shape, generator=g) / math.sqrt(fan_in)
                p.copy_(v.half().float())
            elif "norm" in name or name.startswith("out.0") or ".in_layers.0." in name or ".out_layers.0." in name:
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.2 * th.randn(p.shape, generator=g))
            else:
                p.copy_(0.2 * th.randn(p.shape, generator=g))
            assert (p != 0).all(), f"{name} has a zero"


# scripts/launch.sh's model flags of the released consistency models (--training_mode consistency_*).
RELEASED = {
    "imagenet64": dict(image_size=64, num_channels=192, num_res_blocks=3, attention_resolutions="32,16,8",
                       class_cond=True, use_scale_shift_norm=True, dropout=0.0, num_head_channels=64,
                       resblock_updown=True, use_fp16=True),
    "bedroom256": dict(image_size=256, num_channels=256, num_res_blocks=2, attention_resolutions="32,16,8",
                       class_cond=False, use_scale_shift_norm=False, dropout=0.0, num_head_channels=64,
                       resblock_updown=True, use_fp16=True),
}


def released_shapes(checkout):
    from cm.script_util import create_model

    shapes = {}
    for arch, flags in RELEASED.items():
        model = create_model(**flags)
        shapes[arch] = {k: list(v.shape) for k, v in model.state_dict().items()}
        print(f"{arch}: {len(shapes[arch])} tensors, {sum(p.numel() for p in model.parameters())} parameters")
        del model
    return shapes


def main():
    checkout = sys.argv[1] if len(sys.argv) > 1 else "/tmp/consistency_models"
    unet, KarrasDenoiser = import_cm(checkout)
    check_attention_layout(unet)
    th.manual_seed(0)
    g = th.Generator().manual_seed(0)
    model = build(unet).eval()
    randomize(model, g)
    diffusion = KarrasDenoiser(sigma_data=0.5, sigma_max=80.0, sigma_min=0.002, distillation=True)

    n = len(SIGMAS) * BATCH
    size = FLAGS["image_size"]
    x0 = th.rand(BATCH, 3, size, size, generator=g) * 2 - 1
    xs, sig = [], []
    for s in SIGMAS:
        xs.append(x0 + s * th.randn(BATCH, 3, size, size, generator=g))
        sig += [s] * BATCH
    ys = [(7 * i + 3) % FLAGS["num_classes"] for i in range(n)]
    x = th.cat(xs).float()
    sigma = th.tensor(sig, dtype=th.float32)
    y = th.tensor(ys, dtype=th.int64)
    assert x.shape[0] == n
    with th.no_grad():
        model_output, denoised = diffusion.denoise(model, x, sigma, y=y)

    os.makedirs(OUT, exist_ok=True)
    state = {}
    for k, v in model.state_dict().items():
        state[k] = v.half().clone() if v.ndim >= 2 else v.clone()
    th.save(state, os.path.join(OUT, "tiny_unet.pt"))
    with open(os.path.join(OUT, "tiny_unet.json"), "w") as f:
        json.dump(FLAGS, f, indent=2)
        f.write("\n")
    np.savez(
        os.path.join(OUT, "denoise.npz"),
        x=x.numpy(),
        sigma=sigma.numpy(),
        y=y.numpy().astype(np.int32),
        model_output=model_output.numpy().astype(np.float32),
        denoised=denoised.numpy().astype(np.float32),
    )
    print(f"{sum(p.numel() for p in model.parameters())} parameters; {n} samples at σ = {SIGMAS}")
    print(f"max |model_output| {model_output.abs().max().item():.3g}, max |denoised| {denoised.abs().max().item():.3g}")
    with open(os.path.join(OUT, "released_shapes.json"), "w") as f:
        json.dump(released_shapes(checkout), f, separators=(",", ":"))
        f.write("\n")
    for name in ["tiny_unet.pt", "tiny_unet.json", "denoise.npz", "released_shapes.json"]:
        print(f"wrote {os.path.join(OUT, name)} ({os.path.getsize(os.path.join(OUT, name))} bytes)")


if __name__ == "__main__":
    main()
