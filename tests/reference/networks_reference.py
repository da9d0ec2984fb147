"""Independent PyTorch reference for the tiny NCSN++ and ADM of tests/reference/tiny_networks.ts.

Not run in CI; its output is committed. Run: /usr/bin/python3 tests/reference/networks_reference.py

Reads  tests/fixtures/tiny_networks.safetensors        (parameters in TF.js layouts, inputs, configs;
                                                        written by make_network_fixture.ts)
Writes tests/fixtures/tiny_networks_torch.safetensors  (`ncsnpp/out`, `adm/out`: F32 [B, H, W, C])

The networks are written here from the architecture of EDM's SongUNet (NCSN++: residual encoder, standard
decoder, FIR [1,3,3,1]) and DhariwalUNet (ADM: scale-shift norm, [1,1] resampling), in evaluation mode (no
dropout), in float64, with torch's own group_norm / conv2d / conv_transpose2d for the FIR resampling. It does
not follow the TypeScript code (lib/nn, lib/models), so that a bug there is not reproduced here; only the
parameter names and layouts are shared. Every parameter in the file must be used, and every parameter the
architecture needs must be in the file with the expected shape, or the script fails.

Needs only torch and numpy (no safetensors package: the format is read and written by hand).
"""

import hashlib
import json
import math
import os
import struct

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "fixtures")
IN_PATH = os.path.join(FIXTURES, "tiny_networks.safetensors")
OUT_PATH = os.path.join(FIXTURES, "tiny_networks_torch.safetensors")
DTYPE = torch.float64


# ---- safetensors, by hand --------------------------------------------------------------------------------

