"""Reference values for tests/fid_test.ts, computed independently with numpy/scipy in float64.

Not run in CI: its output, tests/fixtures/fid_reference.json, is committed.
Run: python3 tests/reference/fid_reference.py > tests/fixtures/fid_reference.json

FID follows pytorch-fid's calculate_frechet_distance step for step (scipy.linalg.sqrtm of the product, eps on
the diagonals if that is not finite, real part kept); IS follows openai/improved-gan (splits at i*N//splits,
np.std with ddof 0). Logits are rounded to float32 first, as the TS side takes a Float32Array.
"""
import json
import warnings

import numpy as np
from scipy import linalg

warnings.simplefilter("ignore", DeprecationWarning)  # sqrtm's disp argument, deprecated in scipy 1.16
rng = np.random.default_rng(20240917)


def pytorch_fid(mu1, sigma1, mu2, sigma2, eps=1e-6):
    diff = mu1 - mu2
    covmean, _ = linalg.sqrtm(sigma1 @ sigma2, disp=False)
    offset = 0.0
    if not np.isfinite(covmean).all():
        offset = eps
        covmean = linalg.sqrtm((sigma1 + eps * np.eye(len(mu1))) @ (sigma2 + eps * np.eye(len(mu1))))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            return None, offset  # pytorch-fid raises ValueError("Imaginary component ...")
        covmean = covmean.real
    fid = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean)
    return float(fid), offset


def eig_fid(mu1, sigma1, mu2, sigma2):
    # A second route: eigenvalues of the (non-symmetric) product, negative real parts counted as 0.
    lam = np.linalg.eigvals(sigma1 @ sigma2).real
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.sqrt(np.maximum(lam, 0)).sum())


def nuclear_fid(x1, x2):
    # For sample covariances Σ = AᵀA/(n−1) (A centred): the nonzero eigenvalues of Σ1Σ2 are the squared
    # singular values of A1A2ᵀ/(n−1), so Tr√(Σ1Σ2) is its nuclear norm, with no √ of round-off.
    a1, a2 = x1 - x1.mean(0), x2 - x2.mean(0)
    diff = x1.mean(0) - x2.mean(0)
    tr = np.linalg.svd(a1 @ a2.T, compute_uv=False).sum() / (len(x1) - 1)
    t1, t2 = (a1 * a1).sum() / (len(x1) - 1), (a2 * a2).sum() / (len(x2) - 1)
    return float(diff @ diff + t1 + t2 - 2 * tr)


def wishart(dim, m):
    a = rng.standard_normal((dim, m)) * rng.uniform(0.2, 2.0, size=(dim, 1))
    return a @ a.T / m


fid_cases = []
# General non-commuting, full-rank covariances.
for dim in (8, 64):
    mu1, mu2 = rng.standard_normal(dim), rng.standard_normal(dim) * 0.5 + 0.3
    s1, s2 = wishart(dim, 3 * dim), wishart(dim, 2 * dim)
    fid, offset = pytorch_fid(mu1, s1, mu2, s2)
    fid_cases.append({"name": f"general {dim}", "dim": dim, "mu1": mu1.tolist(), "sigma1": s1.ravel().tolist(),
                      "mu2": mu2.tolist(), "sigma2": s2.ravel().tolist(), "fid": fid, "offset": offset,
                      "fid_eig": eig_fid(mu1, s1, mu2, s2)})

# Sample covariances from fewer samples than dims (rank 39 of 64): a singular product. scipy's sqrtm is
# erratic here (pytorch-fid may raise, "fid": null). "fid_exact" is the value to match; "fid_eig" also counts
# the √ of round-off eigenvalues of the null space (≈ 1e-8 relative here). The samples are stored
# (3 decimals, exact in both languages); the TS side computes the statistics, checked by fingerprints.
dim = 64
x1 = np.round(rng.standard_normal((40, dim)) @ rng.standard_normal((dim, dim)) * 0.3, 3)
x2 = np.round(rng.standard_normal((40, dim)) @ rng.standard_normal((dim, dim)) * 0.3 + 0.1, 3)
mu1, mu2 = x1.mean(0), x2.mean(0)
s1, s2 = np.cov(x1, rowvar=False), np.cov(x2, rowvar=False)
fid, offset = pytorch_fid(mu1, s1, mu2, s2)
fid_cases.append({"name": "rank 39 of 64", "dim": dim, "x1": x1.ravel().tolist(), "x2": x2.ravel().tolist(),
                  "mu1_sum": float(mu1.sum()), "sigma1_trace": float(np.trace(s1)),
                  "sigma1_fro": float(np.linalg.norm(s1)), "sigma1_rank": int(np.linalg.matrix_rank(s1)),
                  "fid": fid, "offset": offset, "fid_eig": eig_fid(mu1, s1, mu2, s2),
                  "fid_exact": nuclear_fid(x1, x2)})


def inception_score(preds, splits):
    scores = []
    n = preds.shape[0]
    for i in range(splits):
        part = preds[i * n // splits:(i + 1) * n // splits]
        py = part.mean(0, keepdims=True)
        kl = np.sum(part * (np.log(part) - np.log(py)), 1).mean()
        scores.append(np.exp(kl))
    return float(np.mean(scores)), float(np.std(scores)), [float(s) for s in scores]


is_cases = []
for n, classes, splits, scale in [(103, 10, 10, 3.0), (50, 7, 1, 1.0), (64, 20, 3, 6.0)]:
    logits = (rng.standard_normal((n, classes)) * scale).astype(np.float32)
    z = logits.astype(np.float64)
    preds = np.exp(z - z.max(1, keepdims=True))
    preds /= preds.sum(1, keepdims=True)
    mean, std, scores = inception_score(preds, splits)
    is_cases.append({"n": n, "classes": classes, "splits": splits, "logits": z.ravel().tolist(),
                     "mean": mean, "std": std, "scores": scores})

print(json.dumps({"fid": fid_cases, "inception_score": is_cases}))
