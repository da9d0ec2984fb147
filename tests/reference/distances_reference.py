"""Reference values for tests/distances_test.ts, computed independently with numpy/scipy in float64.

Not run in CI: its output, tests/fixtures/distances_reference.json, is committed.
Run: python3 tests/reference/distances_reference.py > tests/fixtures/distances_reference.json

Points are rounded to float32 first, so the TS side (Float32Array) sees exactly the same values.
"""
import json
import numpy as np
from scipy.spatial.distance import cdist
from scipy.stats import wasserstein_distance

rng = np.random.default_rng(20240601)


def f32(x):
    return np.asarray(x, dtype=np.float32).astype(np.float64)


def energy(a, b, statistic):
    # Mean pairwise Euclidean distances; V keeps the zero diagonal in the within-set means, U drops it.
    n, m = len(a), len(b)
    xy = cdist(a, b).mean()
    saa, sbb = cdist(a, a).sum(), cdist(b, b).sum()
    if statistic == "V":
        xx, yy = saa / n**2, sbb / m**2
    else:
        xx, yy = saa / (n * (n - 1)), sbb / (m * (m - 1))
    return 2 * xy - xx - yy


def sliced(a, b, dirs):
    dirs = dirs / np.linalg.norm(dirs, axis=1, keepdims=True)
    return float(np.mean([wasserstein_distance(a @ t, b @ t) for t in dirs]))


cases = []
# 1-D: W1 via scipy, sizes equal and different, with ties.
for n, m in [(7, 7), (7, 11), (13, 5)]:
    a = f32(rng.standard_normal(n))
    b = f32(rng.standard_normal(m) * 1.5 + 0.3)
    if n == 13:
        a[3] = a[5]  # a tie
    cases.append({"kind": "w1", "a": a.tolist(), "b": b.tolist(), "w1": wasserstein_distance(a, b)})

# Energy distance (V and U) and sliced W1 with fixed directions, in 2-D and 3-D, sizes different.
for dim, n, m in [(2, 9, 13), (2, 20, 20), (3, 8, 15)]:
    a = f32(rng.standard_normal((n, dim)))
    b = f32(rng.standard_normal((m, dim)) * np.array([0.5, 2.0, 1.0][:dim]) + 0.7)
    dirs = f32(rng.standard_normal((5, dim)))
    cases.append({
        "kind": "nd",
        "dim": dim,
        "a": a.ravel().tolist(),
        "b": b.ravel().tolist(),
        "directions": dirs.ravel().tolist(),
        "energy_v": energy(a, b, "V"),
        "energy_u": energy(a, b, "U"),
        "sliced_w1": sliced(a, b, dirs),
    })

print(json.dumps({"cases": cases}, indent=1))
