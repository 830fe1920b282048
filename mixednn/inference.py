"""Tests of ``H0: t = 0`` and likelihood-ratio model comparison (model.md section 3).

Should the network be trained at all?  Under ``H0: t = 0`` the model is ordinary
least squares, ``V = s2 I``.  This module provides

* :func:`score_test` -- the score statistic ``Q = r0^T K r0 / r0^T r0`` (OLS
  residuals ``r0``) with its *exact* Gaussian null, a ratio of quadratic forms
  computed by Imhof's integral (Davies' algorithm on request) from the kernel
  eigenvalues and the rotated design in O(n p^2) per evaluation, a saddlepoint
  in the far tail, and the plug-in / Liu / Satterthwaite approximations;
* :func:`lr_test` -- the restricted (REML) or ML likelihood ratio
  ``2 [l(t_hat) - l(0)]`` with the asymptotic 50:50 mixture of chi2_0 and chi2_1
  or its exact finite-sample null, simulated in the rotated basis without
  nuisance parameters and vectorised over simulations;
* :func:`anova` and :func:`compare_lr_test` -- an R-style table comparing
  network models with each other and with plain linear models (statsmodels
  ``OLS`` results are valid ``t = 0`` nulls), refitting by ML when the fixed
  effects differ.

Every test returns a :class:`TestResult` (``statistic``, ``pvalue``, ``method``,
``null``, ``dist_name``, ``df``) that prints as a small table; an undefined test
returns an :class:`InapplicableTest` that says why, never a bare NaN.

Low-rank bases (``K = Phi Phi^T`` with m < n features) keep only the m nonzero
eigenvalues in ``profile.lam``; the n - m zero eigenvalues are restored exactly
here: they enter the score test's null as weights ``0 - Q`` (appended rows with
the design's out-of-span Gram ``profile.rest_gram``) and the simulated RLRT null
as an exactly drawn out-of-span part (a Gaussian vector in the span of the
design's remainder plus an independent chi-square).

References
----------
Crainiceanu, C. M. and Ruppert, D. (2004). Likelihood ratio tests in linear
mixed models with one variance component. *JRSS B* 66, 165-185.

Self, S. G. and Liang, K.-Y. (1987). Asymptotic properties of maximum likelihood
estimators and likelihood ratio tests under nonstandard conditions. *JASA* 82,
605-610.

Lin, X. (1997). Variance component testing in generalised linear models with
random effects. *Biometrika* 84, 309-326.

Imhof (1961), Davies (1980), Kuonen (1999), Liu, Tang & Zhang (2009) and
Satterthwaite (1946): see :mod:`mixednn.quadform`.
"""

from __future__ import annotations

import html
import math
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from .quadform import QuadraticForm, TailProbability
from .spectral import LOG_2PI, BoundaryFitWarning, InterpolationWarning, SpectralProfile

if TYPE_CHECKING:  # pragma: no cover
    from .results import MixedLMNTKResults

__all__ = ["TestResult", "InapplicableTest", "AnovaResults", "MLRefitWarning",
           "SCORE_METHODS", "score_test", "lr_test", "anova", "compare_lr_test", "ols_null",
           "simulate_lr_null"]

#: Methods accepted by :func:`score_test`.
SCORE_METHODS = ("exact", "imhof", "davies", "saddlepoint", "liu", "satterthwaite",
                 "plugin", "plugin-liu", "plugin-satterthwaite")

_NULL_T0 = "t = 0 (the network learns nothing beyond its initialisation)"
_DF_EFF = "Effective df (Satterthwaite, plug-in null)"


class MLRefitWarning(UserWarning):
    """Models were refitted by ML (instead of REML) to compare them, as R's ``anova`` does."""


# ================================================================== result objects

def _fmt_num(x: Any) -> str:
    if x is None:
        return ""
    if isinstance(x, (bool, np.bool_)):
        return "yes" if x else "no"
    if isinstance(x, (int, np.integer)):
        return f"{int(x):,}"
    if isinstance(x, (float, np.floating)):
        x = float(x)
        if math.isnan(x):
            return "nan"
        if x == 0:
            return "0"
        if abs(x) < 1e-4 or abs(x) >= 1e6:
            return f"{x:.4e}"
        return f"{x:.6g}"
    return str(x)


@dataclass(frozen=True, repr=False)
class TestResult:
    """A hypothesis test: statistic, p-value and how the p-value was obtained.

    Attributes
    ----------
    statistic : float
        Observed test statistic (``stat`` is an alias).
    pvalue : float
        p-value (``pval`` is an alias).
    method : str
        How the p-value was computed, e.g. ``"exact ratio null, imhof"``; a
        fallback (such as the saddlepoint in the far tail) is named here.
    null : str
        The null hypothesis in words.
    dist_name : str
        The null distribution of ``statistic`` in words.
    name : str
        Name of the test.
    df : float or None
        Degrees-of-freedom-like summary of the null, described by ``df_name``.
    details : mapping
        Further numbers (accuracy bounds, Monte Carlo error, components of the
        statistic), shown by ``repr``.
    df_name : str
        What ``df`` is (printed as its label).
    valid : bool
        ``True``; ``False`` only for :class:`InapplicableTest`.
    """

    statistic: float
    pvalue: float
    method: str
    null: str
    dist_name: str
    name: str = "Test"
    df: float | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    df_name: str = "Df"

    valid = True
    __test__ = False  # not a pytest test class

    @property
    def stat(self) -> float:
        """Alias of :attr:`statistic` (linearmodels' name)."""
        return self.statistic

    @property
    def pval(self) -> float:
        """Alias of :attr:`pvalue` (linearmodels' name)."""
        return self.pvalue

    def _rows(self) -> list[tuple[str, str]]:
        rows = [("H0", self.null), ("Statistic", _fmt_num(self.statistic)),
                ("P-value", _fmt_num(self.pvalue)), ("Null distribution", self.dist_name),
                ("Method", self.method)]
        if self.df is not None:
            rows.append((self.df_name, _fmt_num(self.df)))
        rows += [(k, _fmt_num(v)) for k, v in self.details.items()]
        return rows

    def __str__(self) -> str:
        rows = self._rows()
        w = max(len(k) for k, _ in rows)
        return "\n".join([self.name, "-" * max(len(self.name), 8)]
                         + [f"{k:<{w}}  {v}" for k, v in rows])

    def __repr__(self) -> str:
        return f"{self.__str__()}\n<{type(self).__name__} at 0x{id(self):x}>"

    def _repr_html_(self) -> str:
        body = "".join(f"<tr><th style='text-align:left'>{html.escape(k)}</th>"
                       f"<td style='text-align:left'>{html.escape(v)}</td></tr>"
                       for k, v in self._rows())
        return (f"<table><caption style='text-align:left'><b>{html.escape(self.name)}</b>"
                f"</caption>{body}</table>")


