"""Reference values for tests/precision_recall_test.ts: improved precision and recall (Kynkäänniemi et al.
2019, k = 3) computed independently with numpy and scipy.spatial.distance.cdist in float64.

Not run in CI: its output, tests/fixtures/precision_recall/reference.npz, is committed.
Run: /usr/bin/python3 tests/reference/precision_recall_reference.py

Definitions, written from the paper: the radius of a point of a set is its squared distance to its k-th
nearest neighbour in the set, itself excluded once (the (k+1)-th smallest of its row of the set's distance
matrix, whose diagonal is 0); a point is inside a set's manifold if its squared distance to some member is at
most (<=) that member's radius. Precision: generated points inside the real manifold; recall: real points
inside the generated manifold.

Cases (each stored as <case>_<name>):
- "gauss": numpy Gaussian features (real N(0, 1), generated N(0.2, 1.1^2)), 120 x 100 points in 64-d,
  stored as float32.
- "grid": coordinates in {0, 1, 2} (real) and {0, 1, 2, 3} (generated), 80 x 70 points in 8-d: many exact ties at the radii and duplicates
  (every distance is a small integer, exact in any summation order). Stored as float32.
- "hash": uniform features in 2048-d (the Inception pool size), 200 x 150 points, from an integer hash that
  the test recomputes (hash_features below), so only the results are stored. Distances concentrate in high
  dimension: many pairs lie close to a radius.
"""
import os
import numpy as np
from scipy.spatial.distance import cdist

K = 3
OUT = os.path.join(os.path.dirname(__file__), "..", "fixtures", "precision_recall", "reference.npz")


def hash_features(n, dim, seed):
    """uint32 hash of (seed, row, col) -> float32 in [0, 1): the same arithmetic as the test's TS copy."""
    i = np.arange(n, dtype=np.uint64)[:, None]
    k = np.arange(dim, dtype=np.uint64)[None, :]
    m = 0xFFFFFFFF
    h = (i * np.uint64(2654435761) + k * np.uint64(40503) + np.uint64(seed) * np.uint64(97)) & np.uint64(m)
    h ^= h >> np.uint64(16)
    h = (h * np.uint64(0x45D9F3B)) & np.uint64(m)
    h ^= h >> np.uint64(16)
    h = (h * np.uint64(0x45D9F3B)) & np.uint64(m)
    h ^= h >> np.uint64(16)
    return (h.astype(np.float64) / 2.0**32).astype(np.float32)


def radii(x):
    d = cdist(x, x, "sqeuclidean")
    return np.sort(d, axis=1)[:, K]  # index 0 is the point itself (or a duplicate): the k-th neighbour is at K


def inside(points, members, member_radii):
    return (cdist(points, members, "sqeuclidean") <= member_radii[None, :]).any(axis=1)


def case(name, real, fake, store_features):
    real64, fake64 = real.astype(np.float64), fake.astype(np.float64)
    r_real, r_fake = radii(real64), radii(fake64)
    fake_in_real = inside(fake64, real64, r_real)
    real_in_fake = inside(real64, fake64, r_fake)
    out = {
        f"{name}_radii_real": r_real,
        f"{name}_radii_fake": r_fake,
        f"{name}_fake_in_real": fake_in_real.astype(np.uint8),
        f"{name}_real_in_fake": real_in_fake.astype(np.uint8),
    }
    if store_features:
        out[f"{name}_real"] = real
        out[f"{name}_fake"] = fake
    print(
        f"{name}: {len(real)} real, {len(fake)} generated, dim {real.shape[1]}: "
        f"precision {fake_in_real.mean():.4f}, recall {real_in_fake.mean():.4f}"
    )
    return out


rng = np.random.default_rng(20261130)
arrays = {}
arrays.update(
    case(
        "gauss",
        rng.standard_normal((120, 64)).astype(np.float32),
        (0.2 + 1.1 * rng.standard_normal((100, 64))).astype(np.float32),
        True,
    )
)
arrays.update(
    case(
        "grid",
        rng.integers(0, 3, (80, 8)).astype(np.float32),
        rng.integers(0, 4, (70, 8)).astype(np.float32),
        True,
    )
)
real = hash_features(200, 2048, 1)
fake = np.float32(0.02) + hash_features(150, 2048, 2)  # float32 addition
arrays.update(case("hash", real, fake, False))
os.makedirs(os.path.dirname(OUT), exist_ok=True)
np.savez(OUT, **arrays)
print(f"wrote {os.path.normpath(OUT)} ({os.path.getsize(OUT)} bytes)")
