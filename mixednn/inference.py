"""Tests of ``H0: t = 0``: should the network be trained at all? (model.md section 3).

Under ``H0: t = 0`` the model is ordinary least squares, ``V = s2 I``.  This module
owns the two tests of that hypothesis on one fitted model:

* :func:`score_test` -- the score statistic ``Q = r0^T K r0 / r0^T r0`` (OLS
  residuals ``r0``) with its *exact* Gaussian null, a ratio of quadratic forms
  computed by Imhof's integral (Davies' algorithm on request) from the kernel
  eigenvalues and the rotated design in O(n p^2) per evaluation, a saddlepoint
  in the far tail, and the plug-in / Liu / Satterthwaite approximations
  (:func:`full_spectrum`, :func:`ratio_cumulants` and :func:`liu_from_cumulants`
  are its building blocks);
* :func:`lr_test` -- the restricted (REML) or ML likelihood ratio
  ``2 [l(t_hat) - l(0)]`` with the asymptotic 50:50 mixture of chi2_0 and chi2_1
  or its exact finite-sample null, simulated in the rotated basis without
  nuisance parameters (:mod:`mixednn.lrnull`).

Each returns a :class:`mixednn.hypotheses.TestResult`, or an
:class:`mixednn.hypotheses.InapplicableTest` that says why the test is undefined.
Comparing several models (``anova``) is :mod:`mixednn.comparison`.

Low-rank bases (``K = Phi Phi^T`` with m < n features) keep only the m nonzero
eigenvalues in ``profile.lam``; the n - m zero eigenvalues are restored exactly:
they enter the score test's null as weights ``0 - Q`` (appended rows with the
design's out-of-span Gram ``profile.rest_gram``) and the simulated RLRT null as an
exactly drawn out-of-span part (a Gaussian vector in the span of the design's
remainder plus an independent chi-square).

References
----------
Lin, X. (1997). Variance component testing in generalised linear models with
random effects. *Biometrika* 84, 309-326.

Crainiceanu & Ruppert (2004) and Self & Liang (1987): see :mod:`mixednn.lrnull`.
Imhof (1961), Davies (1980), Kuonen (1999), Liu, Tang & Zhang (2009) and
Satterthwaite (1946): see :mod:`mixednn.tailprob`.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
from scipy import stats

from .hypotheses import InapplicableTest, TestResult
from .interfaces import FitResults
from .lrnull import mixture_sf, n_zero_rest, rest_x_root, simulate_lr_null, simulated_pvalue
from .profile import SpectralProfile
from .quadform import QuadraticForm
from .tailprob import TailProbability

__all__ = ["SCORE_METHODS", "score_test", "lr_test", "full_spectrum", "ratio_cumulants",
           "liu_from_cumulants"]

#: Methods accepted by :func:`score_test`.
SCORE_METHODS = ("exact", "imhof", "davies", "saddlepoint", "liu", "satterthwaite",
                 "plugin", "plugin-liu", "plugin-satterthwaite", "leading")

#: ``method="leading"`` doubles the number of leading eigenvalues until the p-value moves
#: by less than this (relative) ...
LEADING_RTOL = 1e-3
#: ... starting from this many.
LEADING_START = 10

_NULL_T0 = "t = 0 (the network learns nothing beyond its initialisation)"
_DF_EFF = "Effective df (Satterthwaite, plug-in null)"


# ======================================================================= the full spectrum

def full_spectrum(prof: SpectralProfile
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Eigenvalues, a rotated design with the same Gram, and multiplicities.

    For a full basis this is ``(lam, X_rot, None)``.  For a low-rank basis the n - m
    zero eigenvalues are restored, and the design's out-of-span part, known only
    through its Gram, is represented by any root ``R`` of that Gram (r rows): the
    quadratic-form machinery depends on the design only through
    ``Qx^T diag(w) Qx``, and on the zero block ``w`` is constant.  The remaining
    n - m - r zero eigenvalues, with zero design rows, are one entry of multiplicity
    n - m - r, so the null distribution costs O(m) per evaluation, not O(n).
    """
    extra = n_zero_rest(prof)
    if extra <= 0:
        return prof.lam, prof.X_rot, None
    R = rest_x_root(prof)
    if R.shape[0] > extra:  # pragma: no cover - rank of the rest Gram is at most n - m
        R = R[:extra]
    r = R.shape[0]
    blocks = [prof.X_rot, R]
    counts = [np.ones(prof.lam.shape[0] + r)]
    if extra > r:
        blocks.append(np.zeros((1, prof.p)))
        counts.append(np.array([float(extra - r)]))
    lam = np.concatenate([prof.lam, np.zeros(r + (extra > r))])
    return lam, np.vstack(blocks), np.concatenate(counts)


