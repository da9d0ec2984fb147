"""Reference values for tests/math_test.ts, computed independently with numpy/scipy in float64.

Not run in CI: its output, tests/fixtures/math_reference.json, is committed.
Run: python3 tests/reference/math_reference.py > tests/fixtures/math_reference.json
"""
import json
import numpy as np
from scipy.stats import norm

SIGMA_MIN, SIGMA_MAX, RHO, SIGMA_DATA = 0.002, 80.0, 7.0, 0.5


def karras(n):
    ramp = np.linspace(0, 1, n)
    return (SIGMA_MIN ** (1 / RHO) + ramp * (SIGMA_MAX ** (1 / RHO) - SIGMA_MIN ** (1 / RHO))) ** RHO


def lognormal_pmf(sigmas, p_mean=-1.1, p_std=2.0):
    # Normal CDF of ln(sigma) (log-space), not erf: a different route to the same masses.
    upper = norm.sf((np.log(sigmas[:-1]) - p_mean) / p_std)  # P(ln s > ln sigma_i)
    mass = upper - norm.sf((np.log(sigmas[1:]) - p_mean) / p_std)
    return mass / mass.sum()


def c_skip(s):
    return SIGMA_DATA**2 / ((s - SIGMA_MIN) ** 2 + SIGMA_DATA**2)


def c_out(s):
    return SIGMA_DATA * (s - SIGMA_MIN) / np.sqrt(s**2 + SIGMA_DATA**2)


def c_in(s):
    return 1 / np.sqrt(s**2 + SIGMA_DATA**2)


rng = np.random.default_rng(0)
x = rng.standard_normal((3, 2, 2, 3))
y = x + np.array([1e-3, 0.3, 10.0])[:, None, None, None] * rng.standard_normal((3, 2, 2, 3))
c = 0.00054 * np.sqrt(12)
sq = ((x - y) ** 2).reshape(3, -1).sum(1)

sig11 = karras(11)
sig1281 = karras(1281)
p1281 = lognormal_pmf(sig1281)
probe_sigmas = [0.002, 0.01, 0.1, 0.5, 1.0, 10.0, 80.0]
c_noise = np.array([-1.5537, 0.0, 0.4, 1.0955])  # 0.25 ln(sigma) at sigma = 0.002, 1, ~4.95, 80
freqs = np.array([0.013, -0.027, 0.002])
pos_dim = 7
half = pos_dim // 2
omega = np.exp(-np.log(10000) * np.arange(half) / half)
pos_in = np.array([250 * np.log(0.002), 0.0, 250 * np.log(80.0)])
pos = np.concatenate([np.cos(pos_in[:, None] * omega), np.sin(pos_in[:, None] * omega), np.zeros((3, 1))], 1)
ang = 2 * np.pi * c_noise[:, None] * freqs[None, :]

print(json.dumps({
    "karras11": sig11.tolist(),
    "karras1281_probe": {str(i): sig1281[i] for i in [1, 2, 640, 1279]},
    "lognormal11": lognormal_pmf(sig11).tolist(),
    "lognormal1281_probe": {str(i): p1281[i] for i in [0, 100, int(p1281.argmax()), 1279]},
    "lognormal1281_argmax": int(p1281.argmax()),
    "lognormal11_shifted_pmean_plus": lognormal_pmf(sig11, p_mean=1.1).tolist(),
    "ict_weighting11": (1 / np.diff(sig11)).tolist(),
    "param_sigmas": probe_sigmas,
    "c_skip": [c_skip(s) for s in probe_sigmas],
    "c_out": [c_out(s) for s in probe_sigmas],
    "c_in": [c_in(s) for s in probe_sigmas],
    "c_noise_fourier": [0.25 * np.log(s) for s in probe_sigmas],
    "c_noise_positional": [250 * np.log(s + 1e-44) for s in probe_sigmas],
    "metric_x": x.ravel().tolist(),
    "metric_y": y.ravel().tolist(),
    "metric_shape": list(x.shape),
    "metric_c": c,
    "squared_l2": sq.tolist(),
    "pseudo_huber": (np.sqrt(sq + c * c) - c).tolist(),
    "fourier_c_noise": c_noise.tolist(),
    "fourier_freqs": freqs.tolist(),
    "fourier_features": np.concatenate([np.sin(ang), np.cos(ang)], 1).ravel().tolist(),
    "positional_input": pos_in.tolist(),
    "positional_dim": pos_dim,
    "positional_embedding": pos.ravel().tolist(),
}, indent=1))
