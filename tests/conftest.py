"""Shared fixtures: small simulated problems and brute-force (dense) references."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
from hypothesis import settings

# Property tests draw their examples from a fixed seed: CI runs are reproducible, and a
# failure seen once is seen every time (run with --hypothesis-seed=random to explore).
settings.register_profile("mixednn", derandomize=True, database=None)
settings.load_profile("mixednn")


def rel_diff(a, b) -> float:
    """Largest absolute difference of ``a`` from ``b``, relative to the largest ``|b|``."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-300))


def rbf(A: np.ndarray, B: np.ndarray, ell: float = 1.0) -> np.ndarray:
    """Gaussian kernel: a cheap PSD operator for tests that do not need an NTK."""
    d2 = ((A[:, None, :] - B[None, :, :]) ** 2).sum(-1)
    return np.exp(-0.5 * d2 / ell**2)


def dense_fit(y, X, K, t, reml=True, f0=None):
    """Brute-force REML/ML quantities at t with scipy.linalg.expm and explicit inverses."""
    n = y.shape[0]
    f0 = np.zeros(n) if f0 is None else f0
    yc = y - f0
    V = scipy.linalg.expm(t * K)
    # expm(-tK) rather than inv(V): V's condition number is exp(t lam_max)
    Vi = scipy.linalg.expm(-t * K)
    p = X.shape[1]
    if p:
        XtVi = X.T @ Vi
        beta = np.linalg.solve(XtVi @ X, XtVi @ yc)
    else:
        beta = np.empty(0)
    r = yc - X @ beta
    rss = r @ Vi @ r
    dof = n - p if reml else n
    s2 = rss / dof
    # det(exp(tK)) = exp(t tr K) is an identity (Jacobi's formula), and slogdet of a
    # dense expm with condition number exp(t lam_max) is not accurate to 1e-8.
    logdet_v = t * np.trace(K)
    del V
    llf = -0.5 * (dof * np.log(2 * np.pi * s2) + dof + logdet_v)
    if reml and p:
        llf -= 0.5 * np.linalg.slogdet(X.T @ Vi @ X)[1]
    u = (np.eye(n) - scipy.linalg.expm(-t * K)) @ r
    return {"beta": beta, "scale": s2, "llf": llf, "blup": u, "resid_target": r}


class RandomFeatureKernel:
    """K = Phi Phi^T / m with random Fourier features: well conditioned for n << m."""

    def __init__(self, d: int, m: int = 600, seed: int = 0, freq: float = 3.0):
        rng = np.random.default_rng(seed)
        self.W = freq * rng.normal(size=(d, m))
        self.b = rng.uniform(0, 2 * np.pi, size=m)
        self.m = m

    def features(self, A: np.ndarray) -> np.ndarray:
        return np.sqrt(2.0) * np.cos(A @ self.W + self.b)

    def __call__(self, A: np.ndarray, B: np.ndarray) -> np.ndarray:
        return self.features(A) @ self.features(B).T / self.m


@pytest.fixture()
def one_torch_thread():
    """Small torch ops on one thread: many tiny products are slower multi-threaded, and
    pathologically so on a loaded machine (timings only; results do not depend on it)."""
    import torch

    k = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(k)


@pytest.fixture(scope="session")
def sim_small():
    """n = 120 regression with two fixed effects and a smooth nonlinear signal."""
    rng = np.random.default_rng(20261123)
    n = 120
    Z = rng.normal(size=(n, 3))
    X = np.column_stack([np.ones(n), rng.normal(size=n)])
    signal = np.sin(1.5 * Z[:, 0]) + 0.5 * Z[:, 1] ** 2 - 0.5
    y = X @ np.array([1.0, 0.5]) + signal + 0.4 * rng.normal(size=n)
    return {"y": y, "X": X, "Z": Z, "n": n}
