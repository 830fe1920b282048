"""Train the real network for the REML time and compare with the NTK prediction.

The mixed model's BLUP is the *linearised* network trained by gradient flow for
the estimated time ``t_hat`` (``docs/model.md`` section 1).  :func:`train`
trains the actual finite network by full-batch gradient descent for the
corresponding number of steps and records its losses next to the NTK
prediction of the same losses, so the duality can be checked on the user's own
network.

Conventions
-----------
* Loss and time.  ``loss="mean"`` trains on ``1/(2n) sum_i (r_i - f_i)^2``,
  ``loss="sum"`` on ``1/2 sum_i (r_i - f_i)^2``; one step of SGD with learning
  rate ``lr`` then advances the training time by ``eta = lr / n`` (mean) or
  ``eta = lr`` (sum), so the REML time corresponds to ``round(t_hat / eta)``
  steps (:meth:`MixedLMNTKResults.epochs`).
* Target.  The fixed effects stay as fitted (GLS at ``t_hat``); the network
  trains on ``y - X beta_hat``.  The function it represents is
  ``f0(z) + f(z; theta_s) - f(z; theta_0)``: with the default ``offset="init"``
  this is the network itself (``f0 = f(., theta_0)``); with ``offset="zero"`` or
  an offset array it is the centred network plus that offset.
* Recorded losses are mean squared errors ``mean((y - X beta - f)^2)`` on the
  training rows (and on the test rows, if given), whatever ``loss`` is.
* NTK prediction.  Gradient descent on the linearised network leaves the
  in-sample residual ``U diag((1 - eta lam)^s) U^T r`` after ``s`` steps
  (``r = y - X beta - f0``) and predicts new rows by
  ``f0(z*) + k*^T U diag((1 - (1 - eta lam)^s) / lam) U^T r``: this *discrete*
  path is the one compared with the real network (columns ``*_ntk``).  The
  gradient-flow path (``exp(-t lam)``, ``(1 - exp(-t lam)) / lam``, ``t = eta s``)
  of the mixed model is given next to it (columns ``*_flow``); the two agree when
  ``eta * lam_max << 1``.  Everything is a closed form in the model's one
  eigendecomposition: no matrix exponential per time point.
"""

from __future__ import annotations

import copy
import math
import time
from typing import Any

import numpy as np
import pandas as pd

from .newrows import rebuild_ntk_inputs
from .interfaces import FitResults
from .profile import check_complete_spectrum
from .trainingpath import TrainingPath

__all__ = ["train", "ntk_loss_path", "max_stable_lr"]

_CHUNK_ENTRIES = 1 << 22  # steps x eigenvalues per chunk of the closed-form path


# ---------------------------------------------------------------------------- helpers

