"""MixedLMNTK: the model object (data + likelihood); ``fit()`` returns results.

The model is

    y = X beta + f0 + u + e,   e ~ N(0, s2 I),   u ~ N(0, s2 (exp(tK) - I)),

so ``Var(y) = s2 exp(tK)`` with ``K`` the network's neural tangent kernel on the
training inputs (model.md sections 1-2).  Its BLUP of ``u`` is exactly the
network trained by gradient flow for time ``t`` on the residual target.

With precision weights ``w`` (``weights=``, ``Var(e_i) = s2 / w_i``), the network trained
on the weighted loss ``1/2 sum_i w_i (y_i - f_i)^2``, everything is fitted on the whitened
problem ``W^{1/2} y``, ``W^{1/2} X``, ``K_w = W^{1/2} K W^{1/2}`` (model.md section 2.7):
the model whitens once (:meth:`MixedLMNTK.whiten`) before decomposing and rotating, and
once more on the training side of the cross-kernel of new rows (:meth:`new_rows`).
"""

from __future__ import annotations

import copy
from typing import Any, Sequence

import numpy as np
import pandas as pd

from .bars import GroupStructure, array_groups, bar_columns, split_bars
from .checks import observation_weights, plain_dtypes
from .exceptions import BoundaryFitWarning, warn_at_caller
from .formula import DesignData, InputScaling, build_from_arrays, build_from_formula
from .groupfit import fit_groups
from .groupprofile import GroupedProfile
from .groupresults import GroupedResults
from .newrows import complete_new_rows, rebuild_exog, rebuild_ntk_inputs
from .kernels import KernelSource, resolve_kernel
from .kernels.operator import KernelOperator, check_device, check_device_network, tile_height
from .krylov import LANCZOS_AUTO_MIN_N, lanczos_basis
from .lowrank import build_feature_basis, check_low_rank
from .numerics import check_kernel_memory
from .partitions import is_streamed
from .persistence import UserFunction
from .prediction import NewRows, check_missing
from .profile import SpectralProfile
from .results import MixedLMNTKResults
from .smoother import SmootherData
from .spectral import EigenBasis, LowRankBasis, decompose
from .streaming import build_streamed_design
from .timechoice import choose_t, emit_warnings

__all__ = ["MixedLMNTK"]


