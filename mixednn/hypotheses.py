"""Hypothesis-test results: :class:`TestResult` and :class:`InapplicableTest`.

Every test of mixednn (:func:`mixednn.inference.score_test`,
:func:`mixednn.inference.lr_test`, :func:`mixednn.comparison.compare_lr_test` and the
rows of :func:`mixednn.comparison.anova`) returns a :class:`TestResult`: the
statistic, the p-value, how the p-value was obtained (``method``), the null
hypothesis and distribution in words, a degrees-of-freedom-like summary (``df``) and
further numbers (``details``).  It prints as a small two-column table (plain text and
HTML).  A test that is undefined for the data at hand is an
:class:`InapplicableTest` that says why (``reason``, ``valid = False``), never a
bare NaN.  This module owns those objects and their formatting, as
``linearmodels.shared.hypotheses`` does for linearmodels.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

__all__ = ["TestResult", "InapplicableTest"]


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

    @classmethod
    def because(cls, name: str, null: str, reason: str) -> InapplicableTest:
        """The test ``name`` of ``null``, undefined for ``reason`` (NaN statistic and p-value)."""
        return cls(float("nan"), float("nan"), "inapplicable", null, "none", name=name,
                   reason=reason)

    def _rows(self) -> list[tuple[str, str]]:
        return [("H0", self.null), ("Inapplicable", self.reason)]