@dataclass(frozen=True, repr=False)
class InapplicableTest(TestResult):
    """A test that is undefined here; ``reason`` says why (``statistic``/``pvalue`` are NaN).

    Check ``test.valid`` (``False``) rather than testing the p-value for NaN.
    """

    reason: str = ""

    valid = False

    def _rows(self) -> list[tuple[str, str]]:
        return [("H0", self.null), ("Inapplicable", self.reason)]


def _inapplicable(name: str, null: str, reason: str) -> InapplicableTest:
    return InapplicableTest(float("nan"), float("nan"), "inapplicable", null, "none",
                            name=name, reason=reason)


# ======================================================== rotated-basis helpers

def _rest_x_root(prof: SpectralProfile) -> np.ndarray:
    """``R`` (r x p) with ``R^T R`` the design's Gram outside the leading eigenvectors.

    ``r`` is the numerical rank of that Gram (0 rows for a full basis).
    """
    p = prof.p
    if prof.rest_gram is None or p == 0:
        return np.zeros((0, p))
    G = 0.5 * (prof.rest_gram[:p, :p] + prof.rest_gram[:p, :p].T)
    ev, evec = np.linalg.eigh(G)
    keep = ev > max(float(ev.max()), 0.0) * p * 1e-13
    return (evec[:, keep] * np.sqrt(ev[keep])).T


def _n_zero_rest(prof: SpectralProfile) -> int:
    """Number of zero eigenvalues outside the stored basis (n - m for a low-rank basis)."""
    return prof.nobs - prof.lam.shape[0]


