"""Reference outputs for tests/inception_test.ts: the FID Inception-v3 (pytorch-fid's port of the 2015-12-05
TensorFlow graph) built here in PyTorch from the architecture description, independent of lib/metrics/inception.ts.

Not run in CI: its output, tests/fixtures/inception_parity.json, is committed.
Run: python3 tests/reference/inception_reference.py > tests/fixtures/inception_parity.json &&
  deno fmt tests/fixtures/inception_parity.json

Weights come from a formula (no weights file): parameter `name`, flat index i (PyTorch layout) →
u = hash32(i, fnv1a32(name)) → uniform on [-1, 1), scaled per kind (see `formula`), computed in float64 and
rounded to float32 — the same bits as syntheticInceptionStateDict() in lib/metrics/inception.ts. The network
then runs in float64, so the fixture holds the float32 network's exact outputs up to float64 rounding.

Inputs are pytorch-fid's: x = uint8 / 255 in [0, 1], NCHW; F.interpolate(size=(299, 299), mode="bilinear",
align_corners=False); 2x - 1; the network; global average pool → pool3 (2048); fc → logits (1008).
"""
import json
import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)
torch.set_num_threads(2)

# ---------------------------------------------------------------------------------------------------- weights

M32 = 0xFFFFFFFF


def fnv1a32(s):
    h = 0x811C9DC5
    for b in s.encode("utf-8"):
        h = ((h ^ b) * 0x01000193) & M32
    return h


def hash32(i, seed):
    """i: uint32 array; golden-ratio spread plus seed, then murmur3's finalizer, all mod 2**32."""
    x = (i.astype(np.uint64) * 0x9E3779B1 + seed) & M32
    x ^= x >> 16
    x = (x * 0x85EBCA6B) & M32
    x ^= x >> 13
    x = (x * 0xC2B2AE35) & M32
    x ^= x >> 16
    return x


def uniform(n, name):
    return (hash32(np.arange(n, dtype=np.uint64), fnv1a32(name)) >> 8).astype(np.float64) / 8388608.0 - 1.0


def formula(name, shape):
    u = uniform(int(np.prod(shape)), name)
    field = name.rsplit(".", 1)[1]
    if name == "fc.weight":
        v = u * math.sqrt(3 / 2048)
    elif name == "fc.bias":
        v = 0.1 * u
    elif name.endswith(".conv.weight"):
        v = u * math.sqrt(6 / (shape[1] * shape[2] * shape[3]))
    elif field == "weight":
        v = 1 + 0.25 * u
    elif field in ("bias", "running_mean"):
        v = 0.2 * u
    elif field == "running_var":
        v = 1 + 0.5 * u
    else:
        raise ValueError(name)
    return v.astype(np.float32).reshape(shape)


def images(n, h, w, name):
    """[n, h, w, 3] integers 0..255 (hash32's top byte), NHWC like the .npz files."""
    return (hash32(np.arange(n * h * w * 3, dtype=np.uint64), fnv1a32(name)) >> 24).astype(np.float64).reshape(
        n, h, w, 3)


# ---------------------------------------------------------------------------------------------------- network