class MixedLMNTK:
    """Linear mixed model with a neural-tangent-kernel random effect.

    Parameters
    ----------
    endog : array-like, shape (n,)
        Response.
    exog : array-like, shape (n, p), optional
        Fixed-effects design (include a constant column for an intercept).
        ``None`` means no fixed effects.
    ntk_inputs : array-like, shape (n, d), optional
        Network inputs Z.  Needed unless ``kernel=`` is a precomputed matrix.
    network : MLP or torch.nn.Module, optional
        Architecture spec; ``MLP()`` (depth-2 ReLU, infinite width) by default.
        A finite network (``MLP(width=m)`` or any ``torch.nn.Module`` with one scalar
        output per row) uses its empirical NTK ``J J^T`` at initialisation (see
        :mod:`mixednn.kernels.empirical`; pass
        :func:`~mixednn.kernels.empirical.finite_network_source` for options).
    kernel : ndarray or callable, optional
        Instead of ``network=``: a precomputed PSD n x n training kernel, or a
        function ``k(Z1, Z2)`` of the (scaled) network inputs.
    offset : array-like or {"zero", "init"}, optional
        Known offset f0, subtracted from y before the kernel part: ``y = X beta + f0 +
        u + e``.  ``"zero"`` (the default for analytic kernels), ``"init"`` (the
        network's output at initialisation on the training rows, the default for
        finite networks; ``predict`` evaluates the same network on new rows) or an
        array.  ``offset="zero"`` with a finite network models the network's learned
        change ``f(z; theta_t) - f(z; theta_0)`` (the centred network).
    missing : {"drop", "raise"}
        Incomplete rows are dropped consistently across all parts (the number is
        reported), or raise.
    scale_inputs : bool
        Standardise the network inputs (mean 0, sample sd 1, as R's ``scale()``);
        the scaling is stored and reused by ``predict``.
    decomposition : {"auto", "eigh", "tridiagonal", "lanczos"}
        How K is decomposed.  ``"eigh"`` and ``"tridiagonal"``: the full
        eigendecomposition (:func:`mixednn.spectral.decompose`).  ``"lanczos"``: a block
        Krylov space of K started from ``[y - f0, X]``, as large as the REML/ML
        estimates need (to 1e-10 relative; :mod:`mixednn.krylov`): the fit, beta, s2,
        their SEs, the BLUP and predictions with intervals at new rows, without the full
        spectrum; what needs every eigen-direction (GCV/Cp/LOO/K-fold, free modes,
        in-sample intervals, the simulated LR null, spectrum plots, training paths)
        raises an error naming this option, and the effective df and the exact score
        test compute the eigenvalues on demand.  ``"auto"``: ``"lanczos"`` from
        ``n = 3000`` rows (:data:`mixednn.krylov.LANCZOS_AUTO_MIN_N`, where the whole
        fit costs a fraction of a bare ``eigh``, ``benchmarks/bench_fit.py``) unless the
        model has group effects, falling back to the full decomposition (tridiagonal)
        for what needs it (``t_method`` other than the likelihood's, ``free_modes``,
        in-sample intervals, the simulated LR null, spectrum plots, training); below
        3000 rows ``"eigh"``.
    low_rank : int, "exact" or FeatureMap, optional
        Fit in feature space, ``K = Phi Phi^T`` (docs/model.md section 7): memory
        O(m^2 + m p) whatever n, no n x n matrix.  An integer m uses Nystrom features
        of the kernel on m landmark rows (an approximation; the summary reports its
        trace error ``tr(K - K_m)``); ``"exact"`` uses the Jacobian of a finite network
        (``K = J J^T`` exactly); a :class:`mixednn.features.FeatureMap` gives the
        features directly.  See :mod:`mixednn.lowrank`.
    landmarks : {"kmeans++", "uniform", "leverage", "rpcholesky"}
        Landmark rule for ``low_rank=m`` (:func:`mixednn.features.select_landmarks`).
    seed : int
        Seed of the landmark choice (the same rows are chosen whatever the chunking).
    weights : array-like, shape (n,), optional
        Precision weights, ``Var(e_i) = s2 / w_i``, as R's ``lm``/``lmer(weights=)`` and
        statsmodels' WLS: the network is trained on the weighted loss
        ``1/2 sum_i w_i (y_i - f_i)^2`` (docs/model.md section 2.7).  Finite and strictly
        positive; a row with a missing (NaN) weight is an incomplete row (``missing=``).
        Fitted values, residuals and predictions are on the scale of y.
    groups : array-like, shape (n,), optional
        Group labels for a random intercept per group, as statsmodels' ``MixedLM``
        (``(1 | group)`` in a formula); ``fit()`` then estimates t and the group
        variance jointly and returns :class:`mixednn.groupresults.GroupedResults`.
        Without ``ntk_inputs``/``kernel``/``network`` the model is lme4's linear mixed
        model.
    exog_re : array-like or DataFrame, shape (n, k), optional
        With ``groups``: the random-effects design, correlated within a group (include a
        column of ones for a random intercept), as statsmodels' ``exog_re``.
    matrix_free : bool or int
        The Krylov route (``decomposition="lanczos"``, implied) without storing K: every
        product ``K V`` is computed tile by tile from the network inputs, memory O(n b)
        for a tile of b rows (:mod:`mixednn.kernels.operator`), so an exact fit runs where
        an n x n matrix does not fit; each block Lanczos step re-evaluates half of the
        kernel's entries.  ``True`` picks b from a 128 MiB budget per tile
        (:data:`mixednn.kernels.operator.TILE_MEMORY`); an integer is b itself.  Needs a
        kernel computed from the inputs (not a precomputed matrix), no ``low_rank=`` and
        no group effects.  What needs every eigenvalue (effective df, the exact score
        test) assembles K from its tiles on demand.
    device : str, optional
        A torch device (``"cuda"``, ``"cuda:1"``, ``"cpu"``) for the kernel tiles and the
        products ``K V`` of the Krylov route (implied), in float64: the analytic
        :class:`~mixednn.kernels.analytic.MLP` NTK computed by
        :func:`mixednn.kernels.torch_ntk.ntk_torch`.  Without ``matrix_free`` the tiles
        are kept on the device (half an n x n matrix of device memory).  ``None`` (the
        default): NumPy on the CPU.  ``"cpu"`` runs the same torch code on the CPU.

    Examples
    --------
    >>> import numpy as np, mixednn as mn
    >>> rng = np.random.default_rng(0)
    >>> Z = rng.normal(size=(100, 2)); y = np.sin(2 * Z[:, 0]) + 0.3 * rng.normal(size=100)
    >>> res = mn.MixedLMNTK(y, np.ones((100, 1)), Z, network=mn.MLP(depth=1)).fit()
    >>> res.t > 0
    True
    """

    def __init__(self, endog: Any, exog: Any = None, ntk_inputs: Any = None, *,
                 network: Any = None, kernel: Any = None, offset: Any = None,
                 missing: str = "drop", scale_inputs: bool = True,
                 decomposition: str = "auto", low_rank: Any = None,
                 landmarks: str = "kmeans++", seed: int = 0, weights: Any = None,
                 groups: Any = None, exog_re: Any = None, matrix_free: bool | int = False,
                 device: str | None = None):
        special = offset if isinstance(offset, str) else None
        design = build_from_arrays(endog, exog, ntk_inputs,
                                   offset=None if special else offset, missing=missing,
                                   weights=weights)
        if groups is None:
            if exog_re is not None:
                raise ValueError("exog_re= (random slopes) needs groups= (the group labels)")
            self._setup(design, network, kernel, special, scale_inputs, decomposition,
                        low_rank=low_rank, landmarks=landmarks, seed=seed)
            self._set_tiles(matrix_free, device)
            return
        if matrix_free is not False or device is not None:
            raise ValueError("matrix_free= and device= (the Krylov route's kernel tiles) are "
                             "not supported with group random effects, which need the full "
                             "eigendecomposition of K")
        # statsmodels' MixedLM interface: groups= labels, exog_re= the random-effects design
        terms, frame = array_groups(groups, exog_re, design.n_input_rows)
        for name, value in (("low_rank", low_rank), ("weights", weights)):
            if value is not None:
                raise ValueError(f"{name}= is not supported with group random effects yet")
        if ntk_inputs is None and kernel is None and network is None:
            self._setup_without_network(design, scale_inputs, decomposition)
        else:
            self._setup(design, network, kernel, special, scale_inputs, decomposition)
        pos = design.row_positions if design.row_positions is not None \
            else np.arange(design.nobs)
        rows = frame.iloc[pos].reset_index(drop=True)
        self.groups = GroupStructure.from_frame(terms, rows)

    @classmethod
    def from_formula(cls, formula: str, data: pd.DataFrame, *,
                     ntk: str | Sequence[str] | None = None, network: Any = None,
                     kernel: Any = None, offset: Any = None, missing: str = "drop",
                     scale_inputs: bool = True, decomposition: str = "auto",
                     eval_env: int = 0, low_rank: Any = None, landmarks: str = "kmeans++",
                     seed: int = 0, levels: dict | None = None,
                     weights: Any = None, matrix_free: bool | int = False,
                     device: str | None = None) -> "MixedLMNTK":
        """Build the model from a patsy formula and a data frame.

        Parameters
        ----------
        formula : str
            ``"y ~ x1 + C(g)"``: response and fixed effects (patsy; an intercept by default).
            lme4's bar terms add group random effects beside the network:
            ``"y ~ x + (1 | g)"``, ``(1 + x | g)``, ``(0 + x | g)``, ``(x || g)``,
            ``(1 | a/b)``, ``(1 | a:b)``, ``(1 | a) + (1 | b)`` (:mod:`mixednn.bars`);
            ``fit()`` then returns :class:`mixednn.groupresults.GroupedResults`.  Without
            ``ntk=`` (and no ``network=``/``kernel=``) such a model is lme4's linear mixed
            model.
        data : pandas.DataFrame, dask.dataframe.DataFrame or mixednn.partitions.CSVSource
            Never modified.  A dask frame or a chunked CSV is never loaded whole: the fit
            streams per-partition sufficient statistics (needs ``low_rank=``; see
            :mod:`mixednn.streaming`).
        ntk : str or list of str
            Network inputs: a one-sided formula (``"~ hr + temp"``, no intercept) or
            a list of numeric column names.
        network, kernel, missing, scale_inputs, decomposition, low_rank, landmarks, seed
            As for :class:`MixedLMNTK`.
        matrix_free, device
            As for :class:`MixedLMNTK` (not with group terms).
        offset : str or array-like, optional
            Column name or one value per row of ``data``.
        eval_env : int
            Extra frames up from the caller in which formula names are looked up.
        levels : dict, optional
            Streamed data only: categorical levels per column (``{"cut": ["Fair", ...]}``);
            by default they are collected in a first pass.
        weights : str or array-like, optional
            Precision weights (``Var(e_i) = s2 / w_i``; see :class:`MixedLMNTK`): a column
            name or one value per row of ``data``.  ``predict`` takes the weights of new
            observations (for prediction intervals) from the same column of ``newdata``
            when it has one.  In-memory data only.

        Returns
        -------
        MixedLMNTK

        Examples
        --------
        >>> import mixednn as mn
        >>> df = mn.datasets.load("bikeshare").iloc[:300]
        >>> m = mn.MixedLMNTK.from_formula("np.log1p(bikers) ~ workingday", df,
        ...                                ntk="~ hr + temp", network=mn.MLP(depth=2))
        >>> m.nobs
        300
        """
        fixed, bar_terms = split_bars(formula) if isinstance(formula, str) else (formula, [])
        if bar_terms:  # lme4's (1 | g) terms: group random effects beside the network
            if matrix_free is not False or device is not None:
                raise ValueError("matrix_free= and device= (the Krylov route's kernel tiles) "
                                 "are not supported with group random effects, which need the "
                                 "full eigendecomposition of K")
            return cls._with_groups(fixed, bar_terms, data, ntk=ntk, network=network,
                                    kernel=kernel, offset=offset, missing=missing,
                                    scale_inputs=scale_inputs, decomposition=decomposition,
                                    eval_env=eval_env + 1, low_rank=low_rank, levels=levels,
                                    weights=weights)
        streamed = is_streamed(data)
        special = offset if isinstance(offset, str) and offset in ("zero", "init") \
            and offset not in data.columns else None
        if streamed and weights is not None:
            raise ValueError("weights= is not supported for streamed data (dask or CSVSource); "
                             "fit an in-memory pandas frame, or fold the weights into the "
                             "response and design yourself (sqrt(w) y, sqrt(w) X)")
        if streamed:  # dask frame or chunked CSV: design info fixed from a first pass
            design = build_streamed_design(formula, data, ntk=ntk,
                                           offset=None if special else offset, missing=missing,
                                           eval_env=eval_env + 1, levels=levels,
                                           low_rank=low_rank, landmarks=landmarks, seed=seed)
        else:
            if levels is not None:
                raise ValueError("levels= is for streamed data (dask or CSVSource); an in-memory "
                                 "frame's levels come from its own columns")
            design = build_from_formula(formula, data, ntk=ntk,
                                        offset=None if special else offset, missing=missing,
                                        eval_env=eval_env + 1, weights=weights)
        obj = cls.__new__(cls)
        obj._setup(design, network, kernel, special, scale_inputs, decomposition,
                   low_rank=low_rank, landmarks=landmarks, seed=seed)
        obj._set_tiles(matrix_free, device)
        return obj

    # ------------------------------------------------------------------- group effects
    #: the random-effects design of the formula's bar terms (None: no group effects)
    groups: GroupStructure | None = None

    @classmethod
    def _with_groups(cls, fixed: str, bar_terms: list, data: Any, *, ntk: Any, network: Any,
                     kernel: Any, offset: Any, missing: str, scale_inputs: bool,
                     decomposition: str, eval_env: int, low_rank: Any, levels: Any,
                     weights: Any) -> "MixedLMNTK":
        """A model with lme4 bar terms: the fixed part through patsy, the bars through
        :mod:`mixednn.bars`, rows incomplete in a grouping or effect column dropped
        with the others (or an error with ``missing="raise"``)."""
        if is_streamed(data):
            raise ValueError("group random effects ((1 | g) terms) need an in-memory pandas "
                             "data frame, not streamed (dask or CSV) data")
        for name, value in (("low_rank", low_rank), ("weights", weights), ("levels", levels)):
            if value is not None:
                raise ValueError(f"{name}= is not supported with group random effects ((1 | g) "
                                 f"terms) yet; drop {name}= or the bar terms")
        if not isinstance(data, pd.DataFrame):
            raise TypeError(f"data must be a pandas DataFrame, got {type(data).__name__}")
        cols = bar_columns(bar_terms, data)
        incomplete = plain_dtypes(data[cols]).isna().any(axis=1).to_numpy() if cols else \
            np.zeros(len(data), dtype=bool)
        if incomplete.any() and missing == "raise":
            bad = [c for c in cols if data[c].isna().any()]
            raise ValueError(f"{int(incomplete.sum())} row(s) have missing values in the "
                             f"random-effects columns {bad}; use missing='drop' to fit on the "
                             "complete rows")
        kept = np.flatnonzero(~incomplete)
        sub = data.iloc[kept]
        no_network = ntk is None and kernel is None and network is None
        special = offset if isinstance(offset, str) and offset in ("zero", "init") \
            and offset not in data.columns else None
        design = build_from_formula(fixed, sub, ntk=ntk if not no_network else None,
                                    offset=None if special else offset, missing=missing,
                                    eval_env=eval_env + 1)
        design.n_dropped += int(incomplete.sum())
        design.n_input_rows = len(data)
        design.row_positions = kept[design.row_positions]
        rows = data.iloc[design.row_positions].reset_index(drop=True)
        obj = cls.__new__(cls)
        if no_network:
            obj._setup_without_network(design, scale_inputs, decomposition)
        else:
            obj._setup(design, network, kernel, special, scale_inputs, decomposition)
            if obj.kernel_source.precomputed is not None and incomplete.any():
                raise ValueError("rows with missing random-effects columns cannot be dropped "
                                 "from a precomputed kernel: drop them from data and kernel")
        obj.groups = GroupStructure.from_frame(bar_terms, rows)
        obj.group_frame = rows  # the rows used, every column: in-sample intervals
        return obj

    def _setup_without_network(self, design: DesignData, scale_inputs: bool,
                               decomposition: str) -> None:
        """A model of fixed and group effects only (lme4's linear mixed model)."""
        _check_model_options(scale_inputs, decomposition)
        self.data, self.decomposition = design, decomposition
        self.kernel_source, self.network, self.input_scaling = None, None, None
        self.scale_inputs = scale_inputs
        self.offset_mode = "array" if design.offset_spec else "zero"
        self._basis, self._profile = None, None
        self.low_rank, self.landmarks, self.seed = None, "kmeans++", 0

    def without_network(self) -> "MixedLMNTK":
        """The same fixed and group effects without the network (t = 0): lme4's model."""
        if self.groups is None:
            raise ValueError("without_network() is for models with group effects; the "
                             "no-network model of a plain fit is res.null_fit() (OLS)")
        new = copy.copy(self)
        new.kernel_source, new.network, new.input_scaling = None, None, None
        new._basis, new._profile = None, None
        return new

    def grouped_profile(self) -> GroupedProfile:
        """The likelihood of ``(t, theta)`` (:mod:`mixednn.groupprofile`): without a
        network on the data themselves, with one in the eigenbasis of K (Z rotated once)."""
        y = self.endog - self.offset
        Z = self.groups.Z.toarray()
        if self.kernel_source is None:
            return GroupedProfile(None, y, self.exog, Z, 0.0, self.groups)
        b = self.basis
        if not b.complete_spectrum:
            raise ValueError("group random effects need the full eigendecomposition of K; "
                             "decomposition='lanczos' does not compute it: use 'auto', 'eigh' "
                             "or 'tridiagonal'")
        if b.feature_space or b.rest_dim:
            raise ValueError("group random effects need the full eigendecomposition of K; "
                             "this kernel has a low-rank basis")
        Yr = b.rotate(np.column_stack([y, self.exog, Z]))
        p = self.k_fe
        return GroupedProfile(b.eigenvalues, Yr[:, 0], Yr[:, 1:1 + p], Yr[:, 1 + p:], b.trace,
                              self.groups)

    def _fit_grouped(self, reml: bool, t_method: Any, free_modes: Any,
                     t_options: Any) -> GroupedResults:
        if not isinstance(reml, (bool, np.bool_)):
            raise TypeError(f"reml must be True or False, got {reml!r}")
        if t_method not in (None, "reml", "ml") or (free_modes != 0) or t_options:
            raise ValueError("with group random effects t is estimated jointly with the group "
                             "variances by REML (or ML with reml=False); t_method=, free_modes= "
                             "and t_options= are not available")
        prof = self.grouped_profile()
        t_start = None
        if prof.has_network:  # the network-only likelihood's time as a start
            t_start = choose_t(self.smoother_data(), reml, "reml" if reml else "ml", 0,
                               None).t
        record = fit_groups(prof, bool(reml), t_start=t_start)
        if record.t_on_boundary:
            warn_at_caller("the likelihood is maximised at t = 0 with the group effects "
                           "present: training adds nothing beyond them", BoundaryFitWarning)
        if record.singular_terms:
            warn_at_caller(f"boundary (singular) fit: {', '.join(record.singular_terms)} has a "
                           "zero variance or a correlation of +-1 (lme4's isSingular)",
                           BoundaryFitWarning)
        return GroupedResults(self, prof, record, None if self.kernel_source is None
                              else self.basis)

    # ----------------------------------------------------------------------- setup
    def _setup(self, design: DesignData, network: Any, kernel: Any, offset_mode: str | None,
               scale_inputs: bool, decomposition: str, *, low_rank: Any = None,
               landmarks: str = "kmeans++", seed: int = 0) -> None:
        check_low_rank(low_rank, landmarks, seed)
        _check_model_options(scale_inputs, decomposition)
        streamed = design.streamed  # rows in chunks (mixednn.streaming)
        self.data = design
        self.decomposition = decomposition
        if callable(kernel) and not isinstance(kernel, np.ndarray):
            # saved by reference (or by value with cloudpickle); a lambda that cannot be
            # saved makes res.save() name kernel= and the fix
            kernel = UserFunction(kernel, "kernel=",
                                  "def my_kernel(Z1, Z2): return ... at the top of a module")
        self.kernel_source: KernelSource = resolve_kernel(
            network, kernel,
            has_inputs=bool(design.ntk_names) if streamed else design.ntk_inputs is not None)
        self.network = self.kernel_source.network
        Z = None if streamed else design.ntk_inputs
        if streamed:
            self.input_scaling = design.input_scaling(scale_inputs)
        elif Z is not None and scale_inputs:
            self.input_scaling = InputScaling.fit(Z, design.ntk_names)
        elif Z is not None:
            self.input_scaling = InputScaling.identity(Z.shape[1])
        else:
            self.input_scaling = None
        self.scale_inputs = scale_inputs
        if offset_mode is None and not design.offset_spec \
                and self.kernel_source.finite:
            offset_mode = "init"  # a finite network starts from its output at initialisation
        self.offset_mode = offset_mode or ("array" if design.offset_spec else "zero")
        if offset_mode == "init":
            if not self.kernel_source.finite:
                raise ValueError("offset='init' needs a finite network (MLP(width=...) or a "
                                 "torch.nn.Module); analytic kernels start from zero")
            init = self.kernel_source.init_output
            if streamed:
                design.offset_fn = init  # evaluated chunk by chunk
            else:
                design.offset = np.asarray(init(self.scaled_inputs), dtype=float)
        if self.kernel_source.precomputed is not None:
            self.kernel_source.precomputed = self._subset_precomputed(self.kernel_source.precomputed)
        self._basis: EigenBasis | None = None
        self._profile: SpectralProfile | None = None
        if streamed and low_rank is None:
            if not self.kernel_source.finite:
                raise ValueError("streamed data (dask or CSV) are fit in feature space: pass "
                                 "low_rank=m (Nystrom features, e.g. low_rank=1000)")
            low_rank = "exact"  # a finite network's Jacobian features, K = J J^T exactly
        self.low_rank, self.landmarks, self.seed = low_rank, landmarks, seed

    #: the Krylov route's kernel tiles (:meth:`_set_tiles`): False / True / a tile height,
    #: and a torch device string or None
    matrix_free: bool | int = False
    device: str | None = None

    def _set_tiles(self, matrix_free: bool | int, device: str | None) -> None:
        """Validate ``matrix_free=`` and ``device=`` (class docstring) and keep them."""
        if matrix_free is False and device is None:
            return
        if not (isinstance(matrix_free, (bool, np.bool_))
                or (isinstance(matrix_free, (int, np.integer)) and matrix_free >= 1)):
            raise ValueError(f"matrix_free must be True, False or a tile height (a positive "
                             f"integer), got {matrix_free!r}")
        opts = "matrix_free=" if device is None else "device="
        if self.decomposition in ("eigh", "tridiagonal"):
            raise ValueError(f"{opts} works on the Krylov route; it conflicts with "
                             f"decomposition={self.decomposition!r}: use 'lanczos' or 'auto'")
        if self.low_rank is not None:
            raise ValueError(f"{opts} is for exact fits of a dense kernel; low_rank= already "
                             "avoids the n x n matrix: pass one or the other")
        if not self.kernel_source.can_cross or self.kernel_source.precomputed is not None:
            raise ValueError(f"{opts} computes the kernel tile by tile from the network "
                             "inputs; a precomputed kernel matrix has none: pass ntk_inputs "
                             "and network= (or a kernel function)")
        if device is not None:  # a clear error now, not at the first fit
            check_device(device)
            check_device_network(self.network, device)
        self.matrix_free = matrix_free if isinstance(matrix_free, (bool, np.bool_)) \
            else int(matrix_free)
        self.device = device

    def kernel_operator(self) -> KernelOperator:
        """The training kernel (whitened with weights) as a tile-by-tile operator
        (``matrix_free=`` / ``device=``, :mod:`mixednn.kernels.operator`).

        Returns
        -------
        KernelOperator
        """
        n = self.nobs
        rows = self.matrix_free if not isinstance(self.matrix_free, (bool, np.bool_)) \
            else tile_height(n)
        w = self.weights
        return KernelOperator(self.scaled_inputs, cross=self.kernel_source.cross,
                              network=self.network, tile_rows=rows,
                              scale=None if w is None else np.sqrt(w), device=self.device,
                              store=self.matrix_free is False)

    # ------------------------------------------------------------------- saving
    def saved_without_rows(self) -> "MixedLMNTK":
        """What ``save(..., remove_data=True)`` stores for this model
        (:mod:`mixednn.persistence`): a copy whose design has no training rows, keeping the
        network inputs only when new rows need them for their cross-kernel (a dense basis
        of a kernel computed from the inputs)."""
        if self.data.rows_removed:
            return self
        basis = self._basis
        new = copy.copy(self)
        new.data = self.data.without_rows(
            keep_inputs=self.kernel_source.can_cross and (basis is None or not basis.feature_space))
        return new

    def _subset_precomputed(self, K: np.ndarray) -> np.ndarray:
        d = self.data
        if K.ndim != 2 or K.shape[0] != K.shape[1]:
            raise ValueError(f"a precomputed kernel must be a square matrix, got shape {K.shape}")
        if K.shape[0] == d.n_input_rows:
            if d.n_dropped:
                K = K[np.ix_(d.row_positions, d.row_positions)]
        elif not (K.shape[0] == d.nobs and d.n_dropped == 0):
            raise ValueError(
                f"the precomputed kernel is {K.shape[0]} x {K.shape[0]} but the data have "
                f"{d.n_input_rows} rows ({d.nobs} used): give the kernel of all data rows, in order")
        if not np.all(np.isfinite(K)):
            raise ValueError("the precomputed kernel contains NaN or infinite values")
        scale = max(float(np.max(np.abs(K))), np.finfo(float).tiny)
        asym = float(np.max(np.abs(K - K.T)))
        if asym > 1e-8 * scale:
            raise ValueError(
                f"the precomputed kernel is not symmetric (max |K - K^T| = {asym:.3g}, "
                f"max |K| = {scale:.3g}); pass (K + K.T) / 2 if the asymmetry is rounding")
        return 0.5 * (K + K.T)

    # ------------------------------------------------------------------- accessors
    @property
    def endog(self) -> np.ndarray:
        return self.data.endog

    @property
    def exog(self) -> np.ndarray:
        return self.data.exog

    @property
    def offset(self) -> np.ndarray:
        return self.data.offset

    @property
    def nobs(self) -> int:
        return self.data.nobs

    @property
    def k_fe(self) -> int:
        # from the names: a count must not load streamed rows (nor need removed ones)
        return len(self.data.exog_names)

    @property
    def exog_names(self) -> list[str]:
        return list(self.data.exog_names)

    @property
    def endog_names(self) -> str:
        return self.data.endog_name

    @property
    def weights(self) -> np.ndarray | None:
        """Precision weights of the rows used (``Var(e_i) = s2 / w_i``), None when unweighted."""
        return getattr(self.data, "weights", None)  # streamed designs have none

    @property
    def sum_log_weights(self) -> float:
        """``sum_i log w_i`` (0 without weights): the log-likelihood of y adds half of it."""
        w = self.weights
        return 0.0 if w is None else float(np.sum(np.log(w)))

    def whiten(self, M: np.ndarray) -> np.ndarray:
        """``W^{1/2} M``: the rows of M (n or n x k) on the whitened scale of the weighted
        model (docs/model.md section 2.7); M itself without weights."""
        w = self.weights
        if w is None:
            return M
        sw = np.sqrt(w)
        return sw * M if np.ndim(M) == 1 else sw[:, None] * M

    def unwhiten(self, M: np.ndarray) -> np.ndarray:
        """``W^{-1/2} M``: back from the whitened scale to the scale of y."""
        w = self.weights
        if w is None:
            return M
        sw = np.sqrt(w)
        return M / sw if np.ndim(M) == 1 else M / sw[:, None]

    @property
    def scaled_inputs(self) -> np.ndarray | None:
        Z = self.data.ntk_inputs
        return None if Z is None else self.input_scaling.apply(Z)

    def kernel_matrix(self) -> np.ndarray:
        """The n x n training kernel (built anew; the fit keeps only its decomposition).
        With weights this is K itself; the fit decomposes ``W^{1/2} K W^{1/2}``."""
        check_kernel_memory(self.nobs, n_matrices=1)
        return self.kernel_source.gram(self.scaled_inputs)

    # ------------------------------------------------------------------ likelihood
    @property
    def basis(self) -> EigenBasis:
        """The decomposition of K (computed once, on first use)."""
        if self._basis is None:
            self._basis = self._decompose()
        return self._basis

    def _decompose(self) -> EigenBasis:
        if self.low_rank is not None:  # feature space: sums over row chunks
            return build_feature_basis(self)
        # exact feature form (a finite network with fewer parameters than rows)
        Phi = self.kernel_source.low_rank_features(self.scaled_inputs)
        if Phi is not None:
            return LowRankBasis.from_features(self.whiten(Phi))  # W^{1/2} Phi: exact
        if self.tiled and not self._dense_only:
            # K never stored in host memory: products tile by tile (kernels.operator)
            Y = self.whiten(np.column_stack([self.endog - self.offset, self.exog]))
            basis = lanczos_basis(self.kernel_operator(), Y, check_psd=True, what="the NTK")
            if not basis.converged:
                warn_at_caller(f"the Krylov space did not meet its REML/ML convergence "
                               f"criterion within {basis.dimension} of n = {self.nobs} "
                               "dimensions; with matrix_free= / device= there is no dense "
                               "fallback: the estimates are those of this space", RuntimeWarning)
            return basis
        # the Krylov route holds K and thin blocks; the dense routes up to 3 n x n matrices
        check_kernel_memory(self.nobs, n_matrices=2 if self.krylov_route else 3)
        K = self.kernel_source.gram(self.scaled_inputs)
        if K.shape != (self.nobs, self.nobs):
            raise ValueError(f"the kernel has shape {K.shape}, expected ({self.nobs}, {self.nobs})")
        if not np.all(np.isfinite(K)):
            raise ValueError("the kernel contains NaN or infinite values; check the network "
                             "inputs and architecture")
        user = self.kernel_source.user_supplied
        if self.weights is not None:  # K_w = W^{1/2} K W^{1/2}, a new array
            sw = np.sqrt(self.weights)
            K = sw[:, None] * K * sw[None, :]
        own = K is not self.kernel_source.precomputed
        what = "the user-supplied kernel" if user else "the NTK"
        method = self.decomposition
        if self.krylov_route:
            # K itself is kept by the Krylov basis (never overwritten): new rows and what
            # needs the full spectrum use it
            Y = self.whiten(np.column_stack([self.endog - self.offset, self.exog]))
            basis = lanczos_basis(K, Y, check_psd=True, what=what)
            if basis.converged:
                return basis
            if self.decomposition == "lanczos":
                warn_at_caller(f"the Krylov space did not meet its REML/ML convergence "
                               f"criterion within {basis.dimension} of n = {self.nobs} "
                               "dimensions; the dense eigendecomposition is used instead",
                               RuntimeWarning)
            method = "auto"
        elif method == "lanczos" or method == "auto":
            method = "auto"  # the dense routes of decompose (eigh or tridiagonal)
        return decompose(K, method=method, check_psd=True, overwrite=own, what=what)

    @property
    def krylov_route(self) -> bool:
        """Whether the kernel is decomposed by the Krylov route (``decomposition="lanczos"``,
        or ``"auto"`` from :data:`~mixednn.krylov.LANCZOS_AUTO_MIN_N` rows without group
        effects; a dense n x n kernel, not a feature-space or exact low-rank one)."""
        if self._dense_only or self.low_rank is not None \
                or self.decomposition in ("eigh", "tridiagonal"):
            return False
        if self.tiled:
            return True
        if self.decomposition == "auto" and (self.groups is not None
                                             or self.nobs < LANCZOS_AUTO_MIN_N):
            return False
        return True

    @property
    def tiled(self) -> bool:
        """Whether K is applied tile by tile (``matrix_free=`` or ``device=``)."""
        return self.matrix_free is not False or self.device is not None

    #: set on the copy that :meth:`fit` uses when ``decomposition="auto"`` would choose the
    #: Krylov route but the fit needs the full spectrum
    _dense_only = False

    def _needs_spectrum(self, t_method: Any, free_modes: Any) -> bool:
        """Whether a fit with these options sums over every eigen-direction of K."""
        rule = t_method.lower() if isinstance(t_method, str) else t_method
        return rule not in (None, "reml", "ml") or not (
            isinstance(free_modes, (int, np.integer)) and not isinstance(free_modes, bool)
            and free_modes == 0)

    def full_spectrum_model(self) -> "MixedLMNTK":
        """This model with the full eigendecomposition of K: itself, unless it takes the
        Krylov route (:attr:`krylov_route`); then a copy decomposed densely, built once
        (``decomposition="auto"`` falls back to it for the fits and results that need
        every eigen-direction).

        Returns
        -------
        MixedLMNTK
        """
        return self._dense_twin() if self.krylov_route else self

    def __getstate__(self) -> dict:
        # the dense twin is a second decomposition built on demand: neither saved nor copied
        state = dict(self.__dict__)
        state.pop("_dense_model", None)
        return state

    def _dense_twin(self) -> "MixedLMNTK":
        twin = self.__dict__.get("_dense_model")
        if twin is None:
            twin = copy.copy(self)
            twin._dense_only = True
            twin._basis, twin._profile = None, None
            self._dense_model = twin
        return twin

    @property
    def profile(self) -> SpectralProfile:
        """Rotated response and design, ready for the REML/ML criteria."""
        if self._profile is None:
            b = self.basis
            if b.feature_space or not b.complete_spectrum:
                # from the streamed sufficient statistics, or the Ritz pairs of a Krylov space
                self._profile = b.spectral_profile(sum_log_weights=self.sum_log_weights)
                return self._profile
            Y = self.whiten(np.column_stack([self.endog - self.offset, self.exog]))
            Yr = b.rotate(Y)
            rest = b.rest_gram(Y)  # low-rank basis: the part of Y^T Y outside U_m
            if rest is not None:
                order = [*range(1, Y.shape[1]), 0]  # the profile orders columns [X, y]
                rest = rest[np.ix_(order, order)]
            self._profile = SpectralProfile(b.eigenvalues, Yr[:, 0], Yr[:, 1:], b.trace,
                                            self.nobs, rest_gram=rest,
                                            sum_log_weights=self.sum_log_weights)
        return self._profile

    def smoother_data(self) -> SmootherData:
        """The rotated data with the eigenvectors on demand (what the rules for t read).

        A streamed model's rows are read only if a rule needs the eigenvectors
        (leave-one-out, K-fold, free modes).  With weights, the rows are whitened
        (the rules then judge the weighted prediction error).
        """
        rot = SmootherData.rotated(self)
        basis = self.basis
        return SmootherData(rot.profile, self.nobs, rot.complement,
                            lambda: basis.dense_eigenvectors,
                            rows=lambda: (self.whiten(self.endog - self.offset),
                                          self.whiten(self.exog)))

    def with_kernel(self, kernel_source: KernelSource) -> "MixedLMNTK":
        """A copy of this model with another kernel, not yet decomposed (same data)."""
        new = copy.copy(self)
        new.kernel_source = kernel_source
        new.network = kernel_source.network
        new._basis = None
        new._profile = None
        new.__dict__.pop("_dense_model", None)  # the dense twin of the old kernel
        return new

    def loglike(self, t: float, reml: bool = True) -> float:
        """Profiled REML (or ML) log-likelihood at training time ``t``.

        ``beta`` and ``s2`` are profiled out; REML uses the convention constant
        c = 0 of statsmodels' MixedLM and lme4.
        """
        if t < 0:
            raise ValueError(f"training time must be >= 0, got {t}")
        return self.profile.loglike(float(t), reml)

    def fit(self, reml: bool = True, *, t_method: str | None = None, free_modes: Any = 0,
            t_options: dict | None = None) -> "MixedLMNTKResults":
        """Estimate beta, s2 and t by REML (default) or ML.

        Parameters
        ----------
        reml : bool
            ``True`` for restricted maximum likelihood, ``False`` for ML: the
            likelihood behind s2, its log-likelihood and SEs.
        t_method : {None, "auto", "reml", "ml", "gcv", "cp", "loo", "kfold"}, optional
            The rule that chooses t.  The default (``None``) is the likelihood's time:
            REML, or ML with ``reml=False`` -- one fit, one maximum, so ``llf``,
            AIC/BIC, the profile interval of t, ``anova`` and the tests all refer to it.
            A prediction check runs beside it as a diagnostic (``res.auto_check``: is
            GCV's prediction error at the likelihood's t more than 5% above its minimum
            and more than the model explains? :mod:`mixednn.autotime`); the summary
            names the remedy when it objects.  ``"auto"`` lets that check act: GCV then
            chooses t (or, when GCV's own time interpolates, REML with free leading
            modes).  ``"reml"``/``"ml"`` are the likelihood's time without the check.
            GCV, Mallows' Cp / SURE, exact leave-one-out or K-fold CV of the fitted
            values all come from the one decomposition (:mod:`mixednn.stopping`); beta
            and s2 are then the GLS / REML (or ML) estimates at that t, ``t_se`` and
            ``t_conf_int`` are NaN, and the summary says the fit is not a likelihood
            maximum.  With free modes, ``None``/``"auto"`` mean REML on the rest.
        free_modes : int or "auto"
            Number of leading NTK eigen-directions made unpenalised fixed effects
            (trained to convergence, ``t_j = inf``); t is fitted on the rest of the
            spectrum.  ``"auto"`` chooses the number (:mod:`mixednn.freemodes`; an
            extension beyond the paper).  0 (default) is the plain model.
        t_options : dict, optional
            Options of the rule: ``alpha``, ``nsim``, ``min_excess`` and ``seed``
            (the prediction check of the default and of ``"auto"``,
            :func:`mixednn.autotime.auto_time`), ``sigma2`` (Cp), ``folds`` and
            ``seed`` (K-fold), ``points_per_decade``; with ``free_modes="auto"``,
            ``k_rule`` and ``k_candidates`` (see
            :func:`mixednn.freemodes.select_free_modes`).

        Returns
        -------
        MixedLMNTKResults
            ``t_method`` names the rule that chose t and ``t_reml`` is the plain REML
            time.

        Notes
        -----
        One decomposition of K, then a log-spaced grid over t, a bounded Brent
        refinement on log t, and an explicit comparison with the boundary t = 0; the
        prediction check adds simulated responses in the rotated basis (about
        0.02-0.2 s).
        A maximum at t = 0 raises :class:`BoundaryFitWarning`; a maximum at the
        upper end of the search (interpolation) raises :class:`InterpolationWarning`.
        """
        if self.groups is not None:
            return self._fit_grouped(reml, t_method, free_modes, t_options)
        if self.decomposition == "auto" and self.krylov_route \
                and self._needs_spectrum(t_method, free_modes):
            # the rule needs every eigen-direction: "auto" uses the full decomposition
            return self._dense_twin().fit(reml, t_method=t_method, free_modes=free_modes,
                                          t_options=t_options)
        choice = choose_t(self.smoother_data(), reml, t_method, free_modes, t_options)
        emit_warnings(choice, stacklevel=2)
        return MixedLMNTKResults(self, choice)

    # ------------------------------------------------------------------ new rows
    def new_rows(self, newdata: pd.DataFrame | None = None, *, exog: Any = None,
                 ntk_inputs: Any = None, kernel: Any = None, offset: Any = None,
                 missing: str = "exclude", weights: Any = None) -> NewRows:
        """New rows ready for prediction: fixed-effects design, offset, cross-kernel.

        Parameters
        ----------
        newdata : pandas.DataFrame, optional
            New rows of a formula model (designs rebuilt through patsy's design info
            and the stored input scaling).
        exog, ntk_inputs, kernel, offset
            The array interface (see :meth:`MixedLMNTKResults.predict`).
        missing : {"exclude", "raise"}
            Rows with a missing value (NaN, None, ``pd.NA``) in a variable the prediction
            needs: left out, their positions kept for NaN predictions (``"exclude"``, R's
            ``na.action = na.exclude``), or a ValueError naming the columns (``"raise"``).
        weights : array-like, optional
            Precision weights of the new observations (``Var(e*) = s2 / w*``, for
            prediction intervals only).  By default the model's weights column of
            ``newdata`` when it has one, else 1.  A NaN weight gives NaN observation
            intervals in its row.

        Returns
        -------
        NewRows
            ``kernel`` is the cross-kernel (rows x n) for a dense basis, with ``W^{1/2}``
            on the training side in a weighted model (``k(z*, Z) W^{1/2}``, docs/model.md
            section 2.7); ``inputs`` the scaled network inputs (feature-space bases map
            them themselves); with rows left out, ``positions`` and ``full_index`` place
            them back; ``weights`` the new observations' precision weights (None: 1).
        """
        check_missing(missing)
        d = self.data
        if newdata is not None:
            if not isinstance(newdata, pd.DataFrame):
                raise TypeError("newdata must be a pandas DataFrame; use exog= / ntk_inputs= "
                                "for arrays")
            full_index = newdata.index
            newdata = plain_dtypes(newdata)  # pd.NA is a missing value; newdata unchanged
            ok, cols = complete_new_rows(d, newdata)
            positions = None
            if not ok.all():
                if missing == "raise":
                    raise ValueError(
                        f"{int((~ok).sum())} row(s) of newdata have missing values (in "
                        f"{cols or 'the variables used'}); drop or fill them, or pass "
                        "missing='exclude' for NaN predictions in those rows")
                positions = np.flatnonzero(ok)
                newdata = newdata.iloc[positions]
                exog, kernel, offset, weights = (_take_rows(a, positions)
                                                 for a in (exog, kernel, offset, weights))
            nrow = len(newdata)
            index = newdata.index
            Xn = rebuild_exog(d, newdata) if d.exog_design_info is not None else \
                self._array_exog(exog, nrow)
            Zn = None
            if kernel is None:
                if not self.kernel_source.can_cross:
                    self.kernel_source.cross(None, None)  # raises: a cross-kernel is needed
                Zn = rebuild_ntk_inputs(d, newdata)
            if offset is None and d.offset_spec not in (None, "array"):
                if d.offset_spec not in newdata.columns:
                    raise KeyError(f"newdata lacks the offset column {d.offset_spec!r}")
                offset = newdata[d.offset_spec].to_numpy(dtype=float)
            spec = getattr(d, "weights_spec", None)  # a column: the new rows may carry it
            if weights is None and isinstance(spec, str) and spec != "array" \
                    and spec in newdata.columns:
                weights = newdata[spec]
        else:
            if kernel is None and ntk_inputs is not None and not self.kernel_source.can_cross:
                raise ValueError(
                    "this model was fit with a precomputed kernel matrix, so there is no network "
                    "to evaluate at ntk_inputs=; pass the cross-kernel of the new rows against "
                    f"the training rows instead: predict(..., kernel=K_new), K_new of shape "
                    f"(new rows, {self.nobs})")
            given = next((a for a in (kernel, ntk_inputs, exog) if a is not None), None)
            if given is None:
                raise ValueError("pass ntk_inputs= (new network inputs) or kernel= "
                                 "(cross-kernel) to predict at new points")
            nrow = int(np.shape(given)[0]) if np.ndim(given) else 1
            full_index = pd.RangeIndex(nrow)
            Xn = self._array_exog(exog, nrow)
            Zn = None
            if kernel is None:
                if ntk_inputs is None:
                    raise ValueError("pass ntk_inputs= (new network inputs) or kernel= "
                                     "(cross-kernel) to predict at new points")
                Zn = np.asarray(ntk_inputs, dtype=float)
                if Zn.ndim == 1:
                    Zn = Zn.reshape(-1, 1)
                if d.ntk_names and Zn.shape[1] != len(d.ntk_names):
                    raise ValueError(f"ntk_inputs has {Zn.shape[1]} columns; the model was fit "
                                     f"with {len(d.ntk_names)}")
                if np.isinf(Zn).any():
                    raise ValueError("ntk_inputs contains infinite values")
            ok = ~np.isnan(Xn).any(axis=1)
            if Zn is not None:
                ok &= ~np.isnan(Zn).any(axis=1)
            if offset is not None and np.size(offset) == nrow:
                ok &= ~np.isnan(np.asarray(offset, dtype=float).ravel())
            positions = None
            if not ok.all():
                if missing == "raise":
                    raise ValueError(f"{int((~ok).sum())} new row(s) have missing values (NaN); "
                                     "drop them, or pass missing='exclude' for NaN predictions "
                                     "in those rows")
                positions = np.flatnonzero(ok)
                Xn, Zn, kernel, offset, weights = (_take_rows(a, positions)
                                                   for a in (Xn, Zn, kernel, offset, weights))
                nrow = len(positions)
            index = pd.RangeIndex(nrow) if positions is None else full_index[positions]
        Zs = None if Zn is None else self.input_scaling.apply(Zn)
        where = {"positions": positions,
                 "full_index": None if positions is None else full_index}
        if nrow == 0:  # nothing to predict: no cross-kernel, no network evaluation
            return NewRows(X=np.empty((0, self.k_fe)), offset=np.empty(0), index=index, **where)
        Kx = None
        if kernel is not None:
            Kx = np.asarray(kernel, dtype=float)
            if Kx.ndim != 2 or Kx.shape != (nrow, self.nobs):
                raise ValueError(f"kernel= must be the cross-kernel of shape (new rows, training "
                                 f"rows) = ({nrow}, {self.nobs}), got {Kx.shape}")
        elif not self.basis.feature_space:
            Kx = self.kernel_source.cross(Zs, self.scaled_inputs)
        if Kx is not None and self.weights is not None:
            # the one place where new rows meet the whitened training rows: k(z*, Z) W^{1/2}
            Kx = Kx * np.sqrt(self.weights)[None, :]
        if offset is None:
            if self.offset_mode == "init":
                off = np.asarray(self.kernel_source.init_output(Zs), float)
            elif self.offset_mode == "array" and np.any(self.offset != 0):
                raise ValueError("the model was fit with an offset array: pass offset= for the "
                                 "new rows")
            else:
                off = np.zeros(nrow)
        else:
            off = np.asarray(offset, dtype=float).ravel()
            if off.shape[0] != nrow:
                raise ValueError(f"offset has {off.shape[0]} values for {nrow} new rows")
        return NewRows(X=Xn, offset=off, index=index, kernel=Kx, inputs=Zs,
                       weights=observation_weights(weights, nrow, index), **where)

    def _array_exog(self, exog: Any, nrow: int) -> np.ndarray:
        p = self.k_fe
        if p == 0:
            return np.empty((nrow, 0))
        if exog is None:
            raise ValueError(f"pass exog= (new fixed-effects design with {p} columns)")
        X = np.asarray(exog, dtype=float)
        if X.ndim == 1:
            X = X.reshape(-1, 1)
        if X.shape != (nrow, p):
            raise ValueError(f"exog must have shape ({nrow}, {p}), got {X.shape}")
        return X


def _take_rows(values: Any, positions: np.ndarray) -> Any:
    """The rows at ``positions`` of an array argument (None stays None)."""
    if values is None:
        return None
    arr = np.asarray(values)
    return arr[positions] if arr.ndim else arr


#: The decompositions of a dense K (:func:`mixednn.spectral.decompose`, and the Krylov
#: basis of :func:`mixednn.krylov.lanczos_basis`).
DECOMPOSITIONS = ("auto", "eigh", "tridiagonal", "lanczos")


def _check_model_options(scale_inputs: Any, decomposition: Any) -> None:
    """Refuse option values of the wrong type or out of range, naming the option."""
    if not isinstance(scale_inputs, (bool, np.bool_)):
        raise TypeError(f"scale_inputs must be True or False, got {scale_inputs!r}")
    if not isinstance(decomposition, str) or decomposition not in DECOMPOSITIONS:
        raise ValueError(f"decomposition must be one of {DECOMPOSITIONS}, got {decomposition!r}")
