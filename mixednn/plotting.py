"""Figures for :class:`~mixednn.results.MixedLMNTKResults`.

Three diagnostic plots, each returning a :class:`matplotlib.figure.Figure`:

* :func:`plot_profile` -- profiled REML (or ML) log-likelihood against training
  time t, with the estimate, the profile confidence interval and t = 0;
* :func:`plot_spectrum` -- the NTK eigenvalues against the spectral losses at
  t_hat: the *spectral loss decorrelation* that defines the REML time
  (``docs/model.md`` section 2);
* :func:`plot_fit` -- observed against fitted values and residuals against
  fitted values.

Figures are built with :class:`matplotlib.figure.Figure` directly, not through
``pyplot``: nothing is registered with a GUI backend, so the functions work
headless, never leak open figures, and a figure returned in a notebook cell is
shown exactly once.  Each function also accepts existing axes (``ax=`` /
``axes=``) to draw into a larger figure.

The numbers behind :func:`plot_spectrum` are available without plotting:
:func:`spectral_losses` and :func:`decorrelation`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from .interfaces import FitResults, check_fit
from .prediction import check_alpha
from .profile import check_complete_spectrum, profile_frame

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["spectral_losses", "decorrelation", "plot_profile", "plot_spectrum", "plot_fit"]

_BLUE = "#1f5a99"
_ORANGE = "#d2691e"
_GREY = "0.55"
_GREEN = "#2e7d32"


def _new_figure(figsize: tuple[float, float], ncols: int = 1):
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, list(axes)


# --------------------------------------------------------------------- spectral losses
def spectral_losses(res: FitResults, t: float | None = None) -> pd.DataFrame:
    """Per-eigen-direction residual losses at training time ``t``.

    In the rotated basis ``y~ = U^T (y - f0)`` the model is weighted least
    squares with weights ``w_i = exp(-t lam_i)``.  The spectral loss of
    direction i is ``s_i = w_i (y~_i - x~_i^T beta(t))^2``, the part of the
    (REML-projected) residual sum of squares that direction i still holds after
    training for time t.  Under the model ``E[s_i] = s2 e_i`` with
    ``e_i = 1 - h_i`` for REML (``h_i = w_i x~_i^T (X~^T W X~)^{-1} x~_i``, the
    leverage of direction i) and ``e_i = 1`` for ML.

    Parameters
    ----------
    res : MixedLMNTKResults
        A fitted model; its method (REML or ML) is used.
    t : float, optional
        Training time (>= 0); the estimate ``res.t`` by default.

    Returns
    -------
    pandas.DataFrame
        One row per eigenvalue, ascending: ``lam``, ``loss`` (``s_i``),
        ``scaled_loss`` (``s_i / s2(t)``), ``expected`` (``e_i``) and
        ``excess`` (``s_i / s2(t) - e_i``).  ``s2(t)`` is the profiled residual
        variance at t (RSS/(n-p) under REML, RSS/n under ML).

    Examples
    --------
    >>> import numpy as np, mixednn as mn
    >>> rng = np.random.default_rng(0)
    >>> Z = rng.normal(size=(80, 2)); y = np.sin(2 * Z[:, 0]) + 0.3 * rng.normal(size=80)
    >>> res = mn.MixedLMNTK(y, np.ones((80, 1)), Z, network=mn.MLP(depth=1)).fit()
    >>> sl = spectral_losses(res)
    >>> round(float(sl["excess"].sum()), 8)  # REML: sum_i s_i / s2 = n - p = sum_i e_i
    0.0
    """
    check_fit(res)
    t = res.t if t is None else float(t)
    if not (t >= 0 and math.isfinite(t)):
        raise ValueError(f"t must be a finite number >= 0, got {t}")
    prof = res.likelihood_profile
    check_complete_spectrum(prof, "the spectral losses (plot_spectrum, decorrelation)")
    pt = prof.point(t, res.reml)
    if not (np.isfinite(pt.scale) and pt.scale > 0):
        raise ValueError(f"the profiled residual variance is not positive at t = {t:g}")
    lam = prof.lam
    w = np.exp(-t * lam)
    r = prof.y_rot - prof.X_rot @ pt.beta if prof.p else prof.y_rot
    s = w * r * r
    if res.reml and prof.p:
        # leverage of each direction in the weighted rotated regression
        Xw = prof.X_rot * np.sqrt(w)[:, None]
        h = np.einsum("ij,ij->i", Xw, np.linalg.solve(pt.xwx, Xw.T).T)
        expected = 1.0 - h
    else:
        expected = np.ones_like(lam)
    scaled = s / pt.scale
    return pd.DataFrame({"lam": lam, "loss": s, "scaled_loss": scaled,
                         "expected": expected, "excess": scaled - expected})


def decorrelation(res: FitResults, t: float | None = None) -> float:
    """Eigenvalue-weighted mean excess spectral loss, zero at the REML/ML estimate.

    ``D(t) = sum_i lam_i (s_i / s2(t) - e_i) / sum_i lam_i``, with ``s_i`` and
    ``e_i`` as in :func:`spectral_losses`.  It equals ``2 l'(t) / tr(K)``
    (twice the profiled score, per unit trace), so ``D(t_hat) = 0`` at an
    interior estimate: the remaining loss is uncorrelated with the NTK
    spectrum.  ``D > 0``: large-eigenvalue directions still hold more loss than
    the noise accounts for (train longer); ``D < 0``: they have been overfitted.

    Parameters
    ----------
    res : MixedLMNTKResults
    t : float, optional
        Training time; ``res.t`` by default.

    Returns
    -------
    float

    Examples
    --------
    >>> import numpy as np, mixednn as mn
    >>> rng = np.random.default_rng(0)
    >>> Z = rng.normal(size=(80, 2)); y = np.sin(2 * Z[:, 0]) + 0.3 * rng.normal(size=80)
    >>> res = mn.MixedLMNTK(y, np.ones((80, 1)), Z, network=mn.MLP(depth=1)).fit()
    >>> abs(decorrelation(res)) < 1e-6 < decorrelation(res, t=res.t / 10)
    True
    """
    sl = spectral_losses(res, t)
    lam = sl["lam"].to_numpy()
    total = float(lam.sum())
    if not total > 0:
        raise ValueError("the kernel has no positive eigenvalue")
    return float(lam @ sl["excess"].to_numpy() / total)


def _binned(x: np.ndarray, y: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Equal-count bins along x (sorted): geometric-mean x, mean y and its SE per bin."""
    order = np.argsort(x)
    groups = [g for g in np.array_split(order, min(bins, x.size)) if g.size]
    xc = np.array([math.exp(float(np.mean(np.log(x[g])))) for g in groups])
    ym = np.array([float(np.mean(y[g])) for g in groups])
    se = np.array([float(np.std(y[g], ddof=1) / math.sqrt(g.size)) if g.size > 1 else np.nan
                   for g in groups])
    return xc, ym, se


