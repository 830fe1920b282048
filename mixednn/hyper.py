"""Kernel hyperparameters by likelihood: per-input scales, bias_std and depth.

The NTK of :class:`~mixednn.kernels.analytic.MLP` has hyperparameters that the data can
choose: a scale per network input (``input_scales="ard"``: input j enters as
``s_j z_j``, automatic relevance determination), the bias standard deviation and the
depth.  :func:`optimize_kernel` maximises the profiled REML (or ML) log-likelihood,
with t, beta and s2 profiled out, over the continuous ones and compares depths.

Gradients through the decomposition
-----------------------------------
Every evaluation needs a new kernel and a new decomposition ``K = U diag(lam) U^T``.
The gradient then costs about one more: with ``E = exp(-tK)``, ``r~`` the rotated
GLS residual, ``A = X~^T W X~`` and the divided differences
``Gamma_ij = (exp(-t lam_i) - exp(-t lam_j)) / (lam_i - lam_j)`` (``-t exp(-t lam_i)``
on the diagonal, the Daleckii-Krein form of the Frechet derivative of ``exp(-tK)``),
the envelope theorem (t, beta, s2 at their optimum) gives

    d l / d theta = < dK/d theta, B >_F,      B = U S U^T,
    S = -1/2 [ (dof / RSS) Gamma o (r~ r~^T) + t I + [REML] Gamma o (X~ A^{-1} X~^T) ],

with ``dof = n - p`` (REML) or ``n`` (ML).  B does not depend on which hyperparameter
is differentiated, so a single reverse-mode pass (torch autograd) through the kernel
recursion of the scalar ``<K(theta), B>`` gives the whole gradient: the cost is one
kernel evaluation with its backward pass plus two n x n x n matrix products, whatever
the number of inputs.  ``subsample=`` runs the optimisation on a random subset of
rows (the final fit uses all of them); :attr:`KernelOptimization.cost` reports the
evaluations and the time spent in each part.

Differentiable closed forms exist here for ``relu``, ``leaky_relu``, ``abs``, ``erf``,
``sin`` and ``identity``; other activations can be compared (:func:`compare_kernels`) but not
optimised.

Example
-------
>>> import numpy as np, mixednn as mn
>>> from mixednn.hyper import optimize_kernel
>>> rng = np.random.default_rng(0); Z = rng.normal(size=(80, 3))
>>> y = np.sin(2 * Z[:, 0]) + 0.3 * rng.normal(size=80)       # only input 0 matters
>>> m = mn.MixedLMNTK(y, np.ones((80, 1)), Z, network=mn.MLP(depth=2, bias_std=0.5))
>>> opt = optimize_kernel(m, input_scales="ard", maxiter=30)
>>> opt.llf > opt.llf_start + 5
True
>>> bool(opt.scales.iloc[0] > 100 * opt.scales.iloc[1:].max())
True
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import pandas as pd
import scipy.optimize

from .kernels import KernelSource, resolve_kernel
from .kernels.activations import canonical_activation
from .kernels.analytic import MLP
from .kernelgrad import DIFFERENTIABLE, kernel_gradient, reml_gradient_matrix
from .profile import SpectralProfile
from .spectral import decompose

if TYPE_CHECKING:  # pragma: no cover
    from .model import MixedLMNTK
    from .results import MixedLMNTKResults

__all__ = ["ScaledInputsMLP", "profiled_loglike", "profiled_loglike_and_grad",
           "optimize_kernel", "KernelOptimization", "choose_kernel", "KernelChoice",
           "SIN_NETWORK", "compare_kernels", "with_network"]


@dataclass
class _Eval:
    llf: float
    t: float
    grad: np.ndarray | None
    seconds: dict


def _profile_of(K: np.ndarray, y: np.ndarray, X: np.ndarray) -> tuple[SpectralProfile, np.ndarray]:
    basis = decompose(K, method="eigh", check_psd=True, overwrite=True, what="the NTK")
    U = basis.eigenvectors
    Yr = U.T @ np.column_stack([y, X])
    return SpectralProfile(basis.eigenvalues, Yr[:, 0], Yr[:, 1:], basis.trace, y.shape[0]), U


class ScaledInputsMLP:
    """An :class:`MLP` whose inputs are multiplied by per-input scales ``s``: ``K(Z s, Z' s)``.

    Parameters
    ----------
    net : MLP
    scales : array-like, shape (d,)
    names : sequence of str, optional

    Examples
    --------
    >>> import numpy as np
    >>> k = ScaledInputsMLP(MLP(depth=1), [2.0, 0.5])
    >>> Z = np.array([[1.0, 0.0], [0.0, 1.0]])
    >>> bool(np.allclose(k.ntk(Z), MLP(depth=1).ntk(Z * [2.0, 0.5])))
    True
    """

    def __init__(self, net: MLP, scales: Any, names: Sequence[str] | None = None,
                 estimated_params: int = 0):
        s = np.asarray(scales, dtype=float).ravel()
        if not (np.all(np.isfinite(s)) and np.all(s >= 0)):
            raise ValueError(f"input scales must be finite and non-negative, got {s}")
        self.net = net
        self.scales = s
        self.names = list(names) if names is not None else [f"z{j + 1}" for j in range(s.size)]
        #: hyperparameters (scales, bias std) estimated from y; 0 for scales given in advance
        self.estimated_params = int(estimated_params)

    def ntk(self, Z1: np.ndarray, Z2: np.ndarray | None = None) -> np.ndarray:
        Z1 = np.asarray(Z1, dtype=float)
        if Z1.shape[1] != self.scales.size:
            raise ValueError(f"inputs have {Z1.shape[1]} columns; {self.scales.size} scales")
        return self.net.ntk(Z1 * self.scales, None if Z2 is None else np.asarray(Z2, float) * self.scales)

    def describe(self) -> str:
        sc = ", ".join(f"{nm}={v:.3g}" for nm, v in zip(self.names, self.scales))
        return f"{self.net.describe()}; input scales (ARD): {sc}"

    def source(self) -> KernelSource:
        """A kernel source for :class:`~mixednn.model.MixedLMNTK` (``network=`` accepts it)."""
        return KernelSource(self.ntk, self.ntk, self.describe(),  # bound methods: picklable
                            network=self.net, estimated_params=self.estimated_params)


def with_network(model: "MixedLMNTK", network: Any) -> "MixedLMNTK":
    """A copy of ``model`` (same data, designs and input standardisation) with another kernel.

    Parameters
    ----------
    model : MixedLMNTK
    network : MLP, ScaledInputsMLP or KernelSource

    Returns
    -------
    MixedLMNTK
        Not yet decomposed.
    """
    if isinstance(network, ScaledInputsMLP):
        src = network.source()
    elif isinstance(network, MLP) and network.width is None:
        src = resolve_kernel(network, None, has_inputs=True)
    elif isinstance(network, KernelSource):
        src = network
    else:
        raise TypeError("network must be an analytic MLP (width=None), a ScaledInputsMLP or a "
                        f"KernelSource, got {type(network).__name__}")
    if model.scaled_inputs is None:
        raise ValueError("this model has no network inputs (precomputed kernel): nothing to tune")
    return model.with_kernel(src)


# ------------------------------------------------------------------------ optimisation

@dataclass(frozen=True)
class KernelOptimization:
    """Result of :func:`optimize_kernel`.

    Attributes
    ----------
    network : MLP or ScaledInputsMLP
        The chosen kernel (``ScaledInputsMLP`` with ``input_scales="ard"``).
    model : MixedLMNTK
        The model on all rows with that kernel; ``.fit()`` it.
    depth, bias_std : int, float
    activation : str
        The chosen activation.
    scales : pandas.Series or None
        Per-input scales (multiplying the standardised inputs).
    llf, llf_start : float
        Profiled log-likelihood (REML or ML, on the rows optimised over) at the optimum
        and at the starting kernel of the chosen depth.
    table : pandas.DataFrame
        One row per depth tried (per activation and depth, indexed by both, where
        several activations were compared): ``activation``, ``llf``, ``llf_start``,
        ``n_params`` (kernel hyperparameters estimated), ``aic``, ``bias_std`` and
        ``evals``.
    cost : dict
        ``evaluations``, ``rows`` (n used), ``seconds`` and the time in ``kernel``,
        ``decomposition``, ``search`` (t) and ``gradient``.
    """

    network: Any
    model: "MixedLMNTK"
    depth: int
    bias_std: float
    scales: pd.Series | None
    llf: float
    llf_start: float
    reml: bool
    table: pd.DataFrame
    cost: dict = field(default_factory=dict)
    #: the model with the kernel the search started from (fixed before seeing y)
    start_model: Any = None
    #: the chosen activation (one of ``activations=``)
    activation: str | None = None

    def fit(self, **kwargs: Any) -> "MixedLMNTKResults":
        """Fit the model on all rows with the chosen kernel (``MixedLMNTK.fit`` options)."""
        kwargs.setdefault("reml", self.reml)
        return self.model.fit(**kwargs)

    def score_test(self, method: str = "exact", *, tol: float = 1e-9):
        """Score test of t = 0 with the *starting* kernel, fixed before the data chose
        the hyperparameters.

        The chosen kernel's hyperparameters exist only under the alternative (at t = 0
        the kernel does not enter the likelihood), and choosing them by maximising the
        likelihood makes a test with the chosen kernel anticonservative (its size at
        alpha = 0.05 is measured in docs/tests.md: 0.146 for the score test and 0.209 for
        the restricted LRT, against 0.040 here).  A kernel fixed in advance keeps the exact
        null; the chosen kernel is for estimation and prediction.

        Parameters
        ----------
        method, tol
            As for :meth:`MixedLMNTKResults.score_test`.
        """
        if self.start_model is None:
            raise ValueError("this KernelOptimization keeps no starting model")
        res = self.start_model.fit(reml=self.reml, t_method="reml" if self.reml else "ml")
        return res.score_test(method, tol=tol)


def profiled_loglike_and_grad(Z: np.ndarray, y: np.ndarray, X: np.ndarray, net: MLP,
                              log_scales: np.ndarray | None, log_bias: float | None,
                              reml: bool = True, gradient: bool = True) -> _Eval:
    """Profiled log-likelihood at the kernel ``(net, scales, bias_std)`` and its gradient
    w.r.t. ``(log scales..., log bias_std)`` (only the parameters that are not None)."""
    secs = {"kernel": 0.0, "decomposition": 0.0, "search": 0.0, "gradient": 0.0}
    b = float(np.exp(log_bias)) if log_bias is not None else net.bias_std
    n1 = MLP(depth=net.depth, activation=net.activation, weight_std=net.weight_std, bias_std=b)
    Zs = Z * np.exp(log_scales) if log_scales is not None else Z
    t0 = time.perf_counter()
    K = n1.ntk(Zs)
    t1 = time.perf_counter()
    prof, U = _profile_of(K, y, X)
    t2 = time.perf_counter()
    est = prof.maximize(reml)
    t3 = time.perf_counter()
    secs.update(kernel=t1 - t0, decomposition=t2 - t1, search=t3 - t2)
    grad = None
    if gradient:
        B = reml_gradient_matrix(prof, U, est.t, reml)
        gs, gb = kernel_gradient(Z, B, n1, log_scales, log_bias)
        parts = []
        if gs is not None:
            parts.append(gs)
        if gb is not None:
            parts.append([gb])
        grad = np.concatenate(parts) if parts else np.empty(0)
        secs["gradient"] = time.perf_counter() - t3
    return _Eval(float(est.llf), float(est.t), grad, secs)


def profiled_loglike(Z: np.ndarray, y: np.ndarray, X: np.ndarray, net: MLP, reml: bool = True) -> float:
    """Profiled REML (or ML) log-likelihood of the kernel ``net`` on inputs Z (no gradient)."""
    return profiled_loglike_and_grad(Z, y, X, net, None, None, reml, gradient=False).llf


def optimize_kernel(model: "MixedLMNTK", *, input_scales: str | None = "ard",
                    bias_std: bool | float = False, depths: Sequence[int] | None = None,
                    activations: Sequence[str] | None = None,
                    reml: bool = True, subsample: int | str | None = "auto", seed: int = 0,
                    maxiter: int = 50, bounds: tuple[float, float] = (1e-3, 1e3),
                    starts: int = 1, screen: int = 0) -> KernelOptimization:
    """Choose kernel hyperparameters by maximising the profiled REML (or ML) likelihood.

    Parameters
    ----------
    model : MixedLMNTK
        With an analytic MLP network (``width=None``) and network inputs.
    input_scales : {"ard", None}
        ``"ard"``: one scale per (standardised) network input.
    bias_std : bool or float
        ``True``: estimate bias_std too (from the network's value, or 0.1 if that is 0);
        ``False``: keep the network's; a float: fix it at that value.
    depths : sequence of int, optional
        Depths to compare (each optimised); default: the network's depth only.
    activations : sequence of str, optional
        Activations to compare (each optimised at every depth), e.g. ``("relu", "sin")``;
        default: the network's only.  The kernel with the smallest AIC wins (the same
        as the largest likelihood where the candidates have equally many
        hyperparameters).  ``sin`` with ``bias_std=True`` and ARD scales is a Gaussian
        (RBF) kernel with ARD length scales plus a smooth non-stationary part
        (docs/model.md section 5).
    reml : bool
    subsample : int, "auto" or None
        Optimise on a random subset of this many rows (``seed``); the returned model
        uses all rows.  ``"auto"`` (default): all rows up to ``AUTO_SUBSAMPLE`` (600),
        else 600 of them -- each evaluation decomposes a kernel of that size, so the whole
        search then costs about one to three plain fits of the full data (measured on the
        bikeshare split of issue 15, n = 2,000, 5 inputs, ARD with bias: 2.5-3x a plain
        REML fit with the same held-out error as a search on all rows).  ``None``: all
        rows.
    maxiter : int
        L-BFGS-B iterations per depth.
    bounds : (float, float)
        Box for the scales and bias_std.
    starts : int
        Optimiser starts per depth: the plain kernel, then ``starts - 1`` seeded random
        log scales (``seed``) around it; the best maximum is kept.  The ARD likelihood has
        local maxima (on 500-row bikeshare subsamples one start found MSE 0.31, another
        0.67); each start costs about one search.
    screen : int
        Candidate starting points screened by their likelihood alone (no gradient, about
        a third of an optimiser step each): the plain kernel and ``screen - 1`` seeded
        random log scales; the ``starts`` best of them start the optimiser.  ``0``
        (default): no screening, the starts described above.  On three 500-row
        subsamples each of bikeshare and diamonds (``benchmarks/bench_peers.py``; sin,
        ``bias_std=True``) ``screen=16`` reached a higher maximum on 3 of the 6 (by 54-142
        log-likelihood units), the same on 2 and a lower one on 1 (by 61), at 0.95-1.1
        times the cost: it chooses better starting points, it cannot promise the global
        maximum.

    Returns
    -------
    KernelOptimization

    Notes
    -----
    A ReLU-type (or linear) NTK is positively homogeneous in the inputs and the bias
    jointly: ``K(c s, c b) = c^2 K(s, b)``, and t absorbs the factor.  With ARD scales
    and ``bias_std=True`` only the d ratios are identified: bias_std is searched relative
    to the geometric mean of the scales (down to 1e-6 of it) and the result is reported
    with scales of geometric mean 1 (``n_params`` = d); with ``bias_std = 0`` a common
    factor of the scales is likewise a flat direction.  Smooth activations (erf) have no such symmetry.  Without
    a bias a ReLU NTK sees an input only through angles and norms, so ARD needs
    ``bias_std > 0`` to isolate single inputs.  The number of kernel
    hyperparameters enters the AIC of the comparison table.

    Where the starting kernel's REML maximum is t = 0 the kernel does not enter the
    likelihood there, its gradient is exactly 0 and the search stays at the start (seen
    in 57% of null simulations at n = 100, docs/tests.md); and a scale that runs to
    ``bounds`` means the likelihood wants that input dropped (lower bound) or dominant
    (upper bound) -- ``scales`` shows it, the search does not warn.
    """
    net = model.network
    acts = _check_activations(net, activations)
    _check_optimizable(model, net, input_scales, acts)
    Z, y, X = _rows_to_optimize(model, subsample, seed)
    depths = [net.depth] if depths is None else [int(d) for d in depths]
    if not depths or min(depths) < 0:
        raise ValueError(f"depths must be non-negative integers, got {depths}")
    b0, b_fixed = _bias_start(net, bias_std)
    fit_bias = bias_std is True
    starts, screen = _check_starts(starts), _check_screen(screen)
    t_start = time.perf_counter()
    cost: dict = {}
    rows = []
    best = None
    for act in acts:
        # K(c s, c b) = c^2 K(s, b) for these: only ratios are identified, so the bias is
        # parameterised relative to the geometric mean of the scales (``ratio`` mode) and
        # the result normalised to scales with geometric mean 1
        homogeneous = act in ("relu", "leaky_relu", "abs", "identity", "linear")
        par = _Parameters(d=Z.shape[1], ard=input_scales == "ard", fit_bias=fit_bias,
                          ratio=fit_bias and input_scales == "ard" and homogeneous)
        net_a = MLP(depth=net.depth, activation=act, weight_std=net.weight_std,
                    bias_std=net.bias_std)
        search = _DepthSearch(Z, y, X, net_a, par, b0=b0, b_fixed=b_fixed, reml=reml,
                              bounds=bounds, maxiter=maxiter, k_fe=model.k_fe,
                              starts=starts, screen=screen, seed=seed)
        for depth in depths:
            row, cand = search.run(depth)
            rows.append({"activation": act, **row})
            if best is None or row["aic"] < best[0]:
                best = (row["aic"], act, row["n_params"], cand)
        for k_, v in search.cost.items():
            cost[k_] = v if k_ == "rows" else cost.get(k_, 0) + v
    cost["seconds"] = time.perf_counter() - t_start
    _, act, k_hat, (l_hat, depth, ls, b_hat, l_start) = best
    network, scales = _chosen_network(model, net, depth, ls, b_hat, act, k_hat)
    table = pd.DataFrame(rows)
    table = table.set_index("depth") if len(acts) == 1 else table.set_index(["activation", "depth"])
    # the fitted model's kernel records its estimated hyperparameters (AIC/BIC, tests of t = 0)
    src = network.source() if isinstance(network, ScaledInputsMLP) else \
        resolve_kernel(network, None, has_inputs=True).with_estimated_params(k_hat)
    return KernelOptimization(network, with_network(model, src), depth, b_hat, scales, l_hat,
                              l_start, reml, table, cost, start_model=model, activation=act)


# ------------------------------------------------------------ steps of optimize_kernel()

def _check_starts(starts: Any) -> int:
    if isinstance(starts, bool) or not isinstance(starts, (int, np.integer)) or starts < 1:
        raise ValueError(f"starts must be a positive integer, got {starts!r}")
    return int(starts)


def _check_screen(screen: Any) -> int:
    if isinstance(screen, bool) or not isinstance(screen, (int, np.integer)) or screen < 0:
        raise ValueError(f"screen must be a non-negative integer (0: no screening), got "
                         f"{screen!r}")
    return int(screen)


def _check_activations(net: Any, activations: Sequence[str] | None) -> list[str]:
    """The activations to compare: the network's own, or the validated ``activations``."""
    if activations is None:
        return [getattr(net, "activation", "")]
    if isinstance(activations, str):
        activations = [activations]
    acts = [canonical_activation(a) for a in activations]
    if not acts or len(set(acts)) != len(acts):
        raise ValueError(f"activations must be a non-empty sequence of distinct names, got "
                         f"{list(activations)!r}")
    return acts