def read_safetensors(path):
    """Returns ({name: float32 numpy array}, metadata dict)."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    metadata = header.pop("__metadata__", {})
    data = raw[8 + n:]
    tensors = {}
    for name, e in header.items():
        if e["dtype"] != "F32":
            raise ValueError(f"{name}: dtype {e['dtype']}, this reader only knows F32")
        begin, end = e["data_offsets"]
        a = np.frombuffer(data[begin:end], dtype="<f4")
        if a.size != int(np.prod(e["shape"], dtype=np.int64)):
            raise ValueError(f"{name}: {a.size} values for shape {e['shape']}")
        tensors[name] = a.reshape(e["shape"]).copy()
    return tensors, metadata


def write_safetensors(path, tensors, metadata):
    """tensors: {name: numpy array}, written as little-endian F32 in the given order."""
    header, chunks, offset = {}, [], 0
    for name, a in tensors.items():
        b = np.ascontiguousarray(a, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [offset, offset + len(b)]}
        chunks.append(b)
        offset += len(b)
    header["__metadata__"] = metadata
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in chunks:
            f.write(b)


# ---- Parameters: TF.js layouts → torch layouts, with a record of what was used ----------------------------

class Params:
    """The parameters of one network. Each accessor checks the shape and converts the layout."""

    def __init__(self, arrays):
        self.arrays = arrays
        self.used = set()

    def _take(self, name, shape):
        if name not in self.arrays:
            raise KeyError(f"parameter {name} {list(shape)} is missing from the fixture")
        a = self.arrays[name]
        if list(a.shape) != list(shape):
            raise ValueError(f"parameter {name}: shape {list(a.shape)} in the file, architecture needs {list(shape)}")
        if name in self.used:
            raise RuntimeError(f"parameter {name} used twice")
        self.used.add(name)
        return torch.from_numpy(a).to(DTYPE)

    def vector(self, name, n):
        return self._take(name, [n])

    def dense(self, name, fan_in, fan_out):
        """TF.js [in, out] → torch Linear [out, in]."""
        return self._take(name, [fan_in, fan_out]).T.contiguous()

    def conv(self, name, k, cin, cout):
        """TF.js [k, k, in, out] → torch [out, in, k, k]."""
        return self._take(name, [k, k, cin, cout]).permute(3, 2, 0, 1).contiguous()

    def check_all_used(self, net):
        unused = sorted(set(self.arrays) - self.used)
        if unused:
            raise RuntimeError(f"{net}: {len(unused)} parameters in the file are not used: {unused}")


# ---- Layers ---------------------------------------------------------------------------------------------

def linear(P, name, x, fan_in, fan_out, bias=True):
    y = x @ P.dense(f"{name}.weight", fan_in, fan_out).T
    return y + P.vector(f"{name}.bias", fan_out) if bias else y


def group_norm(P, name, x, eps):
    c = x.shape[1]
    groups = min(32, c // 4)
    return F.group_norm(x, groups, P.vector(f"{name}.weight", c), P.vector(f"{name}.bias", c), eps)


def fir_2d(taps):
    """The 2-D resampling filter f⊗f with f normalized to sum 1, as a [1, 1, T, T] tensor."""
    f = torch.tensor(taps, dtype=DTYPE)
    f = f / f.sum()
    return torch.outer(f, f)[None, None]


def fir_down(x, taps, pad):
    c = x.shape[1]
    f = fir_2d(taps).repeat(c, 1, 1, 1)
    return F.conv2d(x, f, stride=2, padding=pad, groups=c)


def fir_up(x, taps):
    c = x.shape[1]
    f = (4 * fir_2d(taps)).repeat(c, 1, 1, 1)
    return F.conv_transpose2d(x, f, stride=2, padding=(len(taps) - 1) // 2, groups=c)


def conv(P, name, x, k, cin, cout, up=False, down=False, taps=(1, 1), fused_down=False):
    """Conv2d with 'same' padding, stride 1; k = 0 is resampling only. Resampling happens before the
    convolution, except fused_down: convolve with (k−1)/2 + ⌊(T−1)/2⌋ zeros of padding, then filter with
    stride 2 and no padding."""
    assert x.shape[1] == cin, f"{name}: input has {x.shape[1]} channels, expected {cin}"
    fpad = (len(taps) - 1) // 2
    if fused_down:
        assert down and k > 0
        x = F.conv2d(x, P.conv(f"{name}.weight", k, cin, cout), P.vector(f"{name}.bias", cout),
                     padding=k // 2 + fpad)
        return fir_down(x, taps, 0)
    if up:
        x = fir_up(x, taps)
    if down:
        x = fir_down(x, taps, fpad)
    if k > 0:
        x = F.conv2d(x, P.conv(f"{name}.weight", k, cin, cout), P.vector(f"{name}.bias", cout), padding=k // 2)
    else:
        assert cin == cout
    return x


def unet_block(P, name, x, emb, cin, cout, *, emb_ch, up=False, down=False, attention=False, heads=1,
               skip_scale, eps, taps, resample_proj, adaptive_scale):
    """EDM's UNetBlock (evaluation mode)."""
    orig = x
    h = conv(P, f"{name}.conv0", F.silu(group_norm(P, f"{name}.norm0", x, eps)), 3, cin, cout,
             up=up, down=down, taps=taps)
    p = linear(P, f"{name}.affine", emb, emb_ch, cout * (2 if adaptive_scale else 1))[:, :, None, None]
    if adaptive_scale:
        scale, shift = p.chunk(2, dim=1)
        h = F.silu(shift + group_norm(P, f"{name}.norm1", h, eps) * (scale + 1))
    else:
        h = F.silu(group_norm(P, f"{name}.norm1", h + p, eps))
    h = conv(P, f"{name}.conv1", h, 3, cout, cout)
    if cout != cin or up or down:
        k = 1 if (resample_proj or cout != cin) else 0
        skip = conv(P, f"{name}.skip", orig, k, cin, cout, up=up, down=down, taps=taps)
    else:
        skip = orig
    x = (h + skip) * skip_scale

    if attention:
        b, c, hh, ww = x.shape
        assert c % heads == 0, f"{name}: {c} channels over {heads} heads"
        d = c // heads
        qkv = conv(P, f"{name}.qkv", group_norm(P, f"{name}.norm2", x, eps), 1, c, 3 * c)
        # Channels of qkv are [head, channel in head, (q, k, v)].
        q, k, v = qkv.reshape(b * heads, d, 3, hh * ww).unbind(2)
        w = torch.einsum("ncq,nck->nqk", q, k / math.sqrt(d)).softmax(dim=2)
        a = torch.einsum("nqk,nck->ncq", w, v).reshape(b, c, hh, ww)
        x = (conv(P, f"{name}.proj", a, 1, c, c) + x) * skip_scale
    return x