def _full_spectrum(prof: SpectralProfile
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
    extra = _n_zero_rest(prof)
    if extra <= 0:
        return prof.lam, prof.X_rot, None
    R = _rest_x_root(prof)
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


# ===================================================================== score test

def _liu_from_cumulants(x: float, kappa: Sequence[float]) -> tuple[float, str]:
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


def _ratio_cumulants(lam: np.ndarray, Xr: np.ndarray, m: int, mean: float,
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


def score_test(res: "MixedLMNTKResults", method: str = "exact", *,
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
    prof = res.model.profile
    n, p = prof.nobs, prof.p
    m = n - p
    r, rss0 = _null_residuals(prof)
    if not rss0 > 0:
        return _inapplicable(name, _NULL_T0, "the OLS residuals are zero (the fixed effects "
                             "fit the data exactly): Q = 0/0")
    lam_a, X_a, cnt = _full_spectrum(prof)
    qf = QuadraticForm.projected(lam_a, X_a if p else None, shift=0.0, counts=cnt)
    kap = qf.cumulants(4)  # cumulants of sum_j nu_j chi2_1
    sum_nu, sum_nu2 = float(kap[0]), float(kap[1]) / 2.0
    numin, numax = qf.eig_range()
    spread = numax - numin
    if not spread > 1e-10 * max(abs(numax), abs(numin), np.finfo(float).tiny):
        return _inapplicable(name, _NULL_T0, "the kernel is constant on the residual space "
                             f"(all n - p eigenvalues of (I - H) K (I - H) equal {numax:.4g}), "
                             "so Q is degenerate under H0")
    Q = float(np.sum(prof.lam * r * r) / rss0)
    mean_q = sum_nu / m
    reml_score = 0.5 * (m * Q - sum_nu)
    details: dict[str, Any] = {
        "Q = r0'K r0 / r0'r0": Q,
        "E[Q | H0] = tr((I-H)K)/(n-p)": mean_q,
        "REML score at t = 0": reml_score,
        "chi-square terms (n - p)": m,
    }
    if _n_zero_rest(prof) > 0:
        details["zero eigenvalues restored (low rank)"] = _n_zero_rest(prof)
    if _free_modes_note(res):
        details["free modes"] = _free_modes_note(res)
    df_eff = sum_nu ** 2 / sum_nu2 if sum_nu2 > 0 else None

    if method in ("exact", "imhof", "davies", "saddlepoint"):
        algo = "auto" if method == "exact" else method
        tp: TailProbability = QuadraticForm.projected(lam_a, X_a if p else None, counts=cnt,
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
        kq = _ratio_cumulants(lam_a, X_a if p else None, m, mean_q, cnt)
        if method == "satterthwaite":
            a = kq[1] / (2.0 * kq[0])
            dfs = 2.0 * kq[0] ** 2 / kq[1]
            pv = float(stats.chi2.sf(Q / a, dfs))
            note = f"scale={a:.4g}, df={dfs:.4g}"
            dist = "a chi2_df matching the exact null mean and variance of Q"
        else:
            pv, note = _liu_from_cumulants(Q, kq)
            dist = "noncentral chi-square matching four exact null cumulants of Q (Liu)"
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


# ================================================================ simulated null

class _NullSimulator:
    """Batched profiled (RE)ML criteria for many responses in one rotated basis.

    A response is represented by its rotated coordinates ``y~`` (k values, the
    stored eigenvectors) and, for a low-rank basis, its out-of-span summaries
    ``X_perp^T y_perp`` (p values) and ``y_perp^T y_perp`` (weight 1 for every t).
    All criteria are evaluated for a block of responses at once: on a common
    grid of t by matrix products, at one t per response by elementwise products.
    """

    def __init__(self, prof: SpectralProfile, reml: bool):
        self.prof = prof
        self.reml = bool(reml)
        self.lam = prof.lam
        self.X = prof.X_rot
        self.p = prof.p
        self.n = prof.nobs
        self.k = self.lam.shape[0]
        self.trace = prof.trace
        self.dof = self.n - self.p if reml else self.n
        p = self.p
        self.XX = (self.X[:, :, None] * self.X[:, None, :]).reshape(self.k, p * p)
        if prof.rest_gram is not None:
            self.rest_xx = 0.5 * (prof.rest_gram[:p, :p] + prof.rest_gram[:p, :p].T)
        else:
            self.rest_xx = np.zeros((p, p))
        self.R = _rest_x_root(prof)  # r x p
        self.n_chi = _n_zero_rest(prof) - self.R.shape[0]
        if self.n_chi < 0:  # pragma: no cover - rank bound
            raise ValueError("inconsistent low-rank remainder")

    # -- draws -------------------------------------------------------------------------
    def draw(self, nsim: int, rng: np.random.Generator):
        """Responses from H0 with beta = 0, s2 = 1 (the criteria are invariant to both)."""
        Y = rng.standard_normal((self.k, nsim))
        if _n_zero_rest(self.prof) > 0:
            z = rng.standard_normal((self.R.shape[0], nsim))
            rxy = self.R.T @ z
            ryy = np.sum(z * z, axis=0)
            if self.n_chi > 0:
                ryy = ryy + rng.chisquare(self.n_chi, nsim)
        else:
            rxy = np.zeros((self.p, nsim))
            ryy = np.zeros(nsim)
        return Y, rxy, ryy

    def observed(self):
        """The fitted data in the same representation (for checks)."""
        prof = self.prof
        Y = prof.y_rot[:, None]
        if prof.rest_gram is not None:
            return Y, prof.rest_gram[:self.p, self.p][:, None], np.array([prof.rest_gram[-1, -1]])
        return Y, np.zeros((self.p, 1)), np.zeros(1)

    # -- criteria ----------------------------------------------------------------------
    @staticmethod
    def _chol(G: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Batched Cholesky factors and a mask of the positive definite matrices."""
        try:
            return np.linalg.cholesky(G), np.ones(G.shape[:-2], dtype=bool)
        except np.linalg.LinAlgError:
            flat = G.reshape(-1, *G.shape[-2:])
            L = np.zeros_like(flat)
            ok = np.zeros(flat.shape[0], dtype=bool)
            for i, g in enumerate(flat):
                try:
                    L[i] = np.linalg.cholesky(g)
                    ok[i] = True
                except np.linalg.LinAlgError:
                    L[i] = np.eye(g.shape[0])
            return L.reshape(G.shape), ok.reshape(G.shape[:-2])

    def _finish(self, t, rss, logdet, ok) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            out = -0.5 * (self.dof * (LOG_2PI + np.log(rss / self.dof)) + self.dof
                          + t * self.trace)
        if self.reml:
            out = out - 0.5 * logdet
        return np.where((rss > 0) & ok, out, -np.inf)

    def grid_llf(self, ts: np.ndarray, Y: np.ndarray, Y2: np.ndarray, rxy: np.ndarray,
                 ryy: np.ndarray) -> np.ndarray:
        """Criterion on a common grid ``ts`` (T,) for every response: (T, B)."""
        p = self.p
        W = np.exp(-np.outer(ts, self.lam))                       # T x k
        c = W @ Y2 + ryy                                          # T x B
        if not p:
            return self._finish(ts[:, None], c, 0.0, True)
        G = (W @ self.XX).reshape(-1, p, p) + self.rest_xx         # T x p x p
        L, ok = self._chol(G)
        Linv = np.linalg.inv(L)                                   # T x p x p
        WX = (W[:, None, :] * self.X.T[None, :, :]).reshape(-1, self.k)  # (T p) x k
        bb = (WX @ Y).reshape(-1, p, Y.shape[1])                  # T x p x B
        b = [bb[:, j] + rxy[j] for j in range(p)]                 # p arrays T x B
        rss = c
        for i in range(p):                                        # z = L^{-1} b, row by row
            zi = Linv[:, i, 0, None] * b[0]
            for j in range(1, i + 1):
                zi = zi + Linv[:, i, j, None] * b[j]
            rss = rss - zi * zi
        logdet = 2.0 * np.sum(np.log(np.abs(np.diagonal(L, axis1=-2, axis2=-1))), axis=-1)
        return self._finish(ts[:, None], rss, logdet[:, None], ok[:, None])

    def point_llf(self, t: np.ndarray, Y: np.ndarray, Y2: np.ndarray, rxy: np.ndarray,
                  ryy: np.ndarray) -> np.ndarray:
        """Criterion at one ``t`` per response: t (B,), Y (k, B) -> (B,)."""
        p = self.p
        W = np.exp(-self.lam[:, None] * t[None, :])               # k x B
        c = np.einsum("kb,kb->b", W, Y2) + ryy
        if not p:
            return self._finish(t, c, 0.0, True)
        G = (self.XX.T @ W).T.reshape(-1, p, p) + self.rest_xx     # B x p x p
        L, ok = self._chol(G)
        b = (self.X.T @ (W * Y)).T + rxy.T                        # B x p
        z = np.linalg.solve(L, b[..., None])[..., 0]
        rss = c - np.sum(z * z, axis=-1)
        logdet = 2.0 * np.sum(np.log(np.abs(np.diagonal(L, axis1=-2, axis2=-1))), axis=-1)
        return self._finish(t, rss, logdet, ok)

    def zero_llf(self, Y, Y2, rxy, ryy, A: np.ndarray | None = None) -> np.ndarray:
        """Criterion at t = 0, optionally for the nested design ``X0 = X A`` (ML only)."""
        c = Y2.sum(axis=0) + ryy
        G = self.X.T @ self.X + self.rest_xx
        b = (self.X.T @ Y).T + rxy.T                              # B x p
        if A is None:
            if not self.p:
                return self._finish(0.0, c, 0.0, True)
            L = np.linalg.cholesky(G)
            z = np.linalg.solve(L, b.T).T
            logdet = 2.0 * float(np.sum(np.log(np.diag(L))))
            return self._finish(0.0, c - np.sum(z * z, axis=1), logdet, True)
        if A.shape[1]:
            L0 = np.linalg.cholesky(A.T @ G @ A)
            z = np.linalg.solve(L0, (b @ A).T).T
            rss = c - np.sum(z * z, axis=1)
        else:
            rss = c
        return -0.5 * self.n * (LOG_2PI + np.log(rss / self.n) + 1.0)

    # -- maximisation ----------------------------------------------------------------
    def grid(self, points_per_decade: int = 3) -> np.ndarray:
        lo, hi = self.prof.search_bounds()
        top = float(self.lam.max())
        lo = max(lo, 1e-6 / top)
        m = int(np.ceil(np.log10(hi / lo) * points_per_decade)) + 1
        return np.concatenate([[0.0], np.logspace(np.log10(lo), np.log10(hi), m)])

    def maximize(self, Y, rxy, ryy, ts: np.ndarray | None = None, levels: int = 2,
                 sub: int = 4, polish: int = 2) -> tuple[np.ndarray, np.ndarray]:
        """Maximum of the criterion over t >= 0 for each response: (llf_max, t_hat).

        A coarse common log-t grid (with t = 0), evaluated for all responses by
        matrix products, brackets each maximum.  ``levels`` zoom levels then
        evaluate ``2 sub`` points around each bracketed maximum, again by matrix
        products for all responses that share a bracket; ``polish`` successive
        parabolic steps (one evaluation per response each) give the maximum to
        about 1e-10 in the criterion.  Maxima at the last grid point
        (interpolation) are not refined.
        """
        ts = self.grid() if ts is None else ts
        Y2 = Y * Y
        F = self.grid_llf(ts, Y, Y2, rxy, ryy)                    # T x B
        F = np.where(np.isfinite(F), F, -np.inf)
        i = np.argmax(F, axis=0)
        B = Y.shape[1]
        best = F[i, np.arange(B)]
        t_hat = ts[i].copy()
        T = ts.shape[0]
        act = np.flatnonzero((i >= 1) & (i < T - 1))
        if act.size == 0 or T < 3:
            return best, t_hat
        u = np.log(np.maximum(ts, np.finfo(float).tiny))
        h = float(u[2] - u[1])
        u[0] = u[1] - h  # t = 0 stands in as the left neighbour of the first grid point
        ia = i[act]
        cu = u[ia]                                                # centre (log t)
        cf = best[act]
        lf = F[ia - 1, act]
        rf = F[ia + 1, act]
        key = ia.astype(np.int64)
        offs = np.concatenate([np.arange(-sub, 0), np.arange(1, sub + 1)]) / (sub + 1.0)
        for _ in range(levels):
            vals = np.empty((act.size, 2 * sub + 3))
            vals[:, 0], vals[:, sub + 1], vals[:, -1] = lf, cf, rf
            groups, inv = np.unique(key, return_inverse=True)
            order = np.argsort(inv, kind="stable")
            bounds = np.searchsorted(inv[order], np.arange(groups.size + 1))
            for g in range(groups.size):
                rows = order[bounds[g]:bounds[g + 1]]
                cols = act[rows]
                tsub = np.exp(cu[rows[0]] + h * offs)
                Fg = self.grid_llf(tsub, Y[:, cols], Y2[:, cols], rxy[:, cols], ryy[cols])
                Fg = np.where(np.isfinite(Fg), Fg, -np.inf).T     # Bg x 2 sub
                vals[rows, 1:sub + 1] = Fg[:, :sub]
                vals[rows, sub + 2:-1] = Fg[:, sub:]
            j = 1 + np.argmax(vals[:, 1:-1], axis=1)              # 1 .. 2 sub + 1
            r = np.arange(act.size)
            lf, cf, rf = vals[r, j - 1], vals[r, j], vals[r, j + 1]
            h = h / (sub + 1.0)
            cu = cu + (j - (sub + 1)) * h
            key = key * (2 * sub + 1) + (j - 1)
        # successive parabolic steps, starting from (cu - h, cu, cu + h)
        xa, xb, xc = cu - h, cu, cu + h
        fa, fb, fc = lf, cf, rf
        cols = (Y[:, act], Y2[:, act], rxy[:, act], ryy[act])
        for _ in range(polish):
            d1, d2 = xb - xa, xb - xc
            num = d1 * d1 * (fb - fc) - d2 * d2 * (fb - fa)
            den = d1 * (fb - fc) - d2 * (fb - fa)
            with np.errstate(divide="ignore", invalid="ignore"):
                x = xb - 0.5 * num / den
            ok = np.isfinite(x) & (x > xa) & (x < xc) & np.isfinite(fa) & np.isfinite(fc)
            x = np.where(ok, x, xb)
            fx = self.point_llf(np.exp(x), *cols)
            fx = np.where(ok & np.isfinite(fx), fx, -np.inf)
            up, left = fx > fb, x < xb
            xa, xc, fa, fc = (np.where(up, np.where(left, xa, xb), np.where(left, x, xa)),
                              np.where(up, np.where(left, xb, xc), np.where(left, xc, x)),
                              np.where(up, np.where(left, fa, fb), np.where(left, fx, fa)),
                              np.where(up, np.where(left, fb, fc), np.where(left, fc, fx)))
            xb, fb = np.where(up, x, xb), np.where(up, fx, fb)
        best[act] = fb
        t_hat[act] = np.exp(xb)
        return best, t_hat


def _rng(seed: Any) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(seed)


def _chunk_size(k: int, p: int) -> int:
    return int(max(256, min(20_000, 6_000_000 // max(k * (1 + p // 4), 1))))


def simulate_lr_null(res: "MixedLMNTKResults", nsim: int = 10_000, seed: Any = None, *,
                     reml: bool | None = None, nested_exog: np.ndarray | None = None
                     ) -> np.ndarray:
    """Draws from the exact finite-sample null of the (restricted) likelihood ratio.

    Under ``H0: t = 0`` the (RE)ML criterion depends on y only through
    ``(I - H) y / s``, so responses are drawn as ``y~ ~ N(0, I)`` in the fit's
    rotated basis (no nuisance parameters) and t is re-profiled for every draw:
    a common log-t grid evaluated for all draws by matrix products, then a
    vectorised parabolic refinement (model.md section 3).

    Parameters
    ----------
    res : MixedLMNTKResults
        The fitted network model (its decomposition of K is reused).
    nsim : int
        Number of simulated statistics.
    seed : int, numpy.random.Generator or None
        Seed for reproducibility.
    reml : bool, optional
        Criterion (default: the fit's).
    nested_exog : ndarray, shape (n, p0), optional
        ML only: the null's fixed-effects design, nested in the model's
        (``col(X0)`` in ``col(X)``), for the LRT of "no network and fewer fixed
        effects" (``2 [max_t l_ML(X, t) - l_ML(X0, 0)]``).

    Returns
    -------
    ndarray, shape (nsim,)
        Simulated statistics (>= 0).
    """
    nsim = int(nsim)
    if nsim < 1:
        raise ValueError(f"nsim must be a positive integer, got {nsim}")
    reml = res.reml if reml is None else bool(reml)
    prof = res.model.profile
    sim = _NullSimulator(prof, reml)
    A = None
    if nested_exog is not None:
        if reml:
            raise ValueError("REML likelihoods with different fixed effects are not comparable; "
                             "use reml=False with nested_exog")
        A = _nesting_map(res.model.exog, np.asarray(nested_exog, dtype=float))
        if A is None:
            raise ValueError("nested_exog is not nested in the model's fixed-effects design")
    rng = _rng(seed)
    ts = sim.grid()
    out = np.empty(nsim)
    step = _chunk_size(sim.k, sim.p)
    for s in range(0, nsim, step):
        bsz = min(step, nsim - s)
        Y, rxy, ryy = sim.draw(bsz, rng)
        lmax, _ = sim.maximize(Y, rxy, ryy, ts)
        l0 = sim.zero_llf(Y, Y * Y, rxy, ryy, A)
        st = 2.0 * (lmax - l0)
        # rounding-level positives are boundary maxima (the fit reports exactly 0 there)
        out[s:s + bsz] = np.where(st > 1e-11 * np.maximum(1.0, np.abs(l0)), st, 0.0)
    return out


def _mixture_sf(stat: float, df0: int = 0) -> float:
    """``P(0.5 chi2_df0 + 0.5 chi2_{df0+1} >= stat)`` (chi2_0 a point mass at 0)."""
    if stat <= 0:
        return 1.0
    lo = float(stats.chi2.sf(stat, df0)) if df0 > 0 else 0.0
    return 0.5 * lo + 0.5 * float(stats.chi2.sf(stat, df0 + 1))


def _sim_pvalue(stat: float, null: np.ndarray) -> tuple[float, float]:
    """``(1 + #{T* >= T}) / (nsim + 1)`` and its Monte Carlo standard error."""
    tol = 1e-8 * max(1.0, abs(stat))
    k = int(np.sum(null >= stat - tol))
    nsim = null.shape[0]
    p = (1 + k) / (nsim + 1)
    return p, math.sqrt(p * (1 - p) / nsim)


def _likelihood_estimate(res: "MixedLMNTKResults"):
    """The (RE)ML maximum of the fit's criterion, and a note when it is not ``res.t``.

    A fit whose t was chosen by another rule (``fit(t_method="gcv")`` etc.) is
    re-maximised: the likelihood ratio needs the maximum of the criterion.
    """
    rule = getattr(res, "t_method", None)
    if rule is None or rule == ("reml" if res.reml else "ml"):
        return res.estimate, ""
    est = res.model.profile.maximize(res.reml)
    crit = "REML" if res.reml else "ML"
    return est, (f"t was chosen by t_method={rule!r}; the ratio uses the {crit} maximum "
                 f"t = {est.t:.4g}")


def _free_modes_note(res: "MixedLMNTKResults") -> str:
    fm = getattr(res.model, "free_modes", None)
    k = getattr(fm, "k", None)
    if not hasattr(res.model, "base_model") or k is None:
        return ""
    return (f"conditional on the {k} free leading mode(s) (unpenalised fixed effects): "
            "the test uses the remaining spectrum")


def lr_test(res: "MixedLMNTKResults", method: str = "simulate", nsim: int = 10_000,
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
    p_mix = _mixture_sf(stat)
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
    p, se = _sim_pvalue(stat, null)
    details.update({"simulations": int(nsim), "Monte Carlo s.e. of p": se,
                    "mixture p-value": p_mix,
                    "share of simulated statistics = 0": float(np.mean(null <= 1e-10)),
                    "seed": seed if isinstance(seed, (int, np.integer)) else None})
    return TestResult(stat, p, f"simulated exact null ({nsim:,} draws)", _NULL_T0,
                      f"finite-sample null of the {'RLRT' if res.reml else 'LRT'} "
                      "(pivotal, simulated)", name=name, df=None, details=details)


# ====================================================================== anova

def _nesting_map(X1: np.ndarray, X0: np.ndarray, tol: float = 1e-8) -> np.ndarray | None:
    """``A`` with ``X0 = X1 A`` when ``col(X0)`` lies in ``col(X1)``, else None."""
    n = X1.shape[0]
    X0 = X0.reshape(n, -1)
    if X0.shape[1] == 0:
        return np.zeros((X1.shape[1], 0))
    if X1.shape[1] == 0:
        return None
    A, *_ = np.linalg.lstsq(X1, X0, rcond=None)
    resid = X0 - X1 @ A
    scale = np.linalg.norm(X0, axis=0)
    if np.all(np.linalg.norm(resid, axis=0) <= tol * np.maximum(scale, 1e-300)):
        return A
    return None


@dataclass
class _Candidate:
    """One model in an anova table, reduced to what the comparison needs."""

    name: str
    description: str
    obj: Any                 # MixedLMNTKResults or statsmodels OLS results
    network: bool
    nobs: int
    response: np.ndarray     # y - offset
    exog: np.ndarray
    row_labels: Any
    reml: bool

    @property
    def k_fe(self) -> int:
        return int(self.exog.shape[1])

    @property
    def npar(self) -> int:
        return self.k_fe + (2 if self.network else 1)

    def llf(self, reml: bool) -> float:
        if self.network:
            if self.obj.reml != reml:  # pragma: no cover - refit handled by the caller
                raise RuntimeError("criterion mismatch")
            return float(self.obj.llf)
        if not reml:
            return float(self.obj.llf)
        # REML log-likelihood of the OLS model (c = 0, the network model's t = 0 value)
        n, p = self.nobs, self.k_fe
        rss = float(self.obj.ssr)
        dof = n - p
        logdet = np.linalg.slogdet(self.exog.T @ self.exog)[1] if p else 0.0
        return -0.5 * (dof * (LOG_2PI + math.log(rss / dof)) + dof + logdet)


def _rhs(names: Sequence[str]) -> str:
    names = [str(v) for v in names]
    if not names:
        return "0"
    return " + ".join(names) if len(names) <= 6 else f"{len(names)} columns ({names[0]}, ...)"


def _describe_ntk(res: "MixedLMNTKResults") -> str:
    d = res.model.data
    lhs = d.formula if d.formula else f"{d.endog_name} ~ {_rhs(res.model.exog_names)}"
    net = getattr(res.model.kernel_source, "description", "kernel")
    return f"{lhs} + NTK[{net}]"


def _candidate(obj: Any, name: str) -> _Candidate:
    from .results import MixedLMNTKResults

    if isinstance(obj, MixedLMNTKResults):
        if hasattr(obj.model, "base_model") and getattr(obj, "auto_check", None) is not None:
            # the default rule fell back to free modes: compare the plain model's maximum
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", BoundaryFitWarning)
                warnings.simplefilter("ignore", InterpolationWarning)
                obj = obj.model.base_model.fit(reml=obj.reml, t_method="reml")
        if hasattr(obj.model, "base_model"):
            raise ValueError(
                f"{name!r} was fit with free leading modes (data-chosen fixed effects); anova "
                "compares models without them: refit with fit(t_method='reml'), "
                "or use res.lr_test() / res.score_test() for t = 0 given the free modes")
        if getattr(obj, "t_method", None) not in (None, "reml" if obj.reml else "ml"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", BoundaryFitWarning)
                warnings.simplefilter("ignore", InterpolationWarning)
                # a likelihood comparison needs the maximum of the criterion
                obj = obj.model.fit(reml=obj.reml, t_method="reml" if obj.reml else "ml")
        m = obj.model
        return _Candidate(name, _describe_ntk(obj), obj, True, int(m.nobs),
                          np.asarray(m.endog - m.offset, dtype=float), np.asarray(m.exog, float),
                          m.data.row_labels, obj.reml)
    model = getattr(obj, "model", None)
    if model is not None and type(model).__name__ == "OLS" and hasattr(obj, "llf"):
        X = np.asarray(model.exog, dtype=float)
        y = np.asarray(model.endog, dtype=float)
        w = getattr(model, "weights", None)
        if w is not None and np.ndim(w) and not np.all(np.asarray(w) == 1):  # pragma: no cover
            raise TypeError("weighted least squares is not a t = 0 null of this model")
        desc = getattr(model, "formula", None) or \
            f"{getattr(model, 'endog_names', 'y')} ~ {_rhs(getattr(model, 'exog_names', []))}"
        labels = getattr(getattr(model, "data", None), "row_labels", None)
        return _Candidate(name, f"{desc} (no network, t = 0)", obj, False, int(y.shape[0]),
                          y, X, labels, False)
    raise TypeError(
        f"anova compares MixedLMNTKResults and statsmodels OLS results (the no-network "
        f"null, e.g. res.null_fit() or smf.ols(...).fit()); got {type(obj).__name__}")


def _check_same_data(cands: list[_Candidate]) -> None:
    ref = cands[0]
    for c in cands[1:]:
        if c.nobs != ref.nobs:
            raise ValueError(
                f"models were fit to different rows: {ref.name!r} has {ref.nobs} observations "
                f"and {c.name!r} has {c.nobs}; refit them on the same complete rows")
        if ref.row_labels is not None and c.row_labels is not None:
            a, b = pd.Index(ref.row_labels), pd.Index(c.row_labels)
            if not a.equals(b):
                raise ValueError(f"models were fit to different rows ({ref.name!r} and "
                                 f"{c.name!r} have different row labels)")
        scale = max(float(np.max(np.abs(ref.response))), 1e-300)
        if not np.allclose(ref.response, c.response, rtol=0, atol=1e-10 * scale):
            raise ValueError(
                f"models were fit to different responses ({ref.name!r} and {c.name!r}; for "
                "a network model the response is y - offset: compare it with the OLS "
                "of y - offset on the same design, res.null_fit())")


def _same_kernel(a: "MixedLMNTKResults", b: "MixedLMNTKResults") -> bool:
    la, lb = a.model.profile.lam, b.model.profile.lam
    if la.shape != lb.shape or a.model.profile.trace != b.model.profile.trace:
        return False
    da = getattr(a.model.kernel_source, "description", None)
    db = getattr(b.model.kernel_source, "description", None)
    return da == db and np.allclose(la, lb, rtol=1e-9, atol=1e-12 * max(float(la.max()), 1e-300))


@dataclass(repr=False)
class AnovaResults:
    """R-style comparison table returned by :func:`anova`.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per model (sorted by number of parameters): ``Df``, ``AIC``,
        ``BIC``, ``logLik``, ``deviance``, ``Chisq``, ``Chi Df``, ``Pr(>Chisq)``;
        each row from the second is compared with the row above it (NaN where
        no p-value is defined, with the reason in ``notes``).
    tests : dict
        ``{(smaller, larger): TestResult}`` for each consecutive pair.
    models : dict
        Model name -> description.
    notes : list of str
        Refits, criteria, how each p-value was obtained.
    criterion : str
        ``"REML"`` or ``"ML"``.
    """

    table: pd.DataFrame
    tests: dict
    models: dict
    notes: list
    criterion: str

    def __getitem__(self, key: Any) -> Any:
        return self.table[key]

    def _table_str(self) -> str:
        t = self.table.copy()
        fmt = {"AIC": "{:.2f}", "BIC": "{:.2f}", "logLik": "{:.3f}", "deviance": "{:.3f}",
               "Chisq": "{:.4f}", "Pr(>Chisq)": "{:.4g}"}
        for col, f in fmt.items():
            t[col] = [("" if pd.isna(v) else f.format(v)) for v in t[col]]
        for col in ("Df", "Chi Df"):
            t[col] = ["" if pd.isna(v) else f"{int(v)}" for v in t[col]]
        return t.to_string()

    def __str__(self) -> str:
        lines = ["Models:"] + [f"{k}: {v}" for k, v in self.models.items()]
        lines += [self._table_str()]
        lines += self.notes
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.__str__()

    def _repr_html_(self) -> str:
        models = "".join(f"<li><code>{html.escape(k)}</code>: {html.escape(v)}</li>"
                         for k, v in self.models.items())
        notes = "".join(f"<li>{html.escape(s)}</li>" for s in self.notes)
        return (f"<div><b>Models</b><ul>{models}</ul>{self.table.to_html(na_rep='')}"
                f"<ul>{notes}</ul></div>")


def anova(*models: Any, names: Sequence[str] | None = None, null: str = "simulate",
          nsim: int = 10_000, seed: Any = None, refit: bool | None = None) -> AnovaResults:
    """Compare fitted models with likelihood-ratio tests (R's ``anova`` for mixed models).

    Parameters
    ----------
    *models : MixedLMNTKResults or statsmodels OLS results
        Models fit to the same rows and response.  A plain linear model
        (statsmodels ``OLS`` results, e.g. ``res.null_fit()`` or
        ``smf.ols(formula, df).fit()``) is the no-network model, ``t = 0``; for a
        network model with an offset f0 the comparable OLS is fit to ``y - f0``.
    names : sequence of str, optional
        Row labels (default ``model1, model2, ...`` in the order given).
    null : {"simulate", "mixture"}
        Null distribution for boundary comparisons (network vs no network,
        ``t = 0`` on the boundary): the exact simulated null (default) or the
        asymptotic 50:50 mixture ``0.5 chi2_d + 0.5 chi2_{d+1}`` (d = number of
        extra fixed effects).  Never a naive chi-square.
    nsim, seed
        Simulations for ``null="simulate"``.
    refit : bool, optional
        ``None`` (default): compare REML criteria when every model has the same
        fixed effects and every network model was fit by REML; otherwise refit the
        REML network models by ML, with an :class:`MLRefitWarning` ("refitting
        model(s) with ML (instead of REML)").  ``True`` always compares ML fits;
        ``False`` never refits (an error if REML fits with different fixed effects
        would have to be compared).

    Returns
    -------
    AnovaResults
        ``table`` sorted by the number of parameters (``Df``); each row from the
        second is compared with the row above.  Nested pairs get ``Chisq``,
        ``Chi Df`` and ``Pr(>Chisq)``: a boundary null for network vs no
        network, chi-square(Chi Df) for nested fixed effects under the same
        kernel.  Non-nested pairs (different architectures, non-nested designs)
        get AIC/BIC only.

    Raises
    ------
    ValueError
        Models fit to different rows or different responses; fewer than one model.

    Examples
    --------
    >>> import numpy as np, mixednn as mn
    >>> rng = np.random.default_rng(0)
    >>> Z = rng.normal(size=(80, 2)); y = np.sin(2 * Z[:, 0]) + 0.3 * rng.normal(size=80)
    >>> res = mn.MixedLMNTK(y, np.ones((80, 1)), Z, network=mn.MLP(depth=2)).fit()
    >>> tab = mn.anova(res.null_fit(), res, names=["ols", "ntk"], nsim=2000, seed=1)
    >>> list(tab.table.columns)
    ['Df', 'AIC', 'BIC', 'logLik', 'deviance', 'Chisq', 'Chi Df', 'Pr(>Chisq)']
    """
    if not models:
        raise ValueError("anova needs at least one model")
    if null not in ("simulate", "mixture"):
        raise ValueError(f"null must be 'simulate' or 'mixture', got {null!r}")
    if names is None:
        names = [f"model{i + 1}" for i in range(len(models))]
    names = [str(s) for s in names]
    if len(names) != len(models) or len(set(names)) != len(names):
        raise ValueError("names must be unique, one per model")
    cands = [_candidate(m, s) for m, s in zip(models, names)]
    _check_same_data(cands)
    notes: list[str] = []

    # REML criteria are comparable only for the same design matrix (a reparametrised
    # design shifts log det(X^T W X)); ML is invariant, so anything else is refit by ML
    x0 = cands[0].exog
    same_fe = all(c.exog.shape == x0.shape
                  and np.allclose(c.exog, x0, rtol=1e-12, atol=1e-12 * max(1.0, np.abs(x0).max()
                                                                            if x0.size else 1.0))
                  for c in cands)
    net_reml = {c.reml for c in cands if c.network}
    any_reml = True in net_reml
    if refit is None:
        use_ml = not (same_fe and net_reml <= {True} and any_reml)
    elif refit:
        use_ml = True
    else:
        if any_reml and (not same_fe or False in net_reml):
            raise ValueError("REML log-likelihoods of models with different fixed effects (or "
                             "mixed REML/ML fits) are not comparable; use refit=None or True")
        use_ml = not any_reml
    reml = not use_ml
    if use_ml and any_reml:
        refitted = [c.name for c in cands if c.network and c.reml]
        msg = "refitting model(s) with ML (instead of REML): " + ", ".join(refitted)
        warnings.warn(msg, MLRefitWarning, stacklevel=2)
        notes.append(msg)
        for c in cands:
            if c.network and c.reml:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", BoundaryFitWarning)
                    warnings.simplefilter("ignore", InterpolationWarning)
                    c.obj = c.obj.model.fit(reml=False, t_method="ml")
                c.reml = False
    crit = "REML" if reml else "ML"

    order = sorted(range(len(cands)), key=lambda i: cands[i].npar)  # stable
    cands = [cands[i] for i in order]
    rows = []
    tests: dict = {}
    for pos, c in enumerate(cands):
        ll = c.llf(reml)
        k = c.npar
        row = {"Df": k, "AIC": -2 * ll + 2 * k, "BIC": -2 * ll + k * math.log(c.nobs),
               "logLik": ll, "deviance": -2 * ll, "Chisq": np.nan, "Chi Df": np.nan,
               "Pr(>Chisq)": np.nan}
        if pos > 0:
            prev = cands[pos - 1]
            test = _pair_test(prev, c, reml, null, nsim, seed)
            tests[(prev.name, c.name)] = test
            if test.valid:
                row["Chisq"] = test.statistic
                row["Chi Df"] = test.df
                row["Pr(>Chisq)"] = test.pvalue
            notes.append(f"{c.name} vs {prev.name}: "
                         + (test.method if test.valid else f"no p-value: {test.reason}"))
        rows.append(row)
    table = pd.DataFrame(rows, index=[c.name for c in cands])
    table["Df"] = table["Df"].astype(int)
    notes.insert(0, f"Log-likelihoods: {crit}"
                 + (" (same fixed effects in every model)" if reml else ""))
    return AnovaResults(table, tests, {c.name: c.description for c in cands}, notes, crit)


def _pair_test(small: _Candidate, big: _Candidate, reml: bool, null: str, nsim: int,
               seed: Any) -> TestResult:
    """Likelihood-ratio test of ``small`` (H0) within ``big``, or an InapplicableTest."""
    title = f"LR test: {small.name} within {big.name}"
    h0 = f"{small.name} ({small.description})"
    if big.npar == small.npar:
        return _inapplicable(title, h0, "same number of parameters (not nested)")
    A = _nesting_map(big.exog, small.exog)
    if A is None:
        return _inapplicable(title, h0, "the fixed effects are not nested; compare AIC/BIC")
    d = big.k_fe - small.k_fe
    stat = max(2.0 * (big.llf(reml) - small.llf(reml)), 0.0)
    if not small.network and not big.network:
        p = float(stats.chi2.sf(stat, d))
        return TestResult(stat, p, f"chi-square({d})", h0, f"chi2_{d}", name=title, df=d)
    if small.network and big.network:
        if not _same_kernel(small.obj, big.obj):
            return _inapplicable(title, h0, "different networks/kernels (not nested); "
                                 "compare AIC/BIC")
        p = float(stats.chi2.sf(stat, d))
        return TestResult(stat, p, f"chi-square({d}), same kernel, nested fixed effects",
                          h0, f"chi2_{d}", name=title, df=d)
    if small.network and not big.network:
        return _inapplicable(title, h0, "the smaller model has a network and the larger "
                             "does not (not nested); compare AIC/BIC")
    # boundary: no network (t = 0) within a network model
    res = big.obj
    if null == "mixture":
        p = _mixture_sf(stat, d)
        dist = f"0.5 chi2_{d} + 0.5 chi2_{d + 1}"
        return TestResult(stat, p, f"boundary (t = 0): asymptotic mixture {dist}", h0, dist,
                          name=title, df=d + 1)
    draws = simulate_lr_null(res, nsim, seed, reml=reml,
                             nested_exog=None if d == 0 else small.exog)
    p, se = _sim_pvalue(stat, draws)
    return TestResult(stat, p, f"boundary (t = 0): simulated exact null ({nsim:,} draws)", h0,
                      f"finite-sample null of the {'RLRT' if reml else 'LRT'} (simulated)",
                      name=title, df=d + 1,
                      details={"Monte Carlo s.e. of p": se,
                               "mixture p-value": _mixture_sf(stat, d)})


def compare_lr_test(res: Any, other: Any, *, null: str = "simulate", nsim: int = 10_000,
                    seed: Any = None, refit: bool | None = None) -> TestResult:
    """Likelihood-ratio test between two nested models (either order).

    The same rules as :func:`anova` for two models: the smaller model (fewer
    parameters) is the null; ML refits when the fixed effects differ; the
    boundary null for network vs no network.  Returns an
    :class:`InapplicableTest` for non-nested models.

    Parameters
    ----------
    res, other : MixedLMNTKResults or statsmodels OLS results
    null, nsim, seed, refit
        As in :func:`anova`.

    Returns
    -------
    TestResult
    """
    tab = anova(res, other, names=["self", "other"], null=null, nsim=nsim, seed=seed,
                refit=refit)
    return next(iter(tab.tests.values()))


def ols_null(res: "MixedLMNTKResults") -> Any:
    """The no-network null of a fitted model: statsmodels OLS of ``y - f0`` on ``X``.

    Same rows, column names and row labels as the network model, so that
    :func:`anova` accepts the pair.  Its ML log-likelihood equals the network
    model's profiled ML criterion at ``t = 0``.

    Parameters
    ----------
    res : MixedLMNTKResults

    Returns
    -------
    statsmodels.regression.linear_model.RegressionResultsWrapper
    """
    import statsmodels.api as sm

    m = res.model
    if m.k_fe == 0:
        raise ValueError("the model has no fixed effects, so its t = 0 null has no OLS form; "
                         "use res.lr_test() or res.score_test() for H0: t = 0")
    d = m.data
    idx = d.row_labels if d.row_labels is not None else pd.RangeIndex(m.nobs)
    y = pd.Series(m.endog - m.offset, index=idx, name=d.endog_name)
    X = pd.DataFrame(m.exog, index=idx, columns=m.exog_names)
    return sm.OLS(y, X).fit()
