"""The default rule for t: the likelihood's time, unless the data reject it for prediction.

``fit()`` (``t_method="auto"``) estimates t by REML (or ML) and then asks one question:
*is REML's time so much shorter than the prediction-error optimum that the model
``V = s2 exp(tK)`` cannot explain it?*  Under the model, REML and GCV estimate the same
kind of time and GCV's prediction-error estimate at REML's t is close to its minimum.
On real data (``docs/stopping.md``) the likelihood can hold t down by orders of
magnitude, because the prior variance along the leading NTK directions grows like
``exp(t lam_j)`` and real signals do not; then GCV at REML's t is far above its minimum.

The check
---------
The statistic is GCV's relative excess at the likelihood's time,

    E = GCV(t_lik) / min_t GCV(t) - 1     if argmin GCV > t_lik,   else 0,

both optimised on one log grid of t.  Its null distribution is simulated from the
fitted model in the rotated basis, ``y~* = X~ beta + sqrt(s2 exp(t_lik lam)) z``.  Both
criteria are invariant to ``X~ beta`` (GLS fixed effects) and to the scale of y, so the
null depends on ``t_lik`` alone and the draws are ``exp(t_lik lam / 2) z``; all draws
and all grid points are evaluated with a few matrix products (O(m B T) for m
directions, B draws, T grid points, plus O(p B T m) for p fixed effects).  With a
low-rank basis the directions outside it (``K = 0``, weight 1) enter through their
simulated sufficient statistics.

GCV chooses t instead only when both hold: the excess is larger than ``min_excess``
(default 0.05, the tolerance of ``docs/stopping.md``: GCV estimates that the
likelihood's time costs more than 5% of the prediction error) and the
parametric-bootstrap p-value is at most ``alpha`` (default 0.01).  Otherwise the
likelihood's t stands, unchanged.  So under the model the default is REML with
probability at least about ``1 - alpha`` (measured: 0-2% switches at n = 30-300), and
``res.auto_check`` records the statistic and its p-value either way.

GCV's own time is not used when it would leave fewer than ``max(2, n / 100)`` residual
degrees of freedom (near interpolation, where predictions at new points are unstable),
or when it is not identified (GCV keeps falling until every direction is learned,
``t lam_min > 30``).  REML's time having been rejected, the fit is then REML with free
leading modes (``free_modes="auto"``, :mod:`mixednn.freemodes`: the k leading directions
unpenalised, k by GCV across k, t by REML on the rest), which needs a full
eigendecomposition and REML; otherwise (a low-rank basis, or ML) the likelihood's time
is kept and the reason says so.  In the benchmark this happened on the 2,000-row
diamonds subsamples, where GCV's time interpolated (held-out error 570-12,400 times the
oracle's) and free modes were within 3% of it.

The 5% threshold is checked first, so the bootstrap runs only when it matters; the
whole check costs about 0.02-0.2 s at n = 200-4,000 (``benchmarks/bench_stopping.py``).

Why GCV: of the prediction-error rules from the one decomposition
(:mod:`mixednn.stopping`), GCV had the best worst case in the benchmark, costs
O(n p^2) per t, and needs no random folds; exact leave-one-out was within 0.3% of it
in the median but worse on bikeshare.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .profile import SpectralProfile, TimeEstimate
from .smoother import SmootherData
from .stopping import GCV, choose_time, leaves_residual_df

__all__ = ["AutoCheck", "excess_statistic", "null_draws", "auto_time", "AUTO_OPTIONS",
           "AUTO_ALPHA", "AUTO_NSIM", "AUTO_MIN_EXCESS", "GRAM_MAX"]

#: The options of the default rule (``fit(t_options={...})``).
AUTO_OPTIONS = ("alpha", "nsim", "min_excess", "seed", "points_per_decade")
#: Defaults of the check (``fit(t_options={"alpha": ..., "nsim": ..., "seed": ...})``).
AUTO_ALPHA = 0.01
AUTO_NSIM = 199
AUTO_MIN_EXCESS = 0.05
#: Exponents above this (t_lik * lam_max) would overflow the simulated draws; such a
#: likelihood time has learned the leading directions completely and is not checked.
_MAX_EXPONENT = 600.0
#: GCV's t beyond which every direction is learned (t lam_min > this): "train to
#: convergence", where t itself is not identified.
_LEARNED = 30.0
#: Largest m p^2 for which the per-direction outer products x_i x_i^T are stacked (one
#: matrix product gives X~^T W X~ on the whole grid); above it, one product per t.
GRAM_MAX = 20_000_000
#: GCV's minimum below this fraction of its value at t = 0: the residuals vanish (a
#: degenerate fit), so GCV's own time is not used.
_DEGENERATE = 1e-10
#: Grid points where X~^T W X~ is this close to singular are left out of the check.
_MIN_RCOND = 1e-10


@dataclass(frozen=True)
class AutoCheck:
    """What the default rule found (``res.auto_check``).

    Attributes
    ----------
    rule : str
        ``"reml"``/``"ml"`` (the likelihood's time stands), ``"gcv"``, or
        ``"free_modes"`` (REML rejected and GCV's own time unusable: REML with free
        leading modes, :mod:`mixednn.freemodes`).
    t_likelihood, t_gcv : float
        The likelihood's and GCV's times (refined searches).
    llf_likelihood : float
        The maximised REML (or ML) log-likelihood, at ``t_likelihood``.
    excess : float
        The observed statistic E (grid optimum; 0 when GCV's time is not longer).
    pvalue : float
        Parametric-bootstrap p-value of E under the fitted model (1 when E = 0; NaN when
        the excess was below ``min_excess`` and no simulation was needed).
    nsim, alpha : int, float
    reason : str
        One line for the summary.
    """

    rule: str
    t_likelihood: float
    llf_likelihood: float
    t_gcv: float
    excess: float
    pvalue: float
    nsim: int
    alpha: float
    reason: str

    @property
    def switched(self) -> bool:
        """True when the likelihood's t was replaced (by GCV, or free modes)."""
        return self.rule in ("gcv", "free_modes")


def _grid(profile, points_per_decade: int = 8) -> np.ndarray:
    lo, hi = profile.search_bounds()
    n_pts = max(int(math.ceil(math.log10(hi / lo) * points_per_decade)) + 1, 8)
    return np.concatenate([[0.0], np.geomspace(lo, hi, n_pts)])


def excess_statistic(lam: np.ndarray, X: np.ndarray, Y: np.ndarray, trace: float, nobs: int,
                     grid: np.ndarray, reml: bool = True,
                     rest: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """The statistic E for many responses at once.

    Parameters
    ----------
    lam : ndarray (m,)
        Eigenvalues of the directions in the basis.
    X : ndarray (m, p)
        Rotated fixed-effects design.
    Y : ndarray (m, B)
        Rotated responses, one per column.
    trace : float
        ``tr K`` (the likelihood's ``t tr K`` term).
    nobs : int
        n; ``n - m`` directions outside the basis have ``K = 0`` (weight 1).
    grid : ndarray (T,)
        Values of t, increasing.
    reml : bool
        REML (True) or ML likelihood for ``t_lik``.
    rest : (XX, XY, YY), optional
        Sufficient statistics of the directions outside the basis: ``X_c^T X_c``
        (p, p), ``X_c^T Y_c`` (p, B) and ``Y_c^T Y_c`` (B,).

    Returns
    -------
    ndarray (B,)
        ``GCV(t_lik) / min GCV - 1`` where GCV's grid minimum lies at a longer time than
        the likelihood's grid maximum, else 0.
    """
    m, p = X.shape
    T = grid.shape[0]
    W = np.exp(-np.outer(grid, lam))                      # (T, m)
    WW = np.vstack([W, W * W])                            # weights and squared weights
    yWy, yW2y = np.split(WW @ (Y * Y), 2)                 # (T, B) each
    sw = W.sum(axis=1)
    n_out = nobs - m
    if rest is not None:
        yWy = yWy + rest[2]
        yW2y = yW2y + rest[2]
        sw = sw + n_out
    with np.errstate(all="ignore"):
        if p:
            if m * p * p <= GRAM_MAX:
                XXo = (X[:, :, None] * X[:, None, :]).reshape(m, p * p)  # rows x_i x_i^T
                XX, XX2 = np.split((WW @ XXo).reshape(-1, p, p), 2)
            else:  # bounded memory: one p x p product per grid point
                XX, XX2 = np.split(np.stack([(X * w[:, None]).T @ X for w in WW]), 2)
            XY, XY2 = np.split(np.stack([WW @ (X[:, [i]] * Y) for i in range(p)], axis=1),
                               2)                                              # (T, p, B)
            if rest is not None:
                XX, XX2 = XX + rest[0], XX2 + rest[0]
                XY, XY2 = XY + rest[1], XY2 + rest[1]
            # where the weights have underflowed for most directions, X~^T W X~ is
            # singular in floating point and both criteria are noise: left out
            ev = np.linalg.eigvalsh(XX)
            valid = (ev[:, 0] > _MIN_RCOND * ev[:, -1]) & (ev[:, -1] > 0)
            XX = np.where(valid[:, None, None], XX, np.eye(p))
            beta = np.linalg.solve(XX, XY)                                     # (T, p, B)
            rss = yWy - np.einsum("tpb,tpb->tb", beta, XY)
            e2 = (yW2y - 2 * np.einsum("tpb,tpb->tb", beta, XY2)
                  + np.einsum("tpb,tpq,tqb->tb", beta, XX2, beta))
            trM = sw - np.einsum("tii->t", np.linalg.solve(XX, XX2))
            logdet = np.linalg.slogdet(XX)[1]
        else:
            rss, e2, trM, logdet = yWy, yW2y, sw, np.zeros(T)
            valid = np.ones(T, dtype=bool)
        # near interpolation (GCV's own guard in the fit) is left out as well
        valid &= trM >= max(2.0, 0.01 * nobs)
        dof = nobs - p if reml else nobs
        ll = -0.5 * (dof * np.log(rss) + (grid * trace)[:, None]
                     + (logdet[:, None] if reml else 0.0))
        ll = np.where(np.isfinite(ll) & valid[:, None], ll, -np.inf)
        gcv = nobs * np.maximum(e2, 0.0) / trM[:, None] ** 2
        gcv = np.where(np.isfinite(gcv) & valid[:, None], gcv, np.inf)
    cols = np.arange(Y.shape[1])
    i_lik = np.argmax(ll, axis=0)
    i_gcv = np.argmin(gcv, axis=0)
    g_min = gcv[i_gcv, cols]
    with np.errstate(all="ignore"):
        ex = gcv[i_lik, cols] / g_min - 1.0
    ex = np.where((i_gcv > i_lik) & np.isfinite(ex) & (g_min > 0), ex, 0.0)
    return ex


def null_draws(profile: SpectralProfile, t: float, nsim: int, rng: np.random.Generator,
               n_out: int) -> tuple[np.ndarray, tuple | None]:
    """Rotated responses under the fitted model (beta = 0, s2 = 1: E is invariant to both).

    Returns the draws in the basis (m x nsim) and, for a low-rank basis, the simulated
    sufficient statistics ``(X_c^T X_c, X_c^T Y_c, Y_c^T Y_c)`` of the ``n_out``
    directions outside it (None otherwise).
    """
    lam = profile.lam
    Y = np.exp(0.5 * t * lam)[:, None] * rng.standard_normal((lam.shape[0], nsim))
    if profile.rest_gram is None:
        return Y, None
    p = profile.p
    XX = profile.rest_gram[:p, :p]
    if p:
        # X_c^T e ~ N(0, X_c^T X_c); ||e||^2 = ||P_X e||^2 + chi2(n_out - p)
        ev, evec = np.linalg.eigh(XX)
        root = evec * np.sqrt(np.maximum(ev, 0.0))
        g = rng.standard_normal((p, nsim))
        XY = root @ g
        rank = int(np.sum(ev > ev.max() * 1e-12)) if ev.size and ev.max() > 0 else 0
        YY = np.sum(g[p - rank:] ** 2, axis=0) if rank else np.zeros(nsim)
        YY = YY + rng.chisquare(max(n_out - rank, 1), nsim) * (n_out - rank > 0)
    else:
        XY = np.empty((0, nsim))
        YY = rng.chisquare(n_out, nsim) if n_out > 0 else np.zeros(nsim)
    return Y, (XX, XY, YY)


def auto_time(data: SmootherData, reml: bool = True, *, alpha: float = AUTO_ALPHA, nsim: int = AUTO_NSIM,
              min_excess: float = AUTO_MIN_EXCESS, seed: int = 0,
              points_per_decade: int | None = None) -> tuple[TimeEstimate, AutoCheck]:
    """Choose t by the default rule (module notes).

    Parameters
    ----------
    data : mixednn.smoother.SmootherData
    reml : bool
        The likelihood whose time is checked (REML or ML).
    alpha : float
        Level of the check; GCV replaces the likelihood's t when the bootstrap p-value is
        at most ``alpha``.
    nsim : int
        Number of simulated responses.
    min_excess : float
        GCV replaces the likelihood's t only when its excess at that t is also larger
        than this (default 0.05: GCV estimates that the likelihood's time costs more
        than 5% of the prediction error).  Statistically clear but small excesses leave
        the likelihood's time in place.
    seed : int
        Seed of the simulation (fits are reproducible).
    points_per_decade : int, optional
        Passed to the refined searches.

    Returns
    -------
    (TimeEstimate, AutoCheck)
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha of the auto rule must be in (0, 1), got {alpha!r}")
    if isinstance(nsim, bool) or not isinstance(nsim, (int, np.integer)) or nsim < 19:
        raise ValueError(f"nsim of the auto rule must be an integer >= 19, got {nsim!r}")
    lik = "reml" if reml else "ml"
    ppd = {"points_per_decade": points_per_decade} if points_per_decade else {}
    est = choose_time(data, lik, reml, **ppd)
    prof = data.profile
    lam = prof.lam
    n_out = data.nobs - lam.shape[0] if data.complement == "identity" else 0
    lam_max = float(lam.max()) if lam.size else 0.0

    def keep(reason: str, t_g: float = math.nan, ex: float = 0.0, pv: float = 1.0):
        return est, AutoCheck(lik, est.t, est.llf, t_g, ex, pv, int(nsim), float(alpha), reason)

    if not prof.complete_spectrum:
        return keep("not run: GCV's trace tr exp(-tK) needs every eigenvalue of K, which "
                    "decomposition='lanczos' does not compute (fit with 'eigh' or "
                    "'tridiagonal' to run the check)", ex=math.nan, pv=math.nan)
    if est.at_upper:
        return keep(f"{lik.upper()}'s t is at the upper end of the search; not checked")
    if est.t * lam_max > _MAX_EXPONENT:
        return keep(f"{lik.upper()}'s t has learned the leading directions; not checked")
    grid = _grid(prof)
    rest_obs = None
    if n_out:
        p = prof.p
        rg = prof.rest_gram
        rest_obs = (rg[:p, :p], rg[:p, p:p + 1], np.array([rg[p, p]]))
    ex_obs = float(excess_statistic(lam, prof.X_rot, prof.y_rot[:, None], prof.trace,
                                    data.nobs, grid, reml, rest_obs)[0])
    if ex_obs <= 0:
        return keep(f"GCV does not prefer a longer time than {lik.upper()}")
    if ex_obs <= min_excess:
        return keep(f"GCV's excess at {lik.upper()}'s t is {100 * ex_obs:.3g}%, at most "
                    f"{100 * min_excess:g}%", ex=ex_obs, pv=math.nan)
    rng = np.random.default_rng(seed)
    Y, rest = null_draws(prof, est.t, int(nsim), rng, n_out)
    ex_null = excess_statistic(lam, prof.X_rot, Y, prof.trace, data.nobs, grid, reml, rest)
    pv = float((1 + np.sum(ex_null >= ex_obs)) / (nsim + 1))
    gcv = choose_time(data, "gcv", reml, **ppd)
    if pv > alpha:
        return keep(f"GCV's excess at {lik.upper()}'s t ({100 * ex_obs:.3g}%) is within what "
                    f"the model explains (p = {pv:.2g})", gcv.t, ex_obs, pv)
    rejected = (f"{lik.upper()}'s t = {est.t:.4g} rejected for prediction: GCV's error there "
                f"is {100 * ex_obs:.3g}% above its minimum, more than the model explains "
                f"(parametric bootstrap p = {pv:.2g}, {nsim} draws)")
    pos = lam[lam > lam_max * lam.shape[0] * np.finfo(float).eps] if lam_max > 0 else lam[:0]
    why = None
    if gcv.at_upper or (pos.size and gcv.t * float(pos.min()) > _LEARNED):
        # GCV keeps falling until every direction is learned: t is not identified
        why = "keeps falling until every direction is learned (t not identified)"
    elif not leaves_residual_df(data, gcv):
        why = "nearly interpolates"
    elif not gcv.value > _DEGENERATE * GCV(data).value(0.0):
        # a degenerate criterion: free modes would reproduce the responses as well
        return keep(f"{rejected}; GCV's own t drives the residuals to zero (rows duplicated "
                    f"with identical responses, or a kernel that interpolates), so "
                    f"{lik.upper()}'s t is kept", gcv.t, ex_obs, pv)
    if why is None:
        return gcv, AutoCheck("gcv", est.t, est.llf, gcv.t, ex_obs, pv, int(nsim),
                              float(alpha), rejected + "; t by GCV")
    if reml and data.complement == "none":
        # the REML-based alternative: the leading directions free, REML on the rest
        return est, AutoCheck("free_modes", est.t, est.llf, gcv.t, ex_obs, pv, int(nsim),
                              float(alpha), f"{rejected}; GCV's own t {why}, so t by REML "
                              "with free leading modes (k by GCV across k)")
    return keep(f"{rejected}; GCV's own t {why} and free modes need a full REML "
                f"eigendecomposition, so {lik.upper()}'s t is kept", gcv.t, ex_obs, pv)