# ---- NCSN++ (EDM SongUNet: encoder "residual", decoder "standard") ----------------------------------------

def ncsnpp(P, cfg, x, c_noise, labels=None):
    mc, mult_list = cfg["modelChannels"], cfg["channelMult"]
    emb_ch = mc * cfg["channelMultEmb"]
    noise_ch = mc * cfg["channelMultNoise"]
    taps = cfg["resampleFilter"]
    levels = len(mult_list)
    blk = dict(emb_ch=emb_ch, heads=1, skip_scale=math.sqrt(0.5), eps=1e-6, taps=taps, resample_proj=True,
               adaptive_scale=False)

    # Mapping: Gaussian Fourier features, [sin, cos] (EDM computes [cos, sin] and swaps the halves).
    freqs = P.vector("map_noise.freqs", noise_ch // 2)
    angles = c_noise[:, None] * (2 * math.pi * freqs)[None, :]
    emb = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)
    if cfg["labelDim"]:
        # EDM's SongUNet scales the one-hot labels by √label_dim here (not exercised: labelDim = 0).
        emb = emb + linear(P, "map_label", labels * math.sqrt(cfg["labelDim"]), cfg["labelDim"], noise_ch)
    emb = F.silu(linear(P, "map_layer0", emb, noise_ch, emb_ch))
    emb = F.silu(linear(P, "map_layer1", emb, emb_ch, emb_ch))

    # Encoder.
    skips = []
    aux = x
    cout = caux = cfg["channels"]
    for level, mult in enumerate(mult_list):
        r = cfg["resolution"] >> level
        if level == 0:
            x = conv(P, f"enc.{r}x{r}_conv", x, 3, cout, mc)
            cout = mc
            skips.append(x)
        else:
            x = unet_block(P, f"enc.{r}x{r}_down", x, emb, cout, cout, down=True, **blk)
            skips.append(x)
            x = (x + conv(P, f"enc.{r}x{r}_aux_residual", aux, 3, caux, cout, down=True, taps=taps,
                          fused_down=True)) / math.sqrt(2)
            aux = skips[-1] = x
            caux = cout
        for idx in range(cfg["numBlocks"]):
            cin, cout = cout, mc * mult
            x = unet_block(P, f"enc.{r}x{r}_block{idx}", x, emb, cin, cout,
                           attention=r in cfg["attnResolutions"], **blk)
            skips.append(x)

    # Decoder.
    for level in reversed(range(levels)):
        mult = mult_list[level]
        r = cfg["resolution"] >> level
        if level == levels - 1:
            x = unet_block(P, f"dec.{r}x{r}_in0", x, emb, cout, cout, attention=True, **blk)
            x = unet_block(P, f"dec.{r}x{r}_in1", x, emb, cout, cout, **blk)
        else:
            x = unet_block(P, f"dec.{r}x{r}_up", x, emb, cout, cout, up=True, **blk)
        for idx in range(cfg["numBlocks"] + 1):
            skip = skips.pop()
            cin, cout = cout + skip.shape[1], mc * mult
            if x.shape[1] != cin:
                x = torch.cat([x, skip], dim=1)
            x = unet_block(P, f"dec.{r}x{r}_block{idx}", x, emb, cin, cout,
                           attention=idx == cfg["numBlocks"] and r in cfg["attnResolutions"], **blk)
    assert not skips
    r = cfg["resolution"]
    x = F.silu(group_norm(P, f"dec.{r}x{r}_aux_norm", x, 1e-6))
    return conv(P, f"dec.{r}x{r}_aux_conv", x, 3, cout, cfg["channels"])


# ---- ADM (EDM DhariwalUNet) -------------------------------------------------------------------------------

