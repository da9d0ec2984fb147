"""The iCT training step in PyTorch, for `deno task bench:step` (tasks/bench_step.ts) to time beside the kit's.

Not run in CI. Needs Debian's python3-torch (1.13): run with /usr/bin/python3.

    /usr/bin/python3 tests/reference/torch_step.py --config '<NcsnppConfig JSON>' --batch B --threads T

The network is the independent NCSN++ of tests/reference/networks_reference.py (EDM's SongUNet, written from
EDM, not from the kit) at the configuration given, in float32, with dropout before every block's conv1 as
EDM's UNetBlock has it. One step is what the kit's trainer does (lib/train/step.ts): the teacher
f_θ(x + σ_i z, σ_i) under no_grad, the student f_θ(x + σ_{i+1} z, σ_{i+1}) forward and backward, the
λ-weighted Pseudo-Huber loss (c = 0.00054·√d), and one RAdam update (lr 1e-4). Noise levels are iCT's first
curriculum stage (N = 11, Karras σ, lognormal pair sampling), as the kit's bench times.

Protocol (so the two can be interleaved on the same cores): after `--warmup` steps it prints one JSON line
{"ready": true, ...}; then each line "step" on stdin runs one step and prints {"seconds": s, "loss": l};
"quit" or end of input exits.
"""

import argparse
import json
import math
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import networks_reference as ref  # noqa: E402

ref.DTYPE = torch.float32  # the reference computes in float64 for fixtures; training runs in float32


class LazyParams:
    """Parameters made on first use, by name and shape (the names and shapes the reference asks for), kept
    as torch-layout leaves. Values follow EDM's initializers closely enough for a finite, non-denormal step."""

    def __init__(self, generator):
        self.g = generator
        self.tensors = {}

    def _make(self, name, shape, fan_in, fan_out):
        if name in self.tensors:
            t = self.tensors[name]
            if list(t.shape) != list(shape):
                raise ValueError(f"{name}: asked for {list(shape)}, made as {list(t.shape)}")
            return t
        if name == "map_noise.freqs":
            t = torch.randn(shape, generator=self.g) * 0.02
            t.requires_grad_(False)
        elif name.endswith(".bias"):
            t = torch.zeros(shape).requires_grad_(True)
        elif ".norm" in name or name.endswith("_norm.weight"):
            t = torch.ones(shape).requires_grad_(True)
        else:
            zero = any(s in name for s in (".conv1.", ".proj.", "_aux_conv."))
            gain = 1e-5 if zero else 1.0
            bound = gain * math.sqrt(6 / (fan_in + fan_out))
            t = ((torch.rand(shape, generator=self.g) * 2 - 1) * bound).requires_grad_(True)
        self.tensors[name] = t
        return t

    def vector(self, name, n):
        return self._make(name, [n], n, n)

    def dense(self, name, fan_in, fan_out):
        return self._make(name, [fan_out, fan_in], fan_in, fan_out)

    def conv(self, name, k, cin, cout):
        return self._make(name, [cout, cin, k, k], cin * k * k, cout * k * k)

    def trainable(self):
        return [t for t in self.tensors.values() if t.requires_grad]


def with_dropout(p):
    """The reference's conv, with dropout on the input of every block's conv1 (EDM's UNetBlock)."""
    plain = ref.conv

    def conv(P, name, x, *args, **kw):
        if name.endswith(".conv1") and p > 0:
            x = F.dropout(x, p=p, training=True)
        return plain(P, name, x, *args, **kw)

    return conv


SIGMA_MIN, SIGMA_MAX, SIGMA_DATA, RHO = 0.002, 80.0, 0.5, 7.0


def karras_sigmas(n):
    i = torch.arange(n, dtype=torch.float64)
    a, b = SIGMA_MIN ** (1 / RHO), SIGMA_MAX ** (1 / RHO)
    return (a + i / (n - 1) * (b - a)) ** RHO


def consistency_fn(P, cfg, x, sigma):
    """f_θ(x, σ) = c_skip·x + c_out·F_θ(c_in·x, c_noise) with σ_min-shifted c_skip/c_out (CM Eq. 2)."""
    s = sigma.to(torch.float32)[:, None, None, None]
    c_skip = SIGMA_DATA ** 2 / ((s - SIGMA_MIN) ** 2 + SIGMA_DATA ** 2)
    c_out = (s - SIGMA_MIN) * SIGMA_DATA / torch.sqrt(s ** 2 + SIGMA_DATA ** 2)
    c_in = 1 / torch.sqrt(s ** 2 + SIGMA_DATA ** 2)
    c_noise = (0.25 * torch.log(sigma)).to(torch.float32)
    return c_skip * x + c_out * ref.ncsnpp(P, cfg, c_in * x, c_noise)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True, help="the kit's NcsnppConfig as JSON")
    ap.add_argument("--batch", type=int, required=True)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--warmup", type=int, default=1)
    args = ap.parse_args()
    cfg = json.loads(args.config)
    if cfg.get("family") != "ncsnpp":
        raise SystemExit(f"torch_step.py runs NCSN++ only, not {cfg.get('family')}")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    ref.conv = with_dropout(cfg["dropout"])

    P = LazyParams(torch.Generator().manual_seed(1))
    b, r, ch = args.batch, cfg["resolution"], cfg["channels"]
    with torch.no_grad():  # make every parameter once
        consistency_fn(P, cfg, torch.zeros(b, ch, r, r), torch.full((b,), 1.0, dtype=torch.float64))
    opt = torch.optim.RAdam(P.trainable(), lr=1e-4)
    sigmas = karras_sigmas(11)
    weights = 1 / (sigmas[1:] - sigmas[:-1])
    # Lognormal pair sampling (iCT Sec. 3.5): P(i) ∝ erf((ln σ_{i+1} − P_mean)/(√2 P_std)) − erf((ln σ_i − …)).
    cdf = torch.erf((torch.log(sigmas) + 1.1) / (math.sqrt(2) * 2.0))
    probs = cdf[1:] - cdf[:-1]
    dim = ch * r * r
    c = 0.00054 * math.sqrt(dim)
    x = torch.clamp(torch.randn(b, ch, r, r) * 0.5, -1, 1)

    def step():
        idx = torch.multinomial(probs, b, replacement=True)
        lo, hi, lam = sigmas[idx], sigmas[idx + 1], weights[idx].to(torch.float32)
        z = torch.randn(b, ch, r, r)
        seed = int(torch.randint(0, 2 ** 31 - 1, ()).item())
        torch.manual_seed(seed)  # the same dropout masks for the teacher and the student
        with torch.no_grad():
            teacher = consistency_fn(P, cfg, x + lo.to(torch.float32)[:, None, None, None] * z, lo)
        torch.manual_seed(seed)
        student = consistency_fn(P, cfg, x + hi.to(torch.float32)[:, None, None, None] * z, hi)
        d = torch.sqrt(((student - teacher) ** 2).flatten(1).sum(1) + c * c) - c
        loss = (lam * d).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss)

    for _ in range(args.warmup):
        step()
    n_params = sum(t.numel() for t in P.trainable())
    print(json.dumps({"ready": True, "torch": torch.__version__, "threads": torch.get_num_threads(),
                      "params": n_params}), flush=True)
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "quit":
            break
        if cmd != "step":
            raise SystemExit(f"unknown command {cmd!r}")
        t = time.perf_counter()
        loss = step()
        print(json.dumps({"seconds": time.perf_counter() - t, "loss": loss}), flush=True)


if __name__ == "__main__":
    main()