def _check_optimizable(model: "MixedLMNTK", net: Any, input_scales: str | None,
                       acts: Sequence[str]) -> None:
    if not isinstance(net, MLP) or net.width is not None:
        raise ValueError("optimize_kernel needs a model with an analytic network (mn.MLP with "
                         f"width=None); this model's kernel is {model.kernel_source.description!r}")
    for act in acts:
        if act not in DIFFERENTIABLE:
            raise NotImplementedError(
                f"activation {act!r} has no differentiable NTK here; supported: "
                f"{', '.join(DIFFERENTIABLE)} (compare others with compare_kernels)")
    if input_scales not in ("ard", None):
        raise ValueError(f"input_scales must be 'ard' or None, got {input_scales!r}")
    # only a low-rank basis can leave a part outside it; asking a dense model for its profile
    # would decompose the starting kernel on every row for nothing
    if model.low_rank is not None and model.profile.rest_gram is not None:
        raise NotImplementedError("optimize_kernel needs a dense (full) decomposition")
    if model.groups is not None:
        raise NotImplementedError(
            "optimize_kernel does not support group random effects ((1 | g) terms) yet: its "
            "REML gradient is that of the network-only model. Choose the kernel on the "
            "model without the bar terms, then refit with them (mn.hyper.with_network)")
    if model.weights is not None:
        raise NotImplementedError("optimize_kernel does not support precision weights= yet "
                                  "(its REML gradient is that of the unweighted kernel); "
                                  "compare candidate kernels with compare_kernels instead")


