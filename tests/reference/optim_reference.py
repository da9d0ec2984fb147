"""Reference trajectories for tests/optim_test.ts: torch.optim.Adam and torch.optim.RAdam in float64.

Not run in CI: its output, tests/fixtures/optim_reference.json, is committed.
Run: /usr/bin/python3 tests/reference/optim_reference.py > tests/fixtures/optim_reference.json

Initial params and gradients are rounded to float32 first, so the kit (float32) starts from the same numbers.
Some entries of "conv.bias" get gradients of ~1e-8, where sqrt(v) is comparable to eps: there the two
optimizers' different eps placements change the update by tens of percent.
"""
import json
import sys
import math
import numpy as np
import torch

STEPS = 12
SHAPES = {"conv.weight": (4, 3), "conv.bias": (5,), "scale": ()}

rng = np.random.default_rng(20240607)


def f32(a):
    return np.asarray(a, dtype=np.float32).astype(np.float64)


params0 = {name: f32(rng.standard_normal(shape)) for name, shape in SHAPES.items()}
grads = []
for k in range(STEPS):
    w = rng.standard_normal(SHAPES["conv.weight"]) * (1 + 0.5 * math.sin(k))
    b = rng.standard_normal(5) * np.array([1e-8, 3e-8, 0.1, 0.1, 1.0])
    if k == 3:
        b[2] = 0.0  # a zero gradient entry
    s = rng.standard_normal(()) * 3
    grads.append({"conv.weight": f32(w), "conv.bias": f32(b), "scale": f32(s)})

# lr schedule for the override cases: config lr, then 3e-3 for steps 5..8, then config lr again.
OVERRIDE = [1e-2] * 4 + [3e-3] * 4 + [1e-2] * 4
CASES = [
    dict(name="adam", kind="adam", lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, lrs=None),
    dict(name="radam", kind="radam", lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, lrs=None),
    dict(name="adam_wd_lr", kind="adam", lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05,
         lrs=OVERRIDE),
    dict(name="radam_wd_lr", kind="radam", lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05,
         lrs=OVERRIDE),
    dict(name="radam_betas", kind="radam", lr=2e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.0, lrs=None),
]


def run(case):
    ps = {n: torch.tensor(v, dtype=torch.float64, requires_grad=True) for n, v in params0.items()}
    cls = torch.optim.Adam if case["kind"] == "adam" else torch.optim.RAdam
    opt = cls(list(ps.values()), lr=case["lr"], betas=case["betas"], eps=case["eps"],
              weight_decay=case["weight_decay"])
    after, lrs, rho = [], [], []
    rho_inf = 2 / (1 - case["betas"][1]) - 1
    for k in range(STEPS):
        lr = case["lrs"][k] if case["lrs"] else case["lr"]
        for g in opt.param_groups:
            g["lr"] = lr
        for n, p in ps.items():
            p.grad = torch.tensor(grads[k][n], dtype=torch.float64)
        opt.step()
        t = k + 1
        b2 = case["betas"][1]
        rho.append(rho_inf - 2 * t * b2**t / (1 - b2**t))
        lrs.append(lr)
        after.append({n: p.detach().numpy().reshape(-1).tolist() for n, p in ps.items()})
    out = {k: v for k, v in case.items() if k != "lrs"}
    out["betas"] = list(case["betas"])
    out["lr_per_step"] = lrs
    out["rho_t"] = rho
    out["params_after"] = after
    return out


json.dump({
    "generator": "tests/reference/optim_reference.py",
    "torch_version": torch.__version__,
    "shapes": {n: list(s) for n, s in SHAPES.items()},
    "params0": {n: v.reshape(-1).tolist() for n, v in params0.items()},
    "grads": [{n: v.reshape(-1).tolist() for n, v in g.items()} for g in grads],
    "cases": [run(c) for c in CASES],
}, sys.stdout, indent=1)
print()