def _null_residuals(prof: SpectralProfile) -> tuple[np.ndarray, float]:
    """OLS residuals in the stored eigen-coordinates and the total RSS (rest included)."""
    pt = prof.point(0.0, reml=True)
    r = prof.y_rot - prof.X_rot @ pt.beta if prof.p else prof.y_rot.copy()
    return r, float(pt.rss)


# ============================================================================ score test

def liu_from_cumulants(x: float, kappa: Sequence[float]) -> tuple[float, str]:
    """Liu-Tang-Zhang (2009) noncentral chi-square matching the first four cumulants.

    ``kappa`` are the cumulants of the statistic; they are translated to the
    ``c_r = sum nu^r`` of an equivalent quadratic form (``kappa_r = 2^{r-1}
    (r-1)! c_r``).  Falls back to a normal approximation when the skewness is
    not positive (Liu's construction needs it).
    """
    k1, k2, k3, k4 = (float(v) for v in kappa[:4])
    c1, c2, c3, c4 = k1, k2 / 2.0, k3 / 8.0, k4 / 48.0
    if not (c2 > 0 and c3 > 0):
        return float(stats.norm.sf((x - k1) / math.sqrt(max(k2, 1e-300)))), \
            "normal (skewness not positive)"
    s1 = c3 / c2 ** 1.5
    s2 = c4 / c2 ** 2
    a = delta = df = 0.0
    if s1 * s1 > s2:
        a = 1.0 / (s1 - math.sqrt(s1 * s1 - s2))
        delta = s1 * a ** 3 - a * a
        df = a * a - 2.0 * delta
    if not (df > 0 and delta >= 0):  # also for light tails (bounded Q): match skewness only
        a = 1.0 / s1
        delta = 0.0
        df = a * a
    tx = (x - c1) / math.sqrt(2.0 * c2) * math.sqrt(2.0) * a + df + delta
    p = stats.ncx2.sf(tx, df, delta) if delta > 0 else stats.chi2.sf(tx, df)
    return float(p), f"df={df:.4g}, ncp={delta:.4g}"


def ratio_cumulants(lam: np.ndarray, Xr: np.ndarray, m: int, mean: float,
                     counts: np.ndarray | None = None) -> np.ndarray:
    """Exact first four cumulants of ``Q = e^T M K M e / e^T M e`` under H0.

    ``Q`` is independent of ``D = e^T M e ~ chi2_m`` (a scale-free function of a
    spherical vector), so ``(Q - c) D = N_c = sum_j (nu_j - c) chi2_1,j`` gives
    ``E[(Q - c)^k] = E[N_c^k] / E[D^k]``.  With ``c = E[Q] = mean(nu)`` the first
    cumulant of ``N_c`` is zero and its others come from
    :meth:`QuadraticForm.cumulants` (no cancellation).
    """
    k = QuadraticForm.projected(lam, Xr, shift=mean, counts=counts).cumulants(4)
    ed2 = m * (m + 2.0)
    ed3 = ed2 * (m + 4.0)
    ed4 = ed3 * (m + 6.0)
    mu2 = k[1] / ed2
    mu3 = k[2] / ed3
    mu4 = (k[3] + 3.0 * k[1] ** 2) / ed4
    return np.array([mean, mu2, mu3, mu4 - 3.0 * mu2 ** 2])


def _free_modes_note(res: FitResults) -> str:
    if not res.free_modes:
        return ""
    return (f"conditional on the {res.free_modes} free leading mode(s) (unpenalised fixed "
            "effects): the test uses the remaining spectrum")