def plot_spectrum(res: FitResults, *, bins: int = 25, points: bool = True,
                  compare_zero: bool = True, ax: "Axes | None" = None,
                  figsize: tuple[float, float] = (6.4, 4.4)) -> "Figure":
    """NTK eigenvalues against spectral losses: the decorrelation that defines t_hat.

    Each eigen-direction i of the kernel has an eigenvalue ``lam_i`` (how fast
    gradient flow learns it) and a spectral loss ``s_i = y~_i^2 exp(-t lam_i)``
    (what is left of the REML-projected residual along it, see
    :func:`spectral_losses`).  The plot shows ``s_i / s2`` against ``lam_i``
    (log axes) as binned means with +-2 SE bars, the individual directions as
    faint points, the model's expectation ``e_i`` (= 1 up to leverage), and for
    contrast the untrained losses at t = 0.  At the REML estimate the binned
    means are flat: the remaining loss is uncorrelated with the spectrum
    (``sum_i lam_i (s_i / s2 - e_i) = 0``, the score equation).  At t = 0 the
    large-eigenvalue directions hold the signal and their losses rise with
    ``lam``.

    Parameters
    ----------
    res : MixedLMNTKResults
    bins : int
        Number of equal-count bins along the (positive) eigenvalues.
    points : bool
        Draw the individual directions as faint points.
    compare_zero : bool
        Also draw the binned losses of the untrained model (t = 0).
    ax : matplotlib.axes.Axes, optional
        Axes to draw into; a new figure by default.
    figsize : tuple of float
        Size of a new figure, in inches.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import numpy as np, mixednn as mn
    >>> rng = np.random.default_rng(0)
    >>> Z = rng.normal(size=(80, 2)); y = np.sin(2 * Z[:, 0]) + 0.3 * rng.normal(size=80)
    >>> res = mn.MixedLMNTK(y, np.ones((80, 1)), Z, network=mn.MLP(depth=1)).fit()
    >>> fig = plot_spectrum(res); fig.axes[0].get_xscale()
    'log'
    """
    check_fit(res)
    if not isinstance(bins, (int, np.integer)) or isinstance(bins, bool) or bins < 2:
        raise ValueError(f"bins must be an integer >= 2, got {bins!r}")
    if ax is None:
        fig, (ax,) = _new_figure(figsize)
    else:
        fig = ax.figure
    sl = spectral_losses(res)
    lam = sl["lam"].to_numpy()
    tol = float(lam.max()) * max(lam.size, 1) * np.finfo(float).eps
    keep = lam > tol
    n_zero = int((~keep).sum())
    x = lam[keep]
    y = sl["scaled_loss"].to_numpy()[keep]
    e = sl["expected"].to_numpy()[keep]
    # losses are squared Gaussians: a log y-axis needs strictly positive values
    floor = max(float(np.median(y)) * 1e-6, np.finfo(float).tiny)
    if points:
        ax.scatter(x, np.maximum(y, floor), s=4, color=_BLUE, alpha=0.12, lw=0,
                   rasterized=True, label="directions $s_i/\\hat\\sigma^2$")
    if compare_zero and res.t > 0:
        y0 = spectral_losses(res, 0.0)["scaled_loss"].to_numpy()[keep]
        xc0, ym0, _ = _binned(x, y0, bins)
        ax.plot(xc0, ym0, "s--", color=_GREY, ms=3.5, lw=1.0,
                label="binned mean at $t=0$ (untrained)")
    xc, ym, se = _binned(x, y, bins)
    ym = np.maximum(ym, floor)  # a longer t can leave leading bins below the log floor
    lo = np.minimum(np.maximum(ym - 2 * se, floor), ym)
    ax.errorbar(xc, ym, yerr=[ym - lo, 2 * se], fmt="o-", color=_BLUE, ms=4, lw=1.4,
                capsize=2, label=f"binned mean at $\\hat t$ = {res.t:.4g} (±2 SE)")
    xe, em, _ = _binned(x, e, bins)
    ax.plot(xe, em, color=_ORANGE, lw=1.5, label="expected under the model ($e_i$)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    # the y-range follows the binned means (single squared residuals span decades)
    band = np.concatenate([lo, ym + 2 * se, em] + ([ym0] if compare_zero and res.t > 0 else []))
    band = band[np.isfinite(band) & (band > 0)]
    if band.size:
        ax.set_ylim(float(band.min()) / 8, float(band.max()) * 8)
    ax.set_xlabel("NTK eigenvalue $\\lambda_i$")
    ax.set_ylabel(f"spectral loss $s_i/\\hat\\sigma^2$ ({res.method})")
    d = decorrelation(res)
    note = (f"$\\sum\\lambda_i(s_i/\\hat\\sigma^2-e_i)/\\sum\\lambda_i$ = {d:.2g}"
            + (f"\n{n_zero} zero eigenvalue(s) not shown" if n_zero else ""))
    ax.text(0.02, 0.03, note, transform=ax.transAxes, fontsize=8, va="bottom",
            bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none"})
    ax.set_title("Spectral loss decorrelation")
    ax.legend(fontsize=8, loc="upper left")
    return fig


# ----------------------------------------------------------------------------- profile
def plot_profile(res: FitResults, *, num: int = 61, alpha: float = 0.05,
                 grid: Any = None, ax: "Axes | None" = None,
                 figsize: tuple[float, float] = (6.4, 4.4)) -> "Figure":
    """Profile REML (or ML) log-likelihood against training time t.

    The x-axis is log t; t = 0 (the untrained model, an ordinary linear model)
    cannot sit on it and is drawn as a dotted horizontal line at ``l(0)`` with a
    marker at the left edge.  The estimate ``t_hat`` is a vertical line, the
    profile-likelihood interval (``2 [l(t_hat) - l(t)] <= chi2_1(1 - alpha)``)
    a shaded band, and its cut-off a dashed horizontal line.

    Parameters
    ----------
    res : MixedLMNTKResults
    num : int
        Number of log-spaced grid points (ignored if ``grid`` is given).
    alpha : float
        1 - coverage of the interval.
    grid : array-like, optional
        Values of t > 0 to evaluate (see :meth:`MixedLMNTKResults.profile`).
    ax : matplotlib.axes.Axes, optional
    figsize : tuple of float

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import numpy as np, mixednn as mn
    >>> rng = np.random.default_rng(0)
    >>> Z = rng.normal(size=(80, 2)); y = np.sin(2 * Z[:, 0]) + 0.3 * rng.normal(size=80)
    >>> res = mn.MixedLMNTK(y, np.ones((80, 1)), Z, network=mn.MLP(depth=1)).fit()
    >>> fig = plot_profile(res); fig.axes[0].get_xscale()
    'log'
    """
    check_fit(res)
    alpha = check_alpha(alpha)
    if not isinstance(num, (int, np.integer)) or isinstance(num, bool) or num < 3:
        raise ValueError(f"num must be an integer >= 3, got {num!r}")
    choice = res.time_choice
    chosen = None
    est = res.estimate
    t_hat, llf_hat, lo, hi = res.t, res.llf, *res.t_conf_int(alpha)
    if not res.free_modes and not (choice.by_likelihood and (choice.rule == "reml") == res.reml):
        # t chosen by another rule (GCV, ...): draw the likelihood's own profile, its
        # maximum and interval (from the fit's record), and mark the chosen t beside them
        chosen = (choice.rule, res.t)
        est = choice.likelihood
        t_hat, llf_hat = est.t, est.llf
        lo, hi = res.likelihood_profile.profile_interval(est, res.reml, alpha)
    if ax is None:
        fig, (ax,) = _new_figure(figsize)
    else:
        fig = ax.figure
    if grid is None and t_hat > 0:
        # from where nothing is learned yet (the curve meets l(0)) to well past the CI
        lo_b, hi_b = est.search_bounds
        a = max(t_hat * 1e-3, lo_b)
        b = min(hi * 10 if math.isfinite(hi) else t_hat * 1e3, hi_b)
        extra = [t_hat]
        if chosen is not None and chosen[1] > 0:
            a, b = min(a, chosen[1] / 3), max(b, min(chosen[1] * 3, hi_b))
            extra.append(chosen[1])
        grid = np.sort(np.append(np.logspace(math.log10(a), math.log10(b), num), extra))
    prof = profile_frame(res.likelihood_profile, res.reml, t_hat, llf_hat, est.search_bounds,
                         (lo, hi) if grid is None else None, grid, num)
    pos = prof[prof["t"] > 0]
    if pos.empty:
        raise ValueError("the profile grid needs at least one t > 0 to draw on a log axis")
    l0 = float(res.likelihood_profile.loglike(0.0, res.reml))
    cut = llf_hat - 0.5 * float(stats.chi2.ppf(1 - alpha, 1))
    ax.plot(pos["t"], pos["llf"], "-", color=_BLUE, lw=1.8, label=f"profile {res.method} log-lik.")
    tmin, tmax = float(pos["t"].min()), float(pos["t"].max())
    ax.axhline(l0, color=_GREY, ls=":", lw=1.2, label=f"$t=0$ (untrained): {l0:.2f}")
    ax.plot([tmin], [l0], marker="<", color=_GREY, ms=8, clip_on=False, zorder=5)
    ax.axhline(cut, color=_ORANGE, ls="--", lw=1.0,
               label=f"$\\chi^2_1$ cut-off ({1 - alpha:.0%} CI)")
    right = hi if math.isfinite(hi) else tmax
    left = lo if lo > 0 else tmin
    ax.axvspan(left, right, color=_ORANGE, alpha=0.12,
               label=f"profile CI [{lo:.3g}, {'inf' if not math.isfinite(hi) else f'{hi:.3g}'}]")
    if t_hat > 0:
        ax.axvline(t_hat, color=_BLUE, ls="-", lw=1.0, alpha=0.8)
        ax.plot([t_hat], [llf_hat], "o", color=_BLUE, ms=6,
                label=f"$\\hat t$ = {t_hat:.4g}, $\\ell$ = {llf_hat:.2f}")
    else:
        ax.plot([tmin], [llf_hat], "o", color=_BLUE, ms=6, clip_on=False,
                label="$\\hat t$ = 0 (boundary)")
    if chosen is not None and chosen[1] > 0:
        ax.axvline(chosen[1], color=_GREEN, ls="-.", lw=1.4,
                   label=f"t chosen by {chosen[0].upper()} = {chosen[1]:.4g}")
    ax.set_xscale("log")
    ax.set_xlim(tmin, tmax)
    # keep the interesting part visible: do not let t -> large dominate the y-range
    top = llf_hat + 0.08 * max(llf_hat - min(l0, cut), 1.0)
    bottom = min(l0, cut) - 0.35 * max(llf_hat - min(l0, cut), 1.0)
    ax.set_ylim(bottom, top)
    ax.set_xlabel("training time $t$ (log scale)")
    ax.set_ylabel(f"profile {res.method} log-likelihood")
    ax.set_title("Profile likelihood of the training time")
    ax.legend(fontsize=8, loc="best")
    return fig


# --------------------------------------------------------------------------------- fit
def plot_fit(res: FitResults, *, smooth: bool = True,
             ax: "Sequence[Axes] | None" = None,
             axes: "Sequence[Axes] | None" = None,
             figsize: tuple[float, float] = (10.0, 4.2)) -> "Figure":
    """Observed against fitted values, and residuals against fitted values.

    Fitted values are ``X beta + f0 + u_hat`` (the trained network's training
    predictions), residuals ``y - fitted``.  The left panel has the identity
    line; the right panel a zero line and, with ``smooth=True``, a LOWESS curve
    (any trend left in the residuals is structure the model missed).

    Parameters
    ----------
    res : MixedLMNTKResults
    smooth : bool
        Add a LOWESS smoother to the residual panel.
    ax : sequence of two matplotlib.axes.Axes, optional
        Axes to draw the two panels into (observed vs fitted, residuals vs fitted),
        e.g. one row of ``fig.subplots(2, 2)``; a new figure by default.  The name
        every plot function shares.
    axes : sequence of two matplotlib.axes.Axes, optional
        The same as ``ax`` (its earlier name); give one of them.
    figsize : tuple of float

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import numpy as np, mixednn as mn
    >>> rng = np.random.default_rng(0)
    >>> Z = rng.normal(size=(80, 2)); y = np.sin(2 * Z[:, 0]) + 0.3 * rng.normal(size=80)
    >>> res = mn.MixedLMNTK(y, np.ones((80, 1)), Z, network=mn.MLP(depth=1)).fit()
    >>> len(plot_fit(res).axes)
    2
    """
    check_fit(res)
    if ax is not None and axes is not None:
        raise TypeError("give the two Axes as ax= or as axes=, not both")
    arg = "axes" if axes is not None else "ax"
    axes = ax if ax is not None else axes
    if axes is None:
        fig, axes = _new_figure(figsize, ncols=2)
    else:
        if not hasattr(axes, "__len__") or hasattr(axes, "figure"):
            raise TypeError(f"{arg} must be a sequence of two matplotlib Axes (one per "
                            f"panel), got {type(axes).__name__}")
        axes = list(np.ravel(np.asarray(axes, dtype=object)))
        if len(axes) != 2:
            raise ValueError(f"{arg} must hold exactly two Axes, got {len(axes)}")
        fig = axes[0].figure
    ax1, ax2 = axes
    y = np.asarray(res.model.endog, dtype=float)
    fit = res.fittedvalues.to_numpy()
    resid = y - fit
    n = y.size
    size = 10 if n <= 500 else 4
    alpha = 0.6 if n <= 500 else 0.25
    name = res.model.endog_names
    ax1.scatter(fit, y, s=size, alpha=alpha, color=_BLUE, lw=0, rasterized=True)
    lo = float(min(fit.min(), y.min()))
    hi = float(max(fit.max(), y.max()))
    ax1.plot([lo, hi], [lo, hi], color=_ORANGE, lw=1.2, label="y = fitted")
    r2 = 1 - float(np.sum(resid ** 2) / np.sum((y - y.mean()) ** 2)) if n > 1 else float("nan")
    ax1.set_xlabel("fitted")
    ax1.set_ylabel(f"observed: {name}")
    ax1.set_title(f"Observed vs fitted (in-sample $R^2$ = {r2:.3f})")
    ax1.legend(fontsize=8, loc="upper left")
    ax2.scatter(fit, resid, s=size, alpha=alpha, color=_BLUE, lw=0, rasterized=True)
    ax2.axhline(0.0, color=_ORANGE, lw=1.2)
    sd = math.sqrt(res.scale)
    for k in (-2, 2):
        ax2.axhline(k * sd, color=_GREY, ls=":", lw=1.0)
    if smooth and n >= 10:
        from statsmodels.nonparametric.smoothers_lowess import lowess

        sm = lowess(resid, fit, frac=0.3, it=1, delta=0.01 * float(np.ptp(fit)) or 0.0)
        ax2.plot(sm[:, 0], sm[:, 1], color="k", lw=1.4, label="LOWESS")
        ax2.legend(fontsize=8, loc="upper right")
    ax2.set_xlabel("fitted")
    ax2.set_ylabel("residual")
    ax2.set_title(f"Residuals vs fitted (dotted: $\\pm 2\\hat\\sigma$, $\\hat\\sigma$ = {sd:.3g})")
    return fig
