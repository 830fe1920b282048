"""Joint REML/ML estimation of the training time t and the group parameters theta.

The profiled criterion of :class:`mixednn.groupprofile.GroupedProfile` is maximised
over ``(t, theta)`` by L-BFGS-B with its analytic gradient, inside lme4's box: ``t >= 0``
and the diagonal elements of each relative factor ``T >= 0`` (the off-diagonal ones
free).  The boundary is reached exactly, not approached: a variance of 0 or t = 0 is
an estimate, reported as such (:class:`mixednn.exceptions.BoundaryFitWarning`, as
lme4's "boundary (singular) fit").  The start is the network-only REML time with the
groups-only theta (itself from lme4's start ``theta = 1``); a fit that ends at t = 0 is
restarted from a small positive t, and a variance that ends at 0 from a positive value,
so that a boundary estimate is a maximum and not where the optimiser stopped.  A few
Newton steps polish the quasi-Newton optimum; standard errors of ``(t, theta)`` come
from the observed information (a central difference of the analytic gradient).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import scipy.optimize
import scipy.stats

from .groupprofile import GroupedProfile, GroupPoint

__all__ = ["GroupFit", "fit_groups", "profile_theta_at", "t_profile_interval",
           "sd_profile_intervals"]


@dataclass(frozen=True)
class GroupFit:
    """The joint estimate (frozen).

    Attributes
    ----------
    point : GroupPoint
        Everything at the estimate.
    reml : bool
    estimate_t : bool
        False for a model without a network (t is not a parameter).
    converged : bool
    message : str
        The optimiser's message.
    n_evals : int
        Likelihood evaluations.
    cov_params : ndarray
        Covariance of ``(t, theta)`` (t first when estimated) from the observed
        information; NaN where a parameter is on its boundary.
    t_on_boundary : bool
        The estimate is t = 0.
    singular_terms : list of str
        Terms with a zero variance or a perfect correlation (lme4's ``isSingular``).
    """

    point: GroupPoint
    reml: bool
    estimate_t: bool
    converged: bool
    message: str
    n_evals: int
    cov_params: np.ndarray = field(repr=False)
    t_on_boundary: bool
    singular_terms: list

    @property
    def t(self) -> float:
        return self.point.t

    @property
    def theta(self) -> np.ndarray:
        return self.point.theta

    @property
    def llf(self) -> float:
        return self.point.llf

    @property
    def t_se(self) -> float:
        return float(np.sqrt(self.cov_params[0, 0])) if self.estimate_t else float("nan")


def fit_groups(profile: GroupedProfile, reml: bool = True, *, t_start: float | None = None,
               theta_start: np.ndarray | None = None) -> GroupFit:
    """Maximise the profiled REML (or ML) criterion over ``(t, theta)``.

    Parameters
    ----------
    profile : GroupedProfile
    reml : bool
    t_start : float, optional
        A starting time (the network-only REML time); ignored without a network.
    theta_start : ndarray, optional
        Starting theta (lme4's: 1 on diagonals, 0 elsewhere, by default).

    Returns
    -------
    GroupFit
    """
    gs = profile.structure
    th0 = gs.theta_start() if theta_start is None else np.asarray(theta_start, dtype=float)
    lower = gs.theta_lower()
    est_t = profile.has_network
    lam_max = float(profile.lam.max()) if est_t and profile.lam.size else 1.0
    ts = max(float(t_start or 0.0), 1.0 / max(lam_max, 1e-300)) if est_t else 1.0
    evals = [0]

    def unpack(x: np.ndarray) -> tuple[float, np.ndarray]:
        return (max(x[0], 0.0) * ts, x[1:]) if est_t else (0.0, x)

    def objective(x: np.ndarray) -> tuple[float, np.ndarray]:
        evals[0] += 1
        t, th = unpack(x)
        value, g = _negative_criterion(profile, t, th, reml)
        grad = g if est_t else g[1:]
        if est_t:
            grad[0] *= ts
        return value, grad

    # theta is left unbounded: the likelihood depends on each T only through T T^T, so a
    # column's sign is free and is normalised afterwards (diagonal >= 0).  A bound at 0
    # would trap the optimiser there: a zero variance is a stationary point by symmetry.
    bounds = ([(0.0, None)] if est_t else []) + [(None, None)] * th0.size
    if est_t and theta_start is None:
        # theta of the groups alone (t = 0: one q x q product, then O(q^3) per step)
        th0 = fit_groups(profile.with_network_fixed_at_zero(), reml).theta
        th0 = np.where(np.isfinite(lower) & (th0 == 0), 0.1, th0)
    best = _minimize(objective, np.r_[1.0, th0] if est_t else th0, bounds)
    if est_t and (best.x[0] <= 0 or t_start is None):
        # at t = 0 (or without a guide): make sure a small positive t is not better
        other = _minimize(objective, np.r_[0.05, th0], bounds)
        if other.fun < best.fun:
            best = other
    # a variance that ended at 0: restart it from a positive value to make sure 0 is a maximum
    best = _restart_zero_variances(objective, best, bounds, lower, int(est_t), margin=1e-10)
    t, th = unpack(best.x)
    th = gs.normalise_theta(th)
    th = np.where(np.isfinite(lower) & (np.abs(th) < 1e-10), 0.0, th)
    if est_t and t < 1e-10 * ts:
        t = 0.0
    t, th, hess, grad = _newton_polish(profile, t, th, reml, est_t, lower)
    point = profile.point(t, th, reml)
    free = _free(t, th, est_t, lower)
    cov = _inverse_information(hess, free)
    # converged: every free parameter's gradient, scaled by the parameter, is negligible
    x_hat = np.r_[t, th] if est_t else th
    step = np.abs(grad[free]) * np.maximum(np.abs(x_hat[free]), 1e-3)
    converged = bool(np.all(step < 1e-5 * max(1.0, abs(point.llf))))
    return GroupFit(point, reml, est_t, converged, str(best.message), evals[0],
                    cov, bool(est_t and t == 0.0), gs.boundary(th))


def profile_theta_at(profile: GroupedProfile, t: float, reml: bool,
                     theta_start: np.ndarray) -> tuple[float, np.ndarray]:
    """The criterion at a fixed t with theta profiled out: ``(max_theta l(t, theta),
    theta)``, from ``theta_start`` (and from a zero variance restarted at 0.5, so that a
    variance that is 0 at the fit's t can come back)."""
    def objective(th: np.ndarray) -> tuple[float, np.ndarray]:
        value, g = _negative_criterion(profile, t, th, reml)
        return value, g[1:]

    bounds = [(None, None)] * theta_start.size
    best = _minimize(objective, np.asarray(theta_start, dtype=float), bounds)
    best = _restart_zero_variances(objective, best, bounds, profile.structure.theta_lower(), 0)
    return -float(best.fun), profile.structure.normalise_theta(best.x)


def t_profile_interval(profile: GroupedProfile, fit: GroupFit, alpha: float = 0.05
                       ) -> tuple[float, float]:
    """Profile-likelihood interval for t with theta profiled out (lme4's
    ``confint(method = "profile")`` for a variance parameter): ``{t : 2 [l(t_hat,
    theta_hat) - max_theta l(t, theta)] <= chi2_1(1 - alpha)}``.

    The lower end is 0 where the criterion at t = 0 is inside the bound (always for a fit
    on the boundary); the upper end is found by doubling t from the estimate, then Brent's
    method.  Each evaluation maximises over theta from the fit's theta.
    """
    if not fit.estimate_t:
        raise ValueError("the model has no network: t is not a parameter")
    cut = fit.llf - 0.5 * float(scipy.stats.chi2.ppf(1 - alpha, 1))
    theta0 = fit.theta

    def excess(t: float) -> float:
        return profile_theta_at(profile, t, fit.reml, theta0)[0] - cut

    t_hat = fit.t
    lower = 0.0
    if t_hat > 0 and excess(0.0) < 0:
        lower = float(scipy.optimize.brentq(excess, 0.0, t_hat, xtol=1e-10 * t_hat, rtol=1e-8))
    lam_max = float(profile.lam.max()) if profile.lam.size else 1.0
    return lower, _upper_end(excess, t_hat, 2.0 * max(t_hat, 1.0 / max(lam_max, 1e-300)),
                             rel_xtol=1e-10)


def sd_profile_intervals(profile: GroupedProfile, alpha: float = 0.05
                         ) -> list[tuple[str, float, float]]:
    """Profile-likelihood intervals for the standard deviations of scalar group terms and
    the residual, as lme4's ``confint(fit, parm = "theta_", method = "profile")``.

    lme4 profiles the ML deviance whether the fit is REML or ML, on the scale of the
    standard deviations ``sigma_j = sigma theta_j`` and ``sigma``.  The profile of
    ``sigma_j`` maximises the ML log-likelihood

        l(t, theta, sigma) = l_p(t, theta) + [n log(rss / (n sigma^2)) + n - rss / sigma^2] / 2

    (``l_p`` the ML criterion with sigma profiled out, ``rss`` its GLS residual sum of
    squares) over sigma, t and the other thetas with ``theta_j = sigma_j / sigma``; the
    profile of sigma maximises over t and theta.  Each end solves ``l = l_hat - chi2_1(1 -
    alpha) / 2`` by Brent's method; a lower end is 0 where the bound holds at 0.

    Returns
    -------
    list of (name, lower, upper)
        lme4's names (``sd_(Intercept)|g``, ``sigma``).
    """
    gs = profile.structure
    if any(b.k > 1 for b in gs.blocks):
        raise NotImplementedError(
            "profile intervals are implemented for scalar group terms ((1 | g), (0 + x | g), "
            "(x || g)); a term with correlated effects ((x | g)) has none yet")
    fit = fit_groups(profile, reml=False)
    n = profile.nobs
    est_t = profile.has_network
    lam_max = float(profile.lam.max()) if est_t and profile.lam.size else 1.0
    ts = max(fit.t, 1.0 / max(lam_max, 1e-300))  # t's scale for the optimiser

    def full_llf(t: float, theta: np.ndarray, sigma: float) -> float:
        try:
            pt = profile.point(t, theta, reml=False)
        except (np.linalg.LinAlgError, ValueError):
            return -np.inf
        if not (np.isfinite(pt.llf) and pt.rss > 0 and sigma > 0):
            return -np.inf
        return pt.llf + 0.5 * (n * math.log(pt.rss / (n * sigma ** 2)) + n - pt.rss / sigma ** 2)

    sigma_hat = math.sqrt(fit.point.scale)
    l_hat = full_llf(fit.t, fit.theta, sigma_hat)
    cut = l_hat - 0.5 * float(scipy.stats.chi2.ppf(1 - alpha, 1))

    def maximised(fixed: int | None, value: float, x0: np.ndarray) -> tuple[float, np.ndarray]:
        """max of l with sigma_j (``fixed`` = j) or sigma (None) held at ``value``; the
        free vector is [log sigma (if j), t / ts (if a network), the other thetas]."""
        def unpack(x):
            at = 0
            if fixed is not None:
                sigma = math.exp(x[0])
                at = 1
            else:
                sigma = value
            t = max(x[at], 0.0) * ts if est_t else 0.0
            at += int(est_t)
            theta = np.insert(x[at:], fixed, value / sigma) if fixed is not None else x[at:]
            return t, theta, sigma

        def neg(x):
            v = full_llf(*unpack(x))
            return -v if np.isfinite(v) else 1e300

        bounds = ([(None, None)] if fixed is not None else []) + \
            ([(0.0, None)] if est_t else []) + [(None, None)] * (gs.n_theta - (fixed is not None))
        best = scipy.optimize.minimize(neg, x0, method="L-BFGS-B", bounds=bounds,
                                       options=dict(maxiter=2000, ftol=1e-12, gtol=1e-7))
        return -float(best.fun), best.x

    def start(fixed: int | None) -> np.ndarray:
        others = np.delete(fit.theta, fixed) if fixed is not None else fit.theta
        head = [math.log(sigma_hat)] if fixed is not None else []
        return np.r_[head, [fit.t / ts] if est_t else [], others]

    def interval(fixed: int | None, estimate: float) -> tuple[float, float]:
        x_last = [start(fixed)]

        def excess(v: float) -> float:
            val, x = maximised(fixed, v, x_last[0])
            x_last[0] = x
            return val - cut

        lower = 0.0
        if estimate > 0:
            if excess(1e-12 * estimate if fixed is None else 0.0) < 0:
                x_last[0] = start(fixed)
                lower = float(scipy.optimize.brentq(
                    excess, 1e-12 * estimate if fixed is None else 0.0, estimate,
                    rtol=1e-8))
        x_last[0] = start(fixed)
        return lower, _upper_end(excess, estimate, max(estimate, 1e-3 * sigma_hat) * 1.5)

    out = []
    for j, b in enumerate(gs.blocks):
        lo, hi = interval(j, sigma_hat * abs(fit.theta[j]))
        out.append((f"sd_{b.effect_names[0]}|{b.term.group_name}", lo, hi))
    lo, hi = interval(None, sigma_hat)
    out.append(("sigma", lo, hi))
    return out


def _negative_criterion(profile: GroupedProfile, t: float, theta: np.ndarray, reml: bool
                        ) -> tuple[float, np.ndarray]:
    """``(-l, -dl/d(t, theta))`` for a minimiser; ``(1e300, 0)`` where l is undefined."""
    try:
        llf, g = profile.gradient(t, theta, reml)
    except (np.linalg.LinAlgError, ValueError):
        return 1e300, np.zeros(theta.size + 1)
    if not np.isfinite(llf):
        return 1e300, np.zeros(theta.size + 1)
    return -llf, -g


def _restart_zero_variances(objective, best: scipy.optimize.OptimizeResult, bounds: list,
                            lower: np.ndarray, offset: int, margin: float = 0.0
                            ) -> scipy.optimize.OptimizeResult:
    """Restart the variances that ended at 0 (theta at ``offset:`` of x) from 0.5: a zero
    variance is a stationary point by symmetry, so only a restart shows it is a maximum.
    The restart is kept if it is better by more than ``margin``."""
    zero = np.flatnonzero(np.isfinite(lower) & (np.abs(best.x[offset:]) < 1e-6))
    if not zero.size:
        return best
    x0 = best.x.copy()
    x0[zero + offset] = 0.5
    other = _minimize(objective, x0, bounds)
    return other if other.fun < best.fun - margin else best


def _upper_end(excess, inside: float, hi: float, rel_xtol: float | None = None) -> float:
    """The root of ``excess`` above ``inside`` (where it is >= 0): ``hi`` doubled until
    ``excess(hi) < 0``, then Brent's method; ``inf`` if it never turns negative."""
    for _ in range(60):
        if excess(hi) < 0:
            break
        inside, hi = hi, 2.0 * hi
    else:
        return math.inf  # the criterion stays within the bound as the parameter grows
    xtol = 2e-12 if rel_xtol is None else rel_xtol * hi  # brentq's default, or relative
    return float(scipy.optimize.brentq(excess, inside, hi, xtol=xtol, rtol=1e-8))


def _minimize(objective, x0: np.ndarray, bounds: list) -> scipy.optimize.OptimizeResult:
    # moderate tolerances: the Newton steps that follow give the last digits
    return scipy.optimize.minimize(objective, x0, jac=True, method="L-BFGS-B", bounds=bounds,
                                   options=dict(maxiter=5000, ftol=1e-11, gtol=1e-7, maxcor=30))


def _free(t: float, theta: np.ndarray, est_t: bool, lower: np.ndarray) -> np.ndarray:
    """Parameters off their boundary (t > 0, nonzero variances)."""
    free = np.ones(theta.size + int(est_t), dtype=bool)
    if est_t:
        free[0] = t > 0
    free[int(est_t):] &= ~(np.isfinite(lower) & (theta <= 0))
    return free


def _hessian(profile: GroupedProfile, x: np.ndarray, free: np.ndarray, reml: bool,
             est_t: bool) -> np.ndarray:
    """Central differences of the analytic gradient in the free parameters."""
    k = x.size
    hess = np.zeros((k, k))
    for i in np.flatnonzero(free):
        h = 1e-5 * max(abs(x[i]), 1e-3)
        e = np.zeros(k)
        e[i] = h
        hess[i] = (_grad_at(profile, x + e, reml, est_t) - _grad_at(profile, x - e, reml, est_t)) \
            / (2 * h)
    return 0.5 * (hess + hess.T)


def _newton_polish(profile: GroupedProfile, t: float, theta: np.ndarray, reml: bool,
                   est_t: bool, lower: np.ndarray, steps: int = 3
                   ) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """A few Newton steps in the free parameters from the quasi-Newton optimum (its
    stopping rule leaves ~1e-6 relative error on flat likelihoods; Newton's quadratic
    convergence removes it).  A step is kept only if the likelihood does not drop."""
    x = np.r_[t, theta] if est_t else theta.copy()
    free = _free(t, theta, est_t, lower)
    hess = _hessian(profile, x, free, reml, est_t)
    grad = _grad_at(profile, x, reml, est_t)
    llf = _llf_at(profile, x, reml, est_t)
    idx = np.flatnonzero(free)
    for _ in range(steps if idx.size else 0):
        sub = hess[np.ix_(idx, idx)]
        try:
            step = np.linalg.solve(sub, grad[idx])
        except np.linalg.LinAlgError:
            break
        if not np.all(np.isfinite(step)):
            break
        trial = x.copy()
        trial[idx] -= step
        if est_t and trial[0] < 0:
            break
        new = _llf_at(profile, trial, reml, est_t)
        if not new >= llf - 1e-12 * max(1.0, abs(llf)):
            break
        x, llf = trial, new
        grad = _grad_at(profile, x, reml, est_t)
        hess = _hessian(profile, x, free, reml, est_t)
        if np.max(np.abs(step) / np.maximum(np.abs(x[idx]), 1e-8)) < 1e-9:
            break
    t_new = float(x[0]) if est_t else 0.0
    th_new = x[1:] if est_t else x
    return t_new, th_new, hess, grad


def _llf_at(profile: GroupedProfile, x: np.ndarray, reml: bool, est_t: bool) -> float:
    return profile.loglike(float(x[0]), x[1:], reml) if est_t else profile.loglike(0.0, x, reml)


def _inverse_information(hess: np.ndarray, free: np.ndarray) -> np.ndarray:
    """Inverse observed information; NaN rows and columns for boundary parameters."""
    k = hess.shape[0]
    cov = np.full((k, k), np.nan)
    idx = np.flatnonzero(free)
    if idx.size:
        try:
            cov[np.ix_(idx, idx)] = np.linalg.inv(-hess[np.ix_(idx, idx)])
        except np.linalg.LinAlgError:
            pass
    return cov


def _grad_at(profile: GroupedProfile, x: np.ndarray, reml: bool, est_t: bool) -> np.ndarray:
    if est_t:
        return profile.gradient(max(x[0], 0.0), x[1:], reml)[1]
    return profile.gradient(0.0, x, reml)[1][1:]
