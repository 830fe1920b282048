"""TrainingPath: the real network's losses along gradient descent beside the NTK's.

The record that :func:`mixednn.training.train` returns, with its plots.  It names the rule
that chose the stopping time with the one map of rule names,
:data:`mixednn.timechoice.RULE_NAMES`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .timechoice import RULE_NAMES

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["TrainingPath"]


@dataclass
class TrainingPath:
    """Losses of the real network along gradient descent next to the NTK prediction.

    Attributes
    ----------
    steps : ndarray of int
        Recorded steps (0 = initialisation).
    train_loss, test_loss : ndarray
        Mean squared errors of the real network (``test_loss`` is None without test data).
    train_loss_ntk, test_loss_ntk : ndarray
        Closed-form NTK prediction for *discrete* gradient descent with the same steps.
    train_loss_flow, test_loss_flow : ndarray
        Gradient-flow prediction (the mixed model's ``exp(-t lam)``) at ``t = eta * step``.
    lr, loss, eta : float, str, float
        Learning rate, loss convention and time per step (``lr / n`` or ``lr``).
    stop_step : int
        The stopping step ``round(t_hat / eta)``.
    t_hat : float
        The fit's training time.
    rule : str
        The rule that chose it (``res.t_method``: ``"reml"``, ``"gcv"``, ...).
    agreement : float
        Relative RMS difference between the trained network's and the NTK's learned
        change on the training rows at ``agreement_step``:
        ``||u_net - u_ntk|| / ||u_ntk||`` with ``u = f_s - f0``.  NaN when nothing
        is learned (``u_ntk = 0``).
    agreement_test : float or None
        The same on the test rows.
    agreement_step : int
        ``stop_step``, or the last step when training stopped earlier.
    predictions : pandas.DataFrame
        Training-row predictions at ``agreement_step`` (``network``, ``ntk``,
        including fixed effects and offset).
    network : torch.nn.Module
        The trained copy of the network.
    seconds : float
        Wall time of the training loop.
    """

    steps: np.ndarray
    train_loss: np.ndarray
    train_loss_ntk: np.ndarray
    train_loss_flow: np.ndarray
    test_loss: np.ndarray | None
    test_loss_ntk: np.ndarray | None
    test_loss_flow: np.ndarray | None
    lr: float
    loss: str
    eta: float
    stop_step: int
    t_hat: float
    agreement: float
    agreement_test: float | None
    agreement_step: int
    predictions: pd.DataFrame = field(repr=False)
    network: Any = field(repr=False, default=None)
    seconds: float = float("nan")
    ntk_path: str = "discrete gradient descent, (1 - eta lam)^s"
    rule: str = "reml"

    @property
    def t(self) -> np.ndarray:
        """Training time of each recorded step, ``eta * step``."""
        return self.eta * self.steps

    def to_frame(self) -> pd.DataFrame:
        """One row per recorded step: ``step, t, train_loss, train_loss_ntk,
        train_loss_flow`` (and the ``test_*`` columns with test data)."""
        cols = {"step": self.steps, "t": self.t, "train_loss": self.train_loss,
                "train_loss_ntk": self.train_loss_ntk, "train_loss_flow": self.train_loss_flow}
        if self.test_loss is not None:
            cols.update(test_loss=self.test_loss, test_loss_ntk=self.test_loss_ntk,
                        test_loss_flow=self.test_loss_flow)
        return pd.DataFrame(cols)

    def plot(self, ax: "Axes | None" = None, *, logy: bool = False) -> "Figure":
        """Real losses (markers) against the NTK prediction (lines), REML stop marked.

        Parameters
        ----------
        ax : matplotlib Axes, optional
            Draw into these axes; a new headless Figure otherwise.
        logy : bool
            Logarithmic loss axis.

        Returns
        -------
        matplotlib.figure.Figure
        """
        if ax is None:
            from matplotlib.figure import Figure

            fig = Figure(figsize=(6.4, 4.0), layout="constrained")
            ax = fig.subplots()
        else:
            fig = ax.figure
        x = self.steps
        series = [("train", self.train_loss, self.train_loss_ntk, self.train_loss_flow, "#1f5a99")]
        if self.test_loss is not None:
            series.append(("test", self.test_loss, self.test_loss_ntk, self.test_loss_flow,
                           "#d2691e"))
        for name, real, ntk, flow, col in series:
            ax.plot(x, ntk, color=col, lw=1.8, label=f"{name}: NTK prediction")
            ax.plot(x, flow, color=col, lw=0.9, ls=":", label=f"{name}: gradient flow")
            ax.plot(x, real, "o", color=col, ms=3.5, mfc="none", label=f"{name}: network")
        ax.axvline(self.stop_step, color="0.4", ls="--", lw=1)
        ax.annotate(f"{self._rule_name} stop ({self.stop_step} steps)", (self.stop_step, 1.0),
                    xycoords=("data", "axes fraction"), xytext=(3, -12),
                    textcoords="offset points", fontsize=8, color="0.3")
        if logy:
            ax.set_yscale("log")
        ax.set_xlabel(f"gradient-descent step (lr = {self.lr:g}, {self.loss} loss)")
        ax.set_ylabel("mean squared error")
        ax.set_title(f"network vs NTK at step {self.agreement_step}: relative RMS difference "
                     f"{self.agreement:.3g}", fontsize=10)
        ax.legend(fontsize=7, frameon=False)
        return fig

    def __repr__(self) -> str:
        test = "" if self.agreement_test is None else f", agreement_test={self.agreement_test:.3g}"
        return (f"<TrainingPath lr={self.lr:g} ({self.loss} loss), {int(self.steps[-1])} steps, "
                f"{self._rule_name} stop {self.stop_step}, agreement={self.agreement:.3g}{test}>")

    @property
    def _rule_name(self) -> str:
        return RULE_NAMES.get(self.rule, self.rule)