#: rows the hyperparameter search uses by default (``subsample="auto"``)
AUTO_SUBSAMPLE = 600


def _rows_to_optimize(model: "MixedLMNTK", subsample: int | None, seed: int
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scaled inputs, ``y - offset`` and X of all rows, or of a random subset."""
    Z = model.scaled_inputs
    y = model.endog - model.offset
    X = model.exog
    n = Z.shape[0]
    if isinstance(subsample, str) and subsample == "auto":
        subsample = AUTO_SUBSAMPLE if n > AUTO_SUBSAMPLE else None
    if subsample is not None:
        if not (isinstance(subsample, (int, np.integer)) and not isinstance(subsample, bool)
                and model.k_fe + 3 <= subsample):
            raise ValueError(f"subsample must be 'auto', None or an integer >= p + 3, got "
                             f"{subsample!r}")
        if subsample < n:
            idx = np.sort(np.random.default_rng(seed).choice(n, int(subsample), replace=False))
            Z, y, X = Z[idx], y[idx], X[idx]
    return Z, y, X


def _bias_start(net: MLP, bias_std: bool | float) -> tuple[float, float]:
    """(starting bias_std when it is estimated, bias_std when it is not)."""
    if isinstance(bias_std, bool):
        return (net.bias_std if net.bias_std > 0 else 0.1), net.bias_std
    if not (np.isfinite(bias_std) and bias_std >= 0):
        raise ValueError(f"bias_std must be True, False or a non-negative number, got {bias_std!r}")
    return float(bias_std), float(bias_std)


@dataclass
class _Parameters:
    """The optimiser's vector ``x``: ``d`` log scales (ARD), then log bias_std (if fitted);
    in ``ratio`` mode the last entry is log bias_std minus the mean log scale."""

    d: int
    ard: bool
    fit_bias: bool
    ratio: bool

    def start(self, b0: float, bounds: tuple[float, float]) -> np.ndarray:
        x0 = []
        if self.ard:
            x0 += [0.0] * self.d
        if self.fit_bias:
            x0 += [math.log(max(b0, bounds[0]))]
        return np.array(x0, dtype=float)

    def box(self, size: int, bounds: tuple[float, float]) -> list[tuple[float, float]]:
        box = [(math.log(bounds[0]), math.log(bounds[1]))] * size
        if self.ratio:
            box[-1] = (math.log(1e-6), math.log(1e2))
        return box

    def unpack(self, x: np.ndarray) -> tuple[np.ndarray | None, float | None]:
        """(log scales, log bias_std) at ``x``."""
        ls = x[:self.d] if self.ard else None
        lb = x[-1] if self.fit_bias else None
        if self.ratio:
            lb = lb + float(np.mean(ls))
        return ls, lb

    def chain(self, g: np.ndarray) -> np.ndarray:
        """Gradient in ``x`` from the gradient in (log scales, log bias_std), in place."""
        if self.ratio:  # chain rule through lb = v + mean(u)
            g[:self.d] += g[-1] / self.d
        return g

    def normalised(self, x: np.ndarray) -> tuple[np.ndarray | None, float | None]:
        """``unpack(x)``, in ratio mode shifted to scales of geometric mean 1 (t absorbs
        the factor)."""
        ls, lb = self.unpack(x)
        if self.ratio:
            shift = float(np.mean(ls))
            ls, lb = ls - shift, lb - shift
        return ls, lb

    def n_params(self, size: int) -> int:
        """Identified hyperparameters among the ``size`` entries of ``x``."""
        return size - (1 if self.ratio else 0)


class _DepthSearch:
    """L-BFGS-B over ``x`` for one depth at a time, counting evaluations and time."""

    def __init__(self, Z: np.ndarray, y: np.ndarray, X: np.ndarray, net: MLP, par: _Parameters,
                 *, b0: float, b_fixed: float, reml: bool, bounds: tuple[float, float],
                 maxiter: int, k_fe: int, starts: int = 1, screen: int = 0, seed: int = 0):
        self.Z, self.y, self.X = Z, y, X
        self.screen = screen
        self.net = net
        self.par = par
        self.b0, self.b_fixed = b0, b_fixed
        self.reml = reml
        self.bounds = bounds
        self.maxiter = maxiter
        self.k_fe = k_fe
        self.starts = starts
        self.seed = seed
        self.cost = {"evaluations": 0, "rows": int(Z.shape[0]), "kernel": 0.0,
                     "decomposition": 0.0, "search": 0.0, "gradient": 0.0}

    def run(self, depth: int) -> tuple[dict, tuple]:
        """The table row of ``depth`` and its candidate ``(llf, depth, log scales,
        bias_std, llf_start)``."""
        net, par = self.net, self.par
        base = MLP(depth=depth, activation=net.activation, weight_std=net.weight_std,
                   bias_std=self.b_fixed)
        x0 = par.start(self.b0, self.bounds)
        evals_before = self.cost["evaluations"]

        def fg(x: np.ndarray) -> tuple[float, np.ndarray]:
            return self._negative_llf(base, x)

        start_ev = self._evaluate(base, x0, gradient=False)
        if x0.size:
            box = par.box(x0.size, self.bounds)
            x_hat, l_hat = x0, start_ev.llf
            # the ARD likelihood has local maxima: extra starts at seeded random log scales
            # (N(0, 1.5^2) around the plain kernel, inside the box); the best one is kept
            for xs in self._starting_points(base, x0, start_ev.llf, box):
                opt = scipy.optimize.minimize(fg, xs, jac=True, method="L-BFGS-B", bounds=box,
                                              options={"maxiter": self.maxiter})
                if -float(opt.fun) > l_hat:
                    x_hat, l_hat = opt.x, -float(opt.fun)
        else:
            x_hat, l_hat = x0, start_ev.llf
        ls, lb = par.normalised(x_hat)
        b_hat = float(np.exp(lb)) if lb is not None else self.b_fixed
        k_par = par.n_params(x0.size)
        row = {"depth": depth, "llf": l_hat, "llf_start": start_ev.llf,
               "n_params": k_par, "aic": -2 * l_hat + 2 * (self.k_fe + 2 + k_par),
               "bias_std": b_hat, "evals": self.cost["evaluations"] - evals_before}
        return row, (l_hat, depth, ls, b_hat, start_ev.llf)

    def _starting_points(self, base: MLP, x0: np.ndarray, l0: float,
                         box: list[tuple[float, float]]) -> list[np.ndarray]:
        """The ``starts`` best of ``screen`` candidates by likelihood (no gradient): the
        plain kernel ``x0`` and seeded random log scales ``N(x0, 1.5^2)`` inside the box."""
        rng = np.random.default_rng(self.seed)
        lo, hi = [b[0] for b in box], [b[1] for b in box]
        n_cand = max(self.screen, self.starts)
        cands = [x0] + [np.clip(x0 + rng.normal(0.0, 1.5, x0.size), lo, hi)
                        for _ in range(n_cand - 1)]
        if n_cand == self.starts:  # nothing to screen
            return cands
        llf = [l0] + [self._timed(self._evaluate(base, x, gradient=False)).llf
                      for x in cands[1:]]
        llf = [v if np.isfinite(v) else -np.inf for v in llf]
        order = np.argsort(llf)[::-1][:self.starts]
        return [cands[i] for i in order]

    def _evaluate(self, base: MLP, x: np.ndarray, gradient: bool) -> _Eval:
        self.cost["evaluations"] += 1
        return profiled_loglike_and_grad(self.Z, self.y, self.X, base, *self.par.unpack(x),
                                         self.reml, gradient=gradient)

    def _timed(self, ev: _Eval) -> _Eval:
        """``ev``, its seconds added to the cost by part."""
        for k_, v in ev.seconds.items():
            self.cost[k_] += v
        return ev

    def _negative_llf(self, base: MLP, x: np.ndarray) -> tuple[float, np.ndarray]:
        """``-llf`` and its gradient in ``x`` (the objective of L-BFGS-B)."""
        ev = self._timed(self._evaluate(base, x, gradient=x.size > 0))
        if not np.isfinite(ev.llf):
            return 1e300, np.zeros_like(x)
        g = ev.grad.copy() if ev.grad is not None else np.zeros_like(x)
        return -ev.llf, -self.par.chain(g)


def _chosen_network(model: "MixedLMNTK", net: MLP, depth: int, ls: np.ndarray | None,
                    b_hat: float, activation: str, k_hat: int) -> tuple[Any, pd.Series | None]:
    """The chosen kernel (``ScaledInputsMLP`` with ARD scales, recording its ``k_hat``
    estimated hyperparameters) and its scales."""
    chosen = MLP(depth=depth, activation=activation, weight_std=net.weight_std, bias_std=b_hat)
    if ls is None:
        return chosen, None
    names = list(model.data.ntk_names) or [f"z{j + 1}" for j in range(ls.shape[0])]
    scales = pd.Series(np.exp(ls), index=names, name="scale")
    return ScaledInputsMLP(chosen, np.exp(ls), names, estimated_params=k_hat), scales


#: The network of :func:`choose_kernel`'s search: one ``sin`` layer, whose NTK with a bias
#: std of a few units is a Gaussian (RBF) kernel plus a smooth non-stationary part; its
#: bias std starts at 1 and is estimated with the per-input scales.
SIN_NETWORK = MLP(depth=1, activation="sin", bias_std=1.0)


@dataclass(frozen=True, repr=False)
class KernelChoice:
    """Result of :func:`choose_kernel`: the model's own kernel against the kernel REML chose.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per candidate, indexed ``"start"`` (the model's own kernel, nothing
        estimated) and ``"ard_sin"`` (:data:`SIN_NETWORK` with per-input scales and bias
        std by REML): ``network``, ``n_params`` (kernel hyperparameters estimated), ``t``,
        ``llf`` (REML or ML on all rows), ``aic``, ``bic`` (from ``llf`` with the fixed
        effects, s2, t and ``n_params`` counted) and ``chosen``.
    chosen : str
        The row with the smallest ``criterion``.
    criterion : str
        ``"bic"`` or ``"aic"``.
    model : MixedLMNTK
        The model with the chosen kernel (all rows).
    results : MixedLMNTKResults
        Its REML (or ML) fit, already computed.
    search : KernelOptimization
        The ARD search (its scales, cost and table).
    start_results : MixedLMNTKResults
        The REML (or ML) fit of the model's own kernel.
    reml : bool
    """

    table: pd.DataFrame
    chosen: str
    criterion: str
    model: "MixedLMNTK"
    results: "MixedLMNTKResults"
    search: KernelOptimization
    start_results: "MixedLMNTKResults"
    reml: bool

    @property
    def scales(self) -> pd.Series | None:
        """The per-input scales of the chosen kernel (None when the start won)."""
        return self.search.scales if self.chosen != "start" else None

    def fit(self, **kwargs: Any) -> "MixedLMNTKResults":
        """Fit the chosen model again with other ``MixedLMNTK.fit`` options."""
        kwargs.setdefault("reml", self.reml)
        return self.model.fit(**kwargs)

    def score_test(self, method: str = "exact", *, tol: float = 1e-9):
        """Score test of t = 0 with the model's own kernel, fixed before the data chose one
        (see :meth:`KernelOptimization.score_test` for why not the chosen kernel)."""
        return self.start_results.score_test(method, tol=tol)

    def summary(self) -> str:
        """The comparison as text: one line per candidate, the chosen one marked, then
        the chosen kernel's scales."""
        lik = "REML" if self.reml else "ML"
        tab = self.table[["n_params", "t", "llf", "aic", "bic"]].copy()
        tab.columns = ["params", "t", f"{lik} llf", "AIC", "BIC"]
        tab[""] = np.where(self.table["chosen"], "<- chosen", "")
        lines = [f"Kernel choice by {self.criterion.upper()} ({lik} fits on all "
                 f"{self.model.nobs} rows; params: kernel hyperparameters estimated)",
                 tab.to_string(float_format=lambda v: f"{v:.4g}")]
        if self.scales is not None:
            lines.append("input scales: " + ", ".join(f"{k}={v:.3g}"
                                                       for k, v in self.scales.items()))
        lines.append("test of t = 0: .score_test() (the model's own kernel, fixed in advance)")
        return "\n".join(lines)

    def __repr__(self) -> str:
        delta = float(np.ptp(self.table[self.criterion]))
        return (f"<KernelChoice: {self.chosen!r} by {self.criterion.upper()} "
                f"(difference {delta:.1f}); .summary() for the table>")

    __str__ = summary