class Conv(nn.Module):
    """Conv (no bias) -> BatchNorm(eps=0.001) -> ReLU, state dict names `conv.*` and `bn.*`."""

    def __init__(self, cin, cout, k, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


def avg3(x):
    # The FID blocks' average pool leaves the zero padding out of the mean.
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class BlockA(nn.Module):  # Mixed_5b/5c/5d (35x35)

    def __init__(self, cin, pool):
        super().__init__()
        self.branch1x1 = Conv(cin, 64, 1)
        self.branch5x5_1 = Conv(cin, 48, 1)
        self.branch5x5_2 = Conv(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = Conv(cin, 64, 1)
        self.branch3x3dbl_2 = Conv(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = Conv(96, 96, 3, padding=1)
        self.branch_pool = Conv(cin, pool, 1)

    def forward(self, x):
        return torch.cat([
            self.branch1x1(x),
            self.branch5x5_2(self.branch5x5_1(x)),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            self.branch_pool(avg3(x)),
        ], 1)


class BlockB(nn.Module):  # Mixed_6a: 35x35 -> 17x17

    def __init__(self, cin):
        super().__init__()
        self.branch3x3 = Conv(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = Conv(cin, 64, 1)
        self.branch3x3dbl_2 = Conv(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = Conv(96, 96, 3, stride=2)

    def forward(self, x):
        return torch.cat([
            self.branch3x3(x),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            F.max_pool2d(x, 3, stride=2),
        ], 1)


class BlockC(nn.Module):  # Mixed_6b..6e (17x17), factorized 7x7

    def __init__(self, cin, c7):
        super().__init__()
        self.branch1x1 = Conv(cin, 192, 1)
        self.branch7x7_1 = Conv(cin, c7, 1)
        self.branch7x7_2 = Conv(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = Conv(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = Conv(cin, c7, 1)
        self.branch7x7dbl_2 = Conv(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = Conv(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = Conv(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = Conv(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = Conv(cin, 192, 1)

    def forward(self, x):
        d = x
        for i in range(1, 6):
            d = getattr(self, f"branch7x7dbl_{i}")(d)
        return torch.cat([
            self.branch1x1(x),
            self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x))),
            d,
            self.branch_pool(avg3(x)),
        ], 1)


class BlockD(nn.Module):  # Mixed_7a: 17x17 -> 8x8

    def __init__(self, cin):
        super().__init__()
        self.branch3x3_1 = Conv(cin, 192, 1)
        self.branch3x3_2 = Conv(192, 320, 3, stride=2)
        self.branch7x7x3_1 = Conv(cin, 192, 1)
        self.branch7x7x3_2 = Conv(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = Conv(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = Conv(192, 192, 3, stride=2)

    def forward(self, x):
        b = x
        for i in range(1, 5):
            b = getattr(self, f"branch7x7x3_{i}")(b)
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), b, F.max_pool2d(x, 3, stride=2)], 1)


class BlockE(nn.Module):  # Mixed_7b (average pool) and Mixed_7c (max pool), 8x8

    def __init__(self, cin, max_pool):
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = Conv(cin, 320, 1)
        self.branch3x3_1 = Conv(cin, 384, 1)
        self.branch3x3_2a = Conv(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = Conv(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = Conv(cin, 448, 1)
        self.branch3x3dbl_2 = Conv(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = Conv(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = Conv(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = Conv(cin, 192, 1)

    def forward(self, x):
        b = self.branch3x3_1(x)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        p = F.max_pool2d(x, 3, stride=1, padding=1) if self.max_pool else avg3(x)
        return torch.cat([
            self.branch1x1(x),
            self.branch3x3_2a(b),
            self.branch3x3_2b(b),
            self.branch3x3dbl_3a(d),
            self.branch3x3dbl_3b(d),
            self.branch_pool(p),
        ], 1)


class FidInception(nn.Module):

    def __init__(self):
        super().__init__()
        self.Conv2d_1a_3x3 = Conv(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = Conv(32, 32, 3)
        self.Conv2d_2b_3x3 = Conv(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = Conv(64, 80, 1)
        self.Conv2d_4a_3x3 = Conv(80, 192, 3)
        self.Mixed_5b = BlockA(192, 32)
        self.Mixed_5c = BlockA(256, 64)
        self.Mixed_5d = BlockA(288, 64)
        self.Mixed_6a = BlockB(288)
        self.Mixed_6b = BlockC(768, 128)
        self.Mixed_6c = BlockC(768, 160)
        self.Mixed_6d = BlockC(768, 160)
        self.Mixed_6e = BlockC(768, 192)
        self.Mixed_7a = BlockD(768)
        self.Mixed_7b = BlockE(1280, max_pool=False)
        self.Mixed_7c = BlockE(2048, max_pool=True)
        self.fc = nn.Linear(2048, 1008)

    @staticmethod
    def preprocess(x01):
        """[0, 1] NCHW -> 299x299 in [-1, 1], as pytorch-fid (resize_input, normalize_input)."""
        x = F.interpolate(x01, size=(299, 299), mode="bilinear", align_corners=False)
        return 2 * x - 1

    def forward(self, x01):
        x = self.preprocess(x01)
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, 3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, 3, stride=2)
        for name in ["5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"]:
            x = getattr(self, f"Mixed_{name}")(x)
        pool3 = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return pool3, self.fc(pool3)


def g9(a):
    """Float list with 9 significant digits (float32 round-trips)."""
    return [float(f"{v:.9g}") for v in np.asarray(a, dtype=np.float64).ravel()]


def main():
    net = FidInception().eval()
    state = {}
    for k, v in net.state_dict().items():
        if k.endswith("num_batches_tracked"):
            continue
        state[k] = torch.from_numpy(formula(k, tuple(v.shape)).astype(np.float64))
    missing, unexpected = net.load_state_dict(state, strict=False)
    assert not unexpected and all(k.endswith("num_batches_tracked") for k in missing), (missing, unexpected)

    def nchw01(img):
        return torch.from_numpy(img).permute(0, 3, 1, 2) / 255

    out = {
        "note": "python3 tests/reference/inception_reference.py; torch " + torch.__version__ + ", float64",
        "params": [{"name": k, "shape": list(v.shape)} for k, v in state.items()],
        "param_count": sum(v.numel() for v in state.values()),
        # A check of the weight formula alone: the first values (float32, exact) and the sum of a few tensors.
        "spot": [{
            "name": k,
            "first": [float(v) for v in state[k].numpy().ravel()[:5]],
            "sum": float(state[k].numpy().sum()),
        } for k in [
            "Conv2d_1a_3x3.conv.weight", "Mixed_6b.branch7x7dbl_3.bn.running_var",
            "Mixed_7c.branch3x3dbl_3b.conv.weight", "fc.weight", "fc.bias"
        ]],
    }

    # Resize alone: odd sizes, up- and downsampling on different axes; NHWC out.
    resize = []
    for (h, w, oh, ow) in [(5, 7, 11, 4), (6, 6, 3, 13), (32, 32, 299, 299)]:
        img = images(1, h, w, f"resize{h}x{w}")
        y = F.interpolate(torch.from_numpy(img).permute(0, 3, 1, 2), size=(oh, ow), mode="bilinear",
                          align_corners=False).permute(0, 2, 3, 1).numpy()
        case = {"name": f"resize{h}x{w}", "in": [h, w], "out": [oh, ow]}
        if oh * ow <= 200:
            case["expected"] = g9(y)
        else:  # too big for the fixture: a strided subsample, rows ::13, columns ::17
            case["stride"] = [13, 17]
            case["expected"] = g9(y[:, ::13, ::17, :])
        resize.append(case)
    out["resize"] = resize

    cases = []
    with torch.no_grad():
        for (n, h, w) in [(2, 32, 32), (1, 299, 299)]:
            name = f"images{n}x{h}x{w}"
            pool3, logits = net(nchw01(images(n, h, w, name)))
            cases.append({"name": name, "shape": [n, h, w, 3], "pool3": g9(pool3), "logits": g9(logits)})
    out["cases"] = cases
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