def _eta(res: FitResults, lr: float, loss: str) -> float:
    try:
        lr = float(lr)
    except (TypeError, ValueError):
        raise ValueError(f"lr must be a positive number, got {lr!r}") from None
    if not (lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr must be a positive finite number, got {lr!r}")
    if loss == "mean":
        return lr / res.nobs
    if loss == "sum":
        return lr
    raise ValueError(f"loss must be 'mean' or 'sum', got {loss!r}")


def max_stable_lr(res: FitResults, loss: str = "mean") -> float:
    """Largest learning rate for which full-batch gradient descent on the linearised
    network converges: ``eta * lam_max < 2`` (``2 n / lam_max`` for the mean loss).

    Parameters
    ----------
    res : MixedLMNTKResults
    loss : {"mean", "sum"}

    Returns
    -------
    float
        The bound (exclusive); about half of it keeps discrete steps close to
        gradient flow.

    Examples
    --------
    >>> import numpy as np, mixednn as mn
    >>> from mixednn.training import max_stable_lr
    >>> rng = np.random.default_rng(0)
    >>> Z = rng.normal(size=(60, 2)); y = np.sin(2 * Z[:, 0]) + 0.3 * rng.normal(size=60)
    >>> res = mn.MixedLMNTK(y, np.ones((60, 1)), Z, network=mn.MLP(depth=1)).fit()
    >>> bool(max_stable_lr(res, "mean") == 60 * max_stable_lr(res, "sum"))
    True
    """
    _eta(res, 1.0, loss)
    lam_max = float(res.model.profile.lam.max())
    if not lam_max > 0:
        return math.inf
    return 2.0 / lam_max * (res.nobs if loss == "mean" else 1.0)


def _check_stable(res: FitResults, lr: float, loss: str, eta: float) -> None:
    lam_max = float(res.model.profile.lam.max())
    if eta * lam_max >= 2.0:
        lim = max_stable_lr(res, loss)
        scale = "lr * lam_max / n" if loss == "mean" else "lr * lam_max"
        raise ValueError(
            f"lr = {lr:g} is unstable for full-batch gradient descent on the {loss} loss: "
            f"{scale} = {eta * lam_max:.4g} >= 2 (lam_max = {lam_max:.6g}, the largest NTK "
            f"eigenvalue), so the top eigen-direction diverges. The maximum stable learning rate "
            f"is {lim:.6g}; use about half of it or less ({lim / 2:.4g}) for steps that track "
            "gradient flow")


def _powers(c: np.ndarray, s: np.ndarray) -> np.ndarray:
    """``c**s`` for steps ``s`` (rows) and factors ``c = 1 - eta lam`` (columns)."""
    s = np.asarray(s, dtype=float)[:, None]
    out = np.empty((s.shape[0], c.shape[0]))
    pos = c > 0
    if pos.any():
        out[:, pos] = np.exp(s * np.log(c[pos]))
    if (~pos).any():
        out[:, ~pos] = np.power(c[~pos][None, :], s)
    return out


def _check_in_memory(m: Any) -> None:
    if m.data.streamed:
        raise ValueError("training paths need the training rows in memory (this model streams "
                         "its rows from a dask frame or CSV); fit on an in-memory frame")
    if getattr(m, "weights", None) is not None:
        # the paths here descend the unweighted loss; the weighted fit's flow is its BLUP
        raise NotImplementedError(
            "training paths are not implemented for a model with precision weights= (they "
            "would descend the weighted loss 1/2 sum w_i (y_i - f_i)^2); the fit's "
            "random_effects and predict() are that gradient flow at t")


class _NTKPath:
    """Closed-form NTK losses and predictions along gradient descent (one basis)."""

    def __init__(self, res: FitResults, eta: float, test: dict | None):
        m = res.model
        _check_in_memory(m)
        if res.free_modes:
            raise NotImplementedError(
                "training paths follow gradient descent along every eigen-direction; a fit with "
                "free leading modes trains those to convergence (t_j = inf), which no step "
                "count reproduces: compare with fit(free_modes=0)")
        prof = m.profile
        check_complete_spectrum(prof, "the NTK training path (every eigen-direction)")
        self.n = res.nobs
        self.eta = eta
        self.lam = prof.lam
        self.r_rot = np.asarray(res.resid_rot, dtype=float)  # U^T (y - f0 - X beta)
        r = m.endog - m.offset - (m.exog @ res.params.to_numpy() if res.k_fe else 0.0)
        self.r = r
        self.rest2 = max(float(r @ r) - float(self.r_rot @ self.r_rot), 0.0) \
            if self.r_rot.shape[0] < self.n else 0.0
        tol = self.lam.max() * max(self.lam.size, 1) * np.finfo(float).eps if self.lam.size else 0.0
        self.nz = self.lam > tol
        self.c = 1.0 - eta * self.lam
        self.basis = m.basis
        self.test = test
        if test is not None:
            # A = K* U: new rows x eigen-directions; test residual before training
            # U^T k* of the test rows from the basis (features route in feature space)
            rot = m.basis.cross_rotation(kernel=test["K"], inputs=test["Z"], route="features")
            self.A = rot.matrix().T
            self.test_r0 = test["y"] - test["X"] @ res.params.to_numpy() - test["offset"] \
                if res.k_fe else test["y"] - test["offset"]

    # -- filters -----------------------------------------------------------------------
    def _gain(self, s: np.ndarray, flow: bool) -> tuple[np.ndarray, np.ndarray]:
        """(left-over factor, test filter) for steps s: (1 - eta lam)^s and
        (1 - (1 - eta lam)^s) / lam  (or exp(-t lam) and phi_t(lam) for the flow)."""
        s = np.asarray(s, dtype=float)
        lam = self.lam
        if flow:
            x = -self.eta * s[:, None] * lam[None, :]
            left = np.exp(x)
            learned = -np.expm1(x)
        else:
            left = _powers(self.c, s)
            learned = np.empty_like(left)
            pos = self.c > 0
            if pos.any():
                learned[:, pos] = -np.expm1(s[:, None] * np.log1p(-self.eta * lam[pos])[None, :])
            if (~pos).any():
                learned[:, ~pos] = 1.0 - left[:, ~pos]
        filt = np.empty_like(left)
        nz = self.nz
        filt[:, nz] = learned[:, nz] / lam[nz]
        filt[:, ~nz] = self.eta * s[:, None]
        return left, filt

    def losses(self, steps: np.ndarray, flow: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """Train (and test) mean squared errors at the given steps, in chunks."""
        steps = np.asarray(steps)
        k = max(self.lam.shape[0], 1)
        chunk = max(1, _CHUNK_ENTRIES // k)
        tr = np.empty(steps.shape[0])
        te = np.empty(steps.shape[0]) if self.test is not None else None
        r2 = self.r_rot ** 2
        for i0 in range(0, steps.shape[0], chunk):
            s = steps[i0:i0 + chunk]
            left, filt = self._gain(s, flow)
            tr[i0:i0 + chunk] = ((left ** 2) @ r2 + self.rest2) / self.n
            if te is not None:
                pred = (filt * self.r_rot[None, :]) @ self.A.T  # steps x new rows
                te[i0:i0 + chunk] = np.mean((self.test_r0[None, :] - pred) ** 2, axis=1)
        return tr, te

    def learned(self, step: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Network change ``f_s - f0`` on the training rows (and the test rows)."""
        left, filt = self._gain(np.array([step]), flow=False)
        u = self.basis.unrotate((1.0 - left[0]) * self.r_rot)
        ut = self.A @ (filt[0] * self.r_rot) if self.test is not None else None
        return u, ut


# -------------------------------------------------------------------------- test data

def _test_design(res: FitResults, test_data: Any) -> dict:
    """Response, fixed design, cross-kernel, offset and scaled inputs of test rows."""
    m = res.model
    d = m.data
    newdata = y = exog = Z = offset = None
    if isinstance(test_data, pd.DataFrame):
        newdata = test_data
    elif isinstance(test_data, dict):
        newdata = test_data.get("newdata")
        y, exog = test_data.get("endog"), test_data.get("exog")
        Z, offset = test_data.get("ntk_inputs"), test_data.get("offset")
        unknown = set(test_data) - {"newdata", "endog", "exog", "ntk_inputs", "offset"}
        if unknown:
            raise ValueError(f"test_data has unknown keys {sorted(unknown)}; use newdata, endog, "
                             "exog, ntk_inputs, offset")
    elif isinstance(test_data, (tuple, list)) and len(test_data) == 2 \
            and isinstance(test_data[0], pd.DataFrame):
        newdata, y = test_data
    elif isinstance(test_data, (tuple, list)) and len(test_data) == 3:
        y, exog, Z = test_data
    else:
        raise TypeError("test_data must be a DataFrame (formula models), a (DataFrame, y) pair, "
                        "a (y, exog, ntk_inputs) triple of arrays, or a dict with keys endog, "
                        "exog, ntk_inputs[, offset]")
    if newdata is not None:
        if y is None:
            y = _response(d, newdata)
        Zraw = rebuild_ntk_inputs(d, newdata)
        rows = m.new_rows(newdata, offset=offset)
    else:
        if Z is None:
            raise ValueError("test_data needs the network inputs (ntk_inputs) of the test rows")
        Zraw = np.asarray(Z, dtype=float)
        if Zraw.ndim == 1:
            Zraw = Zraw.reshape(-1, 1)
        rows = m.new_rows(None, exog=exog if exog is not None or res.k_fe else None,
                          ntk_inputs=Zraw, offset=offset)
    y = np.asarray(y, dtype=float).ravel()
    if y.shape[0] != rows.X.shape[0]:
        raise ValueError(f"the test response has {y.shape[0]} values for {rows.X.shape[0]} "
                         "test rows")
    if not np.all(np.isfinite(y)):
        raise ValueError("the test response contains NaN or infinite values")
    return {"y": y, "X": rows.X, "K": rows.kernel, "offset": rows.offset,
            "Z": m.input_scaling.apply(Zraw)}


def _response(design: Any, newdata: pd.DataFrame) -> np.ndarray:
    name = design.endog_name
    if name in newdata.columns:
        return newdata[name].to_numpy(dtype=float)
    import patsy

    try:
        desc = patsy.ModelDesc.from_formula(design.formula)
        env = patsy.EvalEnvironment([{"np": np, "numpy": np}])
        mat = patsy.dmatrix(patsy.ModelDesc([], desc.lhs_termlist), newdata, eval_env=env,
                            NA_action="raise", return_type="dataframe")
    except Exception as exc:  # patsy raises many kinds
        raise ValueError(f"could not evaluate the response {name!r} on the test rows ({exc}); "
                         "pass test_data=(newdata, y) with the response as an array") from None
    return mat.to_numpy(dtype=float).ravel()


# ------------------------------------------------------------------------------ public

def ntk_loss_path(res: FitResults, lr: float, loss: str = "mean",
                  steps: int | None = None, *, every: int = 1, test_data: Any = None,
                  flow: bool = True) -> pd.DataFrame:
    """NTK-predicted loss path of full-batch gradient descent, at every ``every``-th step.

    Closed forms in the model's eigendecomposition (no matrix exponential per step):
    see the module docstring.  Works for any kernel, analytic or finite.

    Parameters
    ----------
    res : MixedLMNTKResults
    lr : float
        Learning rate (checked for stability).
    loss : {"mean", "sum"}
    steps : int, optional
        Last step; by default the fit's stopping step ``round(res.epochs(lr, loss))``.
    every : int
        Record every ``every``-th step (and the last).
    test_data : optional
        Test rows, as for :func:`train`.
    flow : bool
        Add the gradient-flow columns.

    Returns
    -------
    pandas.DataFrame
        ``step, t, train_loss_ntk[, train_loss_flow][, test_loss_ntk, test_loss_flow]``
        (mean squared errors).

    Examples
    --------
    >>> import numpy as np, mixednn as mn
    >>> from mixednn.training import ntk_loss_path, max_stable_lr
    >>> rng = np.random.default_rng(0)
    >>> Z = rng.normal(size=(80, 2)); y = np.sin(2 * Z[:, 0]) + 0.3 * rng.normal(size=80)
    >>> res = mn.MixedLMNTK(y, np.ones((80, 1)), Z, network=mn.MLP(depth=1)).fit()
    >>> df = ntk_loss_path(res, lr=max_stable_lr(res) / 4)
    >>> bool(df["train_loss_ntk"].is_monotonic_decreasing)
    True
    """
    eta = _eta(res, lr, loss)
    _check_stable(res, lr, loss, eta)
    stop = int(round(res.t / eta))
    last = stop if steps is None else _check_steps(steps)
    every = _check_steps(every, "every", minimum=1)
    grid = np.unique(np.append(np.arange(0, last + 1, every), last))
    test = _test_design(res, test_data) if test_data is not None else None
    path = _NTKPath(res, eta, test)
    tr, te = path.losses(grid)
    cols = {"step": grid, "t": eta * grid, "train_loss_ntk": tr}
    if flow:
        trf, tef = path.losses(grid, flow=True)
        cols["train_loss_flow"] = trf
    if te is not None:
        cols["test_loss_ntk"] = te
        if flow:
            cols["test_loss_flow"] = tef
    return pd.DataFrame(cols)


def _check_steps(v: Any, name: str = "steps", minimum: int = 0) -> int:
    if isinstance(v, (bool, np.bool_)) or not float(v).is_integer() or v < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {v!r}")
    return int(v)


def train(res: FitResults, lr: float, loss: str = "mean", steps: int | None = None,
          record_every: int | None = None, test_data: Any = None, *, dtype: Any = "float64",
          max_steps: int = 200_000, progress: bool | None = None) -> TrainingPath:
    """Train (a copy of) the model's finite network for the fit's training time t.

    Full-batch gradient descent (``torch.optim.SGD``, no momentum) on the residual
    target ``y - X beta_hat``, starting from the initialisation whose empirical
    NTK the model used.

    Parameters
    ----------
    res : MixedLMNTKResults
        A fit with a finite network (``MLP(width=...)`` or a ``torch.nn.Module``).
    lr : float
        Learning rate; must satisfy ``eta * lam_max < 2`` (see :func:`max_stable_lr`).
    loss : {"mean", "sum"}
        ``1/(2n) sum (r - f)^2`` or ``1/2 sum (r - f)^2``.
    steps : int, optional
        Number of steps; by default the fit's stopping step ``round(res.epochs(lr, loss))``.
    record_every : int, optional
        Record losses every this many steps (default: about 100 records); step 0,
        the last step and the stopping step are always recorded.
    test_data : optional
        Test rows: a DataFrame (formula models; the response is evaluated from the
        formula), ``(DataFrame, y)``, ``(y, exog, ntk_inputs)`` arrays or a dict
        with keys ``endog, exog, ntk_inputs[, offset]``.
    dtype : {"float64", "float32"} or torch.dtype or None
        Precision of training; float64 (the kernel's) by default, ``None`` keeps the
        network's own dtype.
    max_steps : int
        Refuse to run more steps than this (raise lr, or pass ``steps``).
    progress : bool, optional
        tqdm progress bar (auto: long runs on a terminal or notebook).

    Returns
    -------
    TrainingPath

    Examples
    --------
    >>> import numpy as np, torch, mixednn as mn
    >>> rng = np.random.default_rng(0)
    >>> Z = rng.normal(size=(60, 2)); y = np.sin(2 * Z[:, 0]) + 0.3 * rng.normal(size=60)
    >>> _ = torch.manual_seed(0)
    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 256), torch.nn.Tanh(), torch.nn.Linear(256, 1))
    >>> res = mn.MixedLMNTK(y, np.ones((60, 1)), Z, network=net).fit()
    >>> path = res.train(lr=0.25 * mn.training.max_stable_lr(res), steps=50)
    >>> path.to_frame().columns[:3].tolist()
    ['step', 't', 'train_loss']
    """
    m = res.model
    src = m.kernel_source
    _check_finite(src)
    _check_in_memory(m)
    eta = _eta(res, lr, loss)
    _check_stable(res, lr, loss, eta)
    stop = int(round(res.epochs(lr, loss)))
    n_steps = stop if steps is None else _check_steps(steps)
    _check_step_budget(res, lr, loss, n_steps, stop, max_steps)
    agree_step = min(stop, n_steps)
    record = _recorded_steps(n_steps, record_every, agree_step)
    test = _test_design(res, test_data) if test_data is not None else None
    path = _NTKPath(res, eta, test)
    run = _GradientDescent(res, src.module, lr, loss, dtype, test)
    run.descend(n_steps, record, agree_step, progress)
    return _training_path(res, path, run, lr=float(lr), eta=eta, stop=stop,
                          agree_step=agree_step)


# ---------------------------------------------------------------- steps of train()

def _check_finite(src: Any) -> None:
    if not src.finite:
        raise TypeError(
            f"train() needs a finite network (MLP(width=...) or a torch.nn.Module); this model "
            f"uses {src.description!r}. For any kernel, mixednn.training.ntk_loss_path gives "
            "the NTK prediction of the loss path")


def _check_step_budget(res: FitResults, lr: float, loss: str, n_steps: int, stop: int,
                       max_steps: int) -> None:
    if n_steps > max_steps:
        lim = max_stable_lr(res, loss)
        raise ValueError(
            f"{n_steps:,} steps requested (the fit's time t = {res.t:.4g} at lr = {lr:g} is "
            f"{stop:,} steps), more than max_steps = {max_steps:,}; use a larger learning rate "
            f"(stable up to {lim:.4g}), pass steps=, or raise max_steps")


def _recorded_steps(n_steps: int, record_every: int | None, agree_step: int) -> set[int]:
    """Step 0, every ``record_every``-th step, the last step and the agreement step."""
    if record_every is None:
        record_every = max(1, n_steps // 100)
    record_every = _check_steps(record_every, "record_every", minimum=1)
    record = set(range(0, n_steps + 1, record_every)) | {n_steps}
    record.add(agree_step)
    return record


def _progress_bar(n_steps: int, progress: bool | None) -> Any:
    """A tqdm bar for long runs (or when asked), else None."""
    show = progress if progress is not None else n_steps >= 2000
    if not show:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=n_steps, desc="training", unit="step",
                disable=None if progress is None else not progress, leave=False)


class _GradientDescent:
    """Full-batch gradient descent of a copy of the network on ``y - X beta_hat``, in the
    training precision, recording the losses (and the learned change at the agreement
    step) on the way."""

    def __init__(self, res: FitResults, module: Any, lr: float, loss: str, dtype: Any,
                 test: dict | None):
        import torch

        from .kernels.empirical import as_tensor, resolve_dtype

        m = res.model
        net = copy.deepcopy(module)
        if dtype is not None:
            net = net.to(resolve_dtype(dtype))
        tdt = next(net.parameters()).dtype
        self.net = net
        self.loss = loss
        self.test = test
        self.Zt = as_tensor(m.scaled_inputs, tdt)
        beta = res.params.to_numpy()
        self.xb = m.exog @ beta if res.k_fe else np.zeros(res.nobs)
        self.target = torch.from_numpy(m.endog - self.xb).to(tdt)
        self.off = torch.from_numpy(np.asarray(m.offset, dtype=float)).to(tdt)
        if test is not None:
            self.Zte = as_tensor(test["Z"], tdt)
            xb_te = test["X"] @ beta if res.k_fe else np.zeros(test["y"].shape[0])
            self.target_te = torch.from_numpy(test["y"] - xb_te).to(tdt)
            self.off_te = torch.from_numpy(np.asarray(test["offset"], dtype=float)).to(tdt)
            with torch.no_grad():
                self.init_te = net(self.Zte).reshape(-1).detach().clone()
        params = [p for p in net.parameters() if p.requires_grad]
        self.opt = torch.optim.SGD(params, lr=float(lr), momentum=0.0)
        self.init_tr = None
        self.steps: list[int] = []
        self.train_loss: list[float] = []
        self.test_loss: list[float] = []
        self.u_net = self.ut_net = None
        self.seconds = float("nan")

    def descend(self, n_steps: int, record: set[int], agree_step: int,
                progress: bool | None) -> None:
        """Steps 0..n_steps, recording at the steps in ``record``."""
        bar = _progress_bar(n_steps, progress)
        t0 = time.perf_counter()
        try:
            for s in range(n_steps + 1):
                out, resid = self._forward()
                if s in record:
                    self._record(s, out, resid, s == agree_step)
                if s == n_steps:
                    break
                self._step(resid)
                if bar is not None:
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()
        self.seconds = time.perf_counter() - t0

    def _forward(self) -> tuple[Any, Any]:
        """Network output on the training rows and the residual of ``f0 + f - f(theta_0)``."""
        out = self.net(self.Zt).reshape(-1)
        if self.init_tr is None:
            self.init_tr = out.detach().clone()
        f = out - self.init_tr + self.off
        return out, self.target - f

    def _record(self, s: int, out: Any, resid: Any, at_agreement: bool) -> None:
        import torch

        mse = float(torch.mean(resid.detach() ** 2))
        if not math.isfinite(mse):
            raise FloatingPointError(
                f"training diverged at step {s} (non-finite loss); use a smaller lr")
        self.steps.append(s)
        self.train_loss.append(mse)
        if self.test is not None:
            with torch.no_grad():
                ft = self.net(self.Zte).reshape(-1) - self.init_te + self.off_te
                self.test_loss.append(float(torch.mean((self.target_te - ft) ** 2)))
        if at_agreement:
            self.u_net = (out.detach() - self.init_tr).to(torch.float64).numpy().copy()
            if self.test is not None:
                with torch.no_grad():
                    self.ut_net = (self.net(self.Zte).reshape(-1) - self.init_te
                                   ).to(torch.float64).numpy()

    def _step(self, resid: Any) -> None:
        obj = 0.5 * (resid ** 2).mean() if self.loss == "mean" else 0.5 * (resid ** 2).sum()
        self.opt.zero_grad(set_to_none=True)
        obj.backward()
        self.opt.step()


def _relative_difference(a: np.ndarray, b: np.ndarray) -> float:
    """``||a - b|| / ||b||``; NaN when ``b = 0``."""
    den = float(np.linalg.norm(b))
    return float(np.linalg.norm(a - b) / den) if den > 0 else float("nan")


def _training_path(res: FitResults, path: _NTKPath, run: _GradientDescent, *, lr: float,
                   eta: float, stop: int, agree_step: int) -> TrainingPath:
    """The recorded losses next to the NTK's, and the agreement at ``agree_step``."""
    m = res.model
    has_test = run.test is not None
    steps_arr = np.asarray(run.steps, dtype=np.int64)
    tr_ntk, te_ntk = path.losses(steps_arr)
    tr_flow, te_flow = path.losses(steps_arr, flow=True)
    u_ntk, ut_ntk = path.learned(agree_step)
    base = run.xb + m.offset
    preds = pd.DataFrame({"network": base + run.u_net, "ntk": base + u_ntk},
                         index=m.data.row_labels)
    return TrainingPath(
        steps=steps_arr, train_loss=np.asarray(run.train_loss), train_loss_ntk=tr_ntk,
        train_loss_flow=tr_flow,
        test_loss=np.asarray(run.test_loss) if has_test else None,
        test_loss_ntk=te_ntk, test_loss_flow=te_flow if has_test else None,
        lr=lr, loss=run.loss, eta=eta, stop_step=stop, t_hat=res.t,
        agreement=_relative_difference(run.u_net, u_ntk),
        agreement_test=_relative_difference(run.ut_net, ut_ntk) if has_test else None,
        agreement_step=agree_step, predictions=preds, network=run.net, seconds=run.seconds,
        rule=res.t_method)