def choose_kernel(model: "MixedLMNTK", *, criterion: str = "bic", reml: bool = True,
                  subsample: int | str | None = "auto", seed: int = 0, screen: int = 16,
                  starts: int = 1, maxiter: int = 50) -> KernelChoice:
    """The headline workflow: let the likelihood choose the kernel, then fit by REML.

    Two candidates, each fitted on all rows with the same fixed effects (so their REML
    likelihoods are comparable): the model's own kernel, and a one-layer ``sin`` network
    (:data:`SIN_NETWORK`) with one scale per network input and its bias std estimated by
    REML (:func:`optimize_kernel` with ``input_scales="ard"``, ``bias_std=True`` and
    ``screen`` screened starting points).  The candidate with the smaller ``criterion``
    wins: the ARD kernel has to earn its d + 1 hyperparameters.

    Parameters
    ----------
    model : MixedLMNTK
        With network inputs; its own kernel is the first candidate.
    criterion : {"bic", "aic"}
        ``"bic"`` (default): ``-2 llf + log(n) k``, as lme4's BIC (n rows, k the fixed
        effects, s2, t and the kernel hyperparameters).  On the ten data sets of
        ``benchmarks/bench_peers.py`` (110-500 training rows) BIC kept the plain kernel on
        the small panels, where the ARD scales fit noise, and chose ARD where it predicts
        better (docs/benchmarks.md); AIC chose ARD more often and predicted worse there.
    reml : bool
        REML (default) or ML for both fits and the search.
    subsample, seed, screen, starts, maxiter
        Of the ARD search (:func:`optimize_kernel`).

    Returns
    -------
    KernelChoice
        ``.results`` is the chosen model's fit; ``.table`` compares the candidates.

    Notes
    -----
    The test of t = 0 keeps its size only with a kernel fixed before seeing y:
    :meth:`KernelChoice.score_test` uses the model's own kernel (docs/tests.md).

    Examples
    --------
    >>> import numpy as np, mixednn as mn
    >>> rng = np.random.default_rng(0); Z = rng.normal(size=(120, 3))
    >>> y = np.sin(2 * Z[:, 0]) * Z[:, 1] + 0.3 * rng.normal(size=120)
    >>> m = mn.MixedLMNTK(y, np.ones((120, 1)), Z)
    >>> choice = mn.hyper.choose_kernel(m)
    >>> choice.chosen, list(choice.table.index)
    ('ard_sin', ['start', 'ard_sin'])
    """
    crit = criterion.lower() if isinstance(criterion, str) else criterion
    if crit not in ("bic", "aic"):
        raise ValueError(f"criterion must be 'bic' or 'aic', got {criterion!r}")
    rule = "reml" if reml else "ml"
    # the search first: it refuses the models it cannot tune before anything is fitted
    search = optimize_kernel(with_network(model, SIN_NETWORK), input_scales="ard",
                             bias_std=True, reml=reml, subsample=subsample, seed=seed,
                             screen=screen, starts=starts, maxiter=maxiter)
    fits, notes = {}, {}
    for name, cand in (("start", model), ("ard_sin", search.model)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fits[name] = cand.fit(reml=reml, t_method=rule)
        notes[name] = caught
    n_hyper = {"start": 0, "ard_sin": int(search.table["n_params"].iloc[0])}
    n = model.nobs
    rows = []
    for name, res in fits.items():
        k = model.k_fe + 2 + n_hyper[name]
        rows.append({"candidate": name,
                     "network": (model if name == "start" else search.model
                                 ).kernel_source.description,
                     "n_params": n_hyper[name], "t": res.t, "llf": res.llf,
                     "aic": -2 * res.llf + 2 * k, "bic": -2 * res.llf + math.log(n) * k})
    table = pd.DataFrame(rows).set_index("candidate")
    chosen = str(table[crit].idxmin())
    table["chosen"] = table.index == chosen
    for w in notes[chosen]:  # the chosen fit's warnings reach the user; the other's do not
        warnings.warn(w.message, w.category, stacklevel=2)
    return KernelChoice(table, chosen, crit, search.model if chosen != "start" else model,
                        fits[chosen], search, fits["start"], reml)


def compare_kernels(model: "MixedLMNTK", networks: Sequence[Any] | None = None, *,
                    depths: Sequence[int] = (1, 2, 3, 4),
                    activations: Sequence[str] = ("relu", "erf", "gelu", "tanh"),
                    reml: bool = True) -> pd.DataFrame:
    """Compare architectures by the maximised likelihood and AIC, each fit on the same data.

    Parameters
    ----------
    model : MixedLMNTK
        Supplies the data (its own kernel is not used unless listed).
    networks : sequence, optional
        Networks (MLP, ScaledInputsMLP or KernelSource); default: every combination of
        ``depths`` and ``activations`` with the model's weight_std and bias_std.
    reml : bool
        REML (default: valid for comparing kernels, the fixed effects being the same)
        or ML.

    Returns
    -------
    pandas.DataFrame
        One row per network, best first: ``network``, ``t``, ``llf`` (REML/ML),
        ``llf_ml``, ``aic`` (from ``llf``, p + 2 parameters), ``aic_ml``, ``edf``,
        ``delta_aic`` (from the best).
    """
    if networks is None:
        base = model.network if isinstance(model.network, MLP) else MLP()
        networks = [MLP(depth=dp, activation=a, weight_std=base.weight_std, bias_std=base.bias_std)
                    for a in activations for dp in depths]
    if model.groups is not None:
        raise NotImplementedError(
            "compare_kernels does not support group random effects ((1 | g) terms) yet; "
            "compare grouped fits with different networks with mn.anova")
    rows = []
    for nw in networks:
        m2 = with_network(model, nw)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = m2.fit(reml=reml, t_method="reml" if reml else "ml")  # AIC needs the maximum
            ml = res.time_choice.likelihood if not reml else m2.fit(reml=False,
                                                                    t_method="ml").time_choice.likelihood
        k = model.k_fe + 2
        rows.append({**_network_columns(nw),
                     "t": res.t, "llf": res.llf, "llf_ml": ml.llf, "aic": -2 * res.llf + 2 * k,
                     "aic_ml": -2 * ml.llf + 2 * k, "edf": res.edf})
    out = pd.DataFrame(rows).sort_values("aic").reset_index(drop=True)
    out["delta_aic"] = out["aic"] - out["aic"].min()
    return out


def _network_columns(nw: Any) -> dict:
    """``network``, ``depth`` and ``activation`` of a compared kernel: an MLP, a
    ScaledInputsMLP or a KernelSource (whose architecture is not reported)."""
    if isinstance(nw, KernelSource):
        return {"network": nw.description, "depth": np.nan, "activation": ""}
    arch = nw.net if isinstance(nw, ScaledInputsMLP) else nw
    return {"network": nw.describe(), "depth": arch.depth, "activation": arch.activation}