def adm(P, cfg, x, c_noise, labels):
    mc, mult_list = cfg["modelChannels"], cfg["channelMult"]
    emb_ch = mc * cfg["channelMultEmb"]
    levels = len(mult_list)
    cph = cfg["channelsPerHead"]
    blk = dict(emb_ch=emb_ch, skip_scale=1.0, eps=1e-5, taps=(1, 1), resample_proj=False,
               adaptive_scale=cfg["scaleShift"])

    def block(name, x, cin, cout, **kw):
        return unet_block(P, name, x, emb, cin, cout, heads=cout // cph, **blk, **kw)

    # Mapping: positional embedding [cos, sin] of c_noise.
    half = mc // 2
    freqs = (1 / 10000) ** (torch.arange(half, dtype=DTYPE) / half)
    angles = c_noise[:, None] * freqs[None, :]
    emb = torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)
    emb = F.silu(linear(P, "map_layer0", emb, mc, emb_ch))
    emb = linear(P, "map_layer1", emb, emb_ch, emb_ch)
    if cfg["labelDim"]:
        emb = emb + linear(P, "map_label", labels, cfg["labelDim"], emb_ch, bias=False)
    emb = F.silu(emb)

    # Encoder.
    skips = []
    cout = cfg["channels"]
    for level, mult in enumerate(mult_list):
        r = cfg["resolution"] >> level
        if level == 0:
            x = conv(P, f"enc.{r}x{r}_conv", x, 3, cout, mc * mult)
            cout = mc * mult
        else:
            x = block(f"enc.{r}x{r}_down", x, cout, cout, down=True)
        skips.append(x)
        for idx in range(cfg["numBlocks"]):
            cin, cout = cout, mc * mult
            x = block(f"enc.{r}x{r}_block{idx}", x, cin, cout, attention=r in cfg["attnResolutions"])
            skips.append(x)

    # Decoder.
    for level in reversed(range(levels)):
        mult = mult_list[level]
        r = cfg["resolution"] >> level
        if level == levels - 1:
            x = block(f"dec.{r}x{r}_in0", x, cout, cout, attention=True)
            x = block(f"dec.{r}x{r}_in1", x, cout, cout)
        else:
            x = block(f"dec.{r}x{r}_up", x, cout, cout, up=True)
        for idx in range(cfg["numBlocks"] + 1):
            skip = skips.pop()
            cin, cout = cout + skip.shape[1], mc * mult
            if x.shape[1] != cin:
                x = torch.cat([x, skip], dim=1)
            x = block(f"dec.{r}x{r}_block{idx}", x, cin, cout, attention=r in cfg["attnResolutions"])
    assert not skips
    x = F.silu(group_norm(P, "out_norm", x, 1e-5))
    return conv(P, "out_conv", x, 3, cout, cfg["channels"])


# ---- Main -----------------------------------------------------------------------------------------------

def main():
    tensors, metadata = read_safetensors(IN_PATH)
    outputs = {}
    for net, forward in (("ncsnpp", ncsnpp), ("adm", adm)):
        cfg = json.loads(metadata[f"{net}.config"])
        prefix = f"{net}/params/"
        P = Params({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
        x = torch.from_numpy(tensors[f"{net}/x"]).to(DTYPE).permute(0, 3, 1, 2)  # NHWC → NCHW
        c_noise = torch.from_numpy(tensors[f"{net}/c_noise"]).to(DTYPE)
        labels = tensors.get(f"{net}/labels")
        labels = None if labels is None else torch.from_numpy(labels).to(DTYPE)
        with torch.no_grad():
            out = forward(P, cfg, x, c_noise, labels)
        P.check_all_used(net)
        assert out.shape == x.shape, f"{net}: output {tuple(out.shape)} for input {tuple(x.shape)}"
        out = out.permute(0, 2, 3, 1).numpy().astype(np.float32)  # NCHW → NHWC
        outputs[f"{net}/out"] = out
        print(f"{net}: {len(P.used)} parameters, out {list(out.shape)}, max |out| = {np.abs(out).max():.6g}")

    meta = {
        "torch_version": torch.__version__,
        "note": "written by tests/reference/networks_reference.py",
        # The inputs' checksum (as the kit writes it), so a stale reference can be told apart.
        "inputs_data_sha256": metadata.get("ict_kit.data_sha256", ""),
        # The kit's own checksum of this file's data (lib/checkpoint.ts verifies it when present).
        "ict_kit.data_sha256": hashlib.sha256(b"".join(
            np.ascontiguousarray(a, dtype="<f4").tobytes() for a in outputs.values())).hexdigest(),
    }
    write_safetensors(OUT_PATH, outputs, meta)
    print(f"wrote {os.path.normpath(OUT_PATH)}")


if __name__ == "__main__":
    main()