def _moment_matched(method: str, Q: float, kq: np.ndarray) -> tuple[float, str, str]:
    """Satterthwaite's or Liu's approximation to ``P(Q > q | H0)`` from the exact
    cumulants ``kq`` of ``Q``: the p-value, its parameters and the null in words."""
    if method == "satterthwaite":
        a = kq[1] / (2.0 * kq[0])
        dfs = 2.0 * kq[0] ** 2 / kq[1]
        pv = float(stats.chi2.sf(Q / a, dfs))
        return (pv, f"scale={a:.4g}, df={dfs:.4g}",
                "a chi2_df matching the exact null mean and variance of Q")
    pv, note = liu_from_cumulants(Q, kq)
    return pv, note, "noncentral chi-square matching four exact null cumulants of Q (Liu)"


def _null_without_spectrum(res: FitResults, method: str, Q: float, tol: float
                           ) -> tuple[np.ndarray, np.ndarray | None, str, str]:
    """The score test's null weights for a fit without the full spectrum (a Krylov
    basis, ``decomposition="lanczos"``): weights, multiplicities, a note for the
    details and the method's name.

    ``"satterthwaite"`` needs only the exact sum and sum of squares of the ``nu_j``
    (traces of K); ``"leading"`` adds leading eigenvalues, doubling their number from
    :data:`LEADING_START` until the p-value at ``Q`` moves by less than
    :data:`LEADING_RTOL` (relative), and computes all of them (below) when that takes
    more than ``max(40, n / 20)``; every other method computes all ``nu_j``
    (:meth:`mixednn.krylov.KrylovBasis.residual_eigenvalues`, once per fit).
    """
    basis = res.model.basis
    spec = basis.residual_spectrum()
    if method == "satterthwaite":
        w, c = spec.representation(0)
        return w, c, ("sum and sum of squares of the n - p eigenvalues of (I-H)K(I-H) "
                      "(exact traces)"), ""
    if method == "leading":
        cap = max(40, spec.n // 20)
        L, prev = LEADING_START, None
        while L < spec.count:
            w, c = spec.representation(L)
            pv = QuadraticForm(w - Q, None, c).sf(0.0, "auto", tol).pvalue
            # relative, down to p = 1e-12 (beyond, an absolute 1e-15 is more than enough)
            if prev is not None and abs(pv - prev) <= LEADING_RTOL * max(pv, 1e-12):
                n_rest = spec.count - L
                return w, c, (f"{L} leading eigenvalues of (I-H)K(I-H) (block Lanczos) and "
                              f"{n_rest} more as two atoms matching their number, sum and sum "
                              "of squares (exact traces); p-value stable to "
                              f"{LEADING_RTOL:g} relative from {L // 2} to {L}"), \
                    f"approximate ratio null ({L} leading eigenvalues + moments)"
            if 2 * L > cap:
                break
            prev, L = pv, 2 * L
    nu = basis.residual_eigenvalues()
    return nu, None, ("all n - p eigenvalues of (I-H)K(I-H), computed without "
                      "eigenvectors (decomposition='lanczos')"), "exact ratio null"


def score_test(res: FitResults, method: str = "exact", *,
               tol: float = 1e-9) -> TestResult:
    """Score test of ``H0: t = 0`` with its exact Gaussian null.

    The statistic is ``Q = r0^T K r0 / r0^T r0`` with ``r0`` the OLS residuals
    (fixed effects projected out); the REML score at ``t = 0`` is
    ``1/2 [(n - p) Q - tr((I - H) K)]``, a monotone function of it.  Under H0,
    ``P(Q > q) = P(sum_j (nu_j - q) chi2_1,j > 0)`` exactly, ``nu_j`` the
    ``n - p`` eigenvalues of ``(I - H) K (I - H)`` on the residual space, free of
    ``beta`` and ``s2`` (model.md section 3).  Everything is computed from the
    fit's one decomposition of K in O(n p^2) per characteristic-function
    evaluation; no second eigendecomposition is made.

    Parameters
    ----------
    res : MixedLMNTKResults
        A fitted model (REML or ML: the test uses only the null fit).
    method : str
        * ``"exact"`` (default): Imhof's integral for the exact null, switching to
          the Lugannani-Rice saddlepoint where Imhof's value is below 1e-8 (absolute
          accuracy no longer gives relative accuracy there) or fails; ``.method``
          names the algorithm used.  ``"imhof"``, ``"davies"`` and
          ``"saddlepoint"`` force one algorithm for the same exact null.
        * ``"satterthwaite"`` / ``"liu"``: a scaled chi-square matching the exact
          null mean and variance of ``Q`` / Liu's noncentral chi-square matching
          its first four exact cumulants (finite-sample moment matching, no
          numerical inversion).
        * ``"plugin"``: the large-sample plug-in test of kernel association
          studies: ``s2`` held at its null estimate, ``Q (n - p) = r0^T K r0 / s2``
          against ``sum_j nu_j chi2_1,j`` (computed exactly by Imhof);
          ``"plugin-liu"`` and ``"plugin-satterthwaite"`` moment-match that
          plug-in distribution instead.
        * ``"leading"``: for a fit without the full spectrum
          (``decomposition="lanczos"``, :mod:`mixednn.krylov`), the null from the
          leading eigenvalues of ``(I - H) K (I - H)`` (block Lanczos) with the
          others replaced by two atoms that match their number, sum and sum of
          squares exactly (``tr K`` from the diagonal, ``tr K^2 = ||K||_F^2``); the
          number of leading eigenvalues doubles from 10 until the p-value moves by
          less than 0.1% (relative), and when that needs more than ``max(40, n/20)``
          of them the exact null is computed instead.  ``.method`` says which, and
          ``details["null spectrum"]`` what was used.  Measured against the exact
          null (n = 1000; ReLU NTKs of depth 2 and 4, ReLU depth 1 on two inputs,
          Gaussian and Laplace kernels; 84 fits with p from 1e-8 to 0.97): relative
          error of the p-value at most 1.3e-3, typically 1e-5 to 1e-4, at 0.1-0.3 s
          against 0.5 s for the exact route.  On a fit with the full spectrum it is
          ``"exact"``.

        A fit with ``decomposition="lanczos"`` has no spectrum: ``Q`` is still exact
        (``r0`` lies in its Krylov space), ``"satterthwaite"`` needs only the exact
        traces above, and ``"leading"`` is the fast route (the summary's); the
        other methods compute every eigenvalue of ``(I - H) K (I - H)`` once,
        without eigenvectors (about half the cost of a full ``eigh``).
    tol : float
        Absolute accuracy target of the numerical inversions (Imhof/Davies).

    Returns
    -------
    TestResult
        ``statistic`` is ``Q`` (``Q (n - p)`` for the plug-in methods); ``df`` is
        the Satterthwaite effective degrees of freedom of the plug-in null
        ``2 (sum nu)^2 / (2 sum nu^2)``; ``details`` holds ``Q``, ``E[Q | H0]``, the
        REML score at t = 0, the number of chi-square terms and, for the exact
        methods, the error bound and convergence flag.  An
        :class:`InapplicableTest` when the residuals are zero or the kernel is
        constant on the residual space (``Q`` is then degenerate).

    Examples
    --------
    >>> import numpy as np, mixednn as mn
    >>> rng = np.random.default_rng(0)
    >>> Z = rng.normal(size=(80, 2)); y = np.sin(2 * Z[:, 0]) + 0.3 * rng.normal(size=80)
    >>> res = mn.MixedLMNTK(y, np.ones((80, 1)), Z, network=mn.MLP(depth=2)).fit()
    >>> test = res.score_test()
    >>> test.pvalue < 0.01, test.method
    (True, 'exact ratio null, imhof')
    """
    if method not in SCORE_METHODS:
        raise ValueError(f"unknown score-test method {method!r}; choose one of {SCORE_METHODS}")
    if not tol > 0:
        raise ValueError(f"tol must be positive, got {tol}")
    name = "Score test"
    prof = res.likelihood_profile
    n, p = prof.nobs, prof.p
    m = n - p
    r, rss0 = _null_residuals(prof)
    if not rss0 > 0:
        return InapplicableTest.because(name, _NULL_T0, "the OLS residuals are zero (the "
                                        "fixed effects fit the data exactly): Q = 0/0")
    # exact also in a Krylov basis: r0 lies in its span, and T = Q^T K Q there
    Q = float(np.sum(prof.lam * r * r) / rss0)
    null_note = None
    if prof.complete_spectrum:
        lam_a, X_a, cnt = full_spectrum(prof)
        X_a = X_a if p else None
        if method == "leading":  # the whole spectrum is at hand: nothing to approximate
            method = "exact"
    else:  # a Krylov basis: the spectrum of (I - H) K (I - H) itself, projected already
        lam_a, cnt, null_note, how_leading = _null_without_spectrum(res, method, Q, tol)
        X_a = None
        if method == "leading" and cnt is None:  # it needed every eigenvalue: exact
            method = "exact"
    qf = QuadraticForm.projected(lam_a, X_a, shift=0.0, counts=cnt)
    kap = qf.cumulants(4)  # cumulants of sum_j nu_j chi2_1
    sum_nu, sum_nu2 = float(kap[0]), float(kap[1]) / 2.0
    numin, numax = qf.eig_range()
    spread = numax - numin
    if not spread > 1e-10 * max(abs(numax), abs(numin), np.finfo(float).tiny):
        return InapplicableTest.because(
            name, _NULL_T0, "the kernel is constant on the residual space "
            f"(all n - p eigenvalues of (I - H) K (I - H) equal {numax:.4g}), "
            "so Q is degenerate under H0")
    mean_q = sum_nu / m
    reml_score = 0.5 * (m * Q - sum_nu)
    details: dict[str, Any] = {
        "Q = r0'K r0 / r0'r0": Q,
        "E[Q | H0] = tr((I-H)K)/(n-p)": mean_q,
        "REML score at t = 0": reml_score,
        "chi-square terms (n - p)": m,
    }
    if prof.complete_spectrum and n_zero_rest(prof) > 0:
        details["zero eigenvalues restored (low rank)"] = n_zero_rest(prof)
    if null_note is not None:
        details["null spectrum"] = null_note
    if _free_modes_note(res):
        details["free modes"] = _free_modes_note(res)
    df_eff = sum_nu ** 2 / sum_nu2 if sum_nu2 > 0 else None

    if method == "leading":
        tp = QuadraticForm.projected(lam_a, None, counts=cnt, shift=Q).sf(0.0, "auto", tol)
        details["error bound"] = tp.error_bound
        details["converged"] = tp.converged
        return TestResult(Q, tp.pvalue, f"{how_leading}, {tp.method}", _NULL_T0,
                          "P(sum_j (nu_j - Q) chi2_1 > 0), nu = eig((I-H)K(I-H)): leading "
                          "eigenvalues, the rest moment-matched", name=name, df=df_eff,
                          details=details, df_name=_DF_EFF)
    if method in ("exact", "imhof", "davies", "saddlepoint"):
        algo = "auto" if method == "exact" else method
        tp: TailProbability = QuadraticForm.projected(lam_a, X_a, counts=cnt,
                                                      shift=Q).sf(0.0, algo, tol)
        details["error bound"] = tp.error_bound
        details["converged"] = tp.converged
        if tp.note:
            details["note"] = tp.note
        how = "exact ratio null" if method != "saddlepoint" else "ratio null"
        return TestResult(Q, tp.pvalue, f"{how}, {tp.method}", _NULL_T0,
                          "P(sum_j (nu_j - Q) chi2_1 > 0), nu = eig((I-H)K(I-H))",
                          name=name, df=df_eff, details=details, df_name=_DF_EFF)
    if method in ("liu", "satterthwaite"):
        kq = ratio_cumulants(lam_a, X_a, m, mean_q, cnt)
        pv, note, dist = _moment_matched(method, Q, kq)
        details["approximation"] = note
        return TestResult(Q, min(max(pv, 0.0), 1.0), f"{method} (exact moments of Q)",
                          _NULL_T0, dist, name=name, df=df_eff, details=details,
                          df_name=_DF_EFF)
    # plug-in family: s2 held at its null estimate
    stat = Q * m
    algo = {"plugin": "auto", "plugin-liu": "liu", "plugin-satterthwaite": "satterthwaite"}[method]
    tp = qf.sf(stat, algo, tol)
    details["error bound"] = tp.error_bound
    if tp.note:
        details["note"] = tp.note
    return TestResult(stat, tp.pvalue, f"plug-in (s2 fixed), {tp.method}", _NULL_T0,
                      "sum_j nu_j chi2_1 (large-sample, s2 known)", name=name, df=df_eff,
                      details=details, df_name=_DF_EFF)


# ======================================================================= likelihood ratio

def _likelihood_estimate(res: FitResults):
    """The (RE)ML maximum of the fit's criterion (from the fit's record), and a note
    when it is not ``res.t``."""
    choice = res.time_choice
    rule = choice.rule
    if choice.by_likelihood and (rule == "reml") == res.reml:
        return res.estimate, ""
    est = choice.likelihood
    crit = "REML" if res.reml else "ML"
    return est, (f"t was chosen by t_method={rule!r}; the ratio uses the {crit} maximum "
                 f"t = {est.t:.4g}")


def lr_test(res: FitResults, method: str = "simulate", nsim: int = 10_000,
            seed: Any = None) -> TestResult:
    """(Restricted) likelihood-ratio test of ``H0: t = 0``.

    ``RLRT = 2 [l_R(t_hat) - l_R(0)]`` for a REML fit, ``LRT = 2 [l(t_hat) - l(0)]``
    for an ML fit.  ``t = 0`` is on the boundary, so the asymptotic null is the
    50:50 mixture of chi2_0 (a point mass at 0) and chi2_1 (Self & Liang 1987);
    the exact finite-sample null is pivotal and is simulated by
    :func:`simulate_lr_null` (Crainiceanu & Ruppert 2004).

    Parameters
    ----------
    res : MixedLMNTKResults
        Fitted model.
    method : {"simulate", "mixture"}
        ``"simulate"`` (default): exact null by simulation, p-value
        ``(1 + #{T* >= T}) / (nsim + 1)``; ``"mixture"``: the asymptotic mixture.
    nsim : int
        Number of simulations (``"simulate"`` only).
    seed : int, numpy.random.Generator or None
        Seed of the simulation.

    Returns
    -------
    TestResult
        ``details`` holds both p-values, the Monte Carlo standard error, and the
        simulated share of statistics equal to zero (the weight of the point mass,
        0.5 asymptotically).  :func:`simulate_lr_null` with the same ``seed``
        returns the simulated statistics themselves.  For a fit whose t was chosen
        by another rule (``fit(t_method="gcv")``) the ratio uses the maximum of the
        criterion, and ``details["note"]`` says so.

    Examples
    --------
    >>> import numpy as np, mixednn as mn
    >>> rng = np.random.default_rng(0)
    >>> Z = rng.normal(size=(80, 2)); y = np.sin(2 * Z[:, 0]) + 0.3 * rng.normal(size=80)
    >>> res = mn.MixedLMNTK(y, np.ones((80, 1)), Z, network=mn.MLP(depth=2)).fit()
    >>> res.lr_test(nsim=2000, seed=1).pvalue < 0.01
    True
    """
    if method not in ("simulate", "mixture"):
        raise ValueError(f"unknown method {method!r}; use 'simulate' or 'mixture'")
    est, note = _likelihood_estimate(res)
    stat = max(2.0 * (float(est.llf) - float(est.llf_zero)), 0.0)
    name = "Restricted LRT" if res.reml else "Likelihood-ratio test"
    p_mix = mixture_sf(stat)
    details: dict[str, Any] = {"t_hat": float(est.t), "llf(t_hat)": float(est.llf),
                               "llf(0)": float(est.llf_zero)}
    notes = [x for x in (note, _free_modes_note(res)) if x]
    if notes:
        details["note"] = "; ".join(notes)
    if method == "mixture":
        details["caveat"] = ("asymptotic; the exact null often has more than half its mass "
                             "at 0 (Crainiceanu & Ruppert 2004), and the mixture is then "
                             "conservative")
        return TestResult(stat, p_mix, "asymptotic 50:50 mixture", _NULL_T0,
                          "0.5 chi2_0 + 0.5 chi2_1", name=name, df=None, details=details)
    null = simulate_lr_null(res, nsim, seed)
    p, se = simulated_pvalue(stat, null)
    details.update({"simulations": int(nsim), "Monte Carlo s.e. of p": se,
                    "mixture p-value": p_mix,
                    "share of simulated statistics = 0": float(np.mean(null <= 1e-10)),
                    "seed": seed if isinstance(seed, (int, np.integer)) else None})
    return TestResult(stat, p, f"simulated exact null ({nsim:,} draws)", _NULL_T0,
                      f"finite-sample null of the {'RLRT' if res.reml else 'LRT'} "
                      "(pivotal, simulated)", name=name, df=None, details=details)
