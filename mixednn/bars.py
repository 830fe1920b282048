"""lme4's bar terms: ``(1 | g)``, ``(1 + x | g)``, ``(0 + x | g)``, ``(x || g)``, ``(1 | a/b)``.

A formula's bar terms are split off here (patsy keeps the fixed part) and turned into
the random-effects design of lme4 (Bates et al. 2015, section 2.2): one block per
term, one column per level and effect (level-major), and the *relative covariance
factor* ``Lambda(theta)``, block-diagonal with one lower-triangular ``k x k`` factor
``T`` per term repeated over its levels, so ``Var(b) = s2 Lambda Lambda^T``.  ``theta``
stacks the lower triangles of the ``T``'s column by column (lme4's order); diagonal
elements are bounded below by 0.

Supported, as in lme4: ``(1 | g)``, ``(1 + x | g)`` and ``(x | g)`` (correlated
intercept and slopes), ``(0 + x | g)``, ``(1 + x || g)`` (uncorrelated: one term per
effect), nested ``(1 | a/b)`` (= ``(1 | a) + (1 | a:b)``), interactions ``(1 | a:b)``
and crossed terms ``(1 | a) + (1 | b)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Sequence

import numpy as np
import pandas as pd
import patsy
import scipy.sparse as sp

from .checks import formula_brackets

__all__ = ["BarTerm", "GroupStructure", "split_bars", "expand_bar", "array_groups"]


@dataclass(frozen=True)
class BarTerm:
    """One random-effects term ``(effects | group)`` after expansion.

    Attributes
    ----------
    effects : str
        The left of the bar, a patsy formula (``"1 + days"``, ``"0 + x"``).
    factors : tuple of str
        The grouping columns; more than one is their interaction (``a:b``).
    text : str
        The term as written, for messages.
    """

    effects: str
    factors: tuple[str, ...]
    text: str

    @property
    def group_name(self) -> str:
        """lme4's name of the grouping factor (``b:a`` for the inner term of ``a/b``)."""
        return ":".join(reversed(self.factors))


def _top_level_bar(text: str) -> int:
    """Position of the first ``|`` of ``text`` outside brackets, or -1."""
    depth = 0
    for i, ch in enumerate(text):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if ch == "|" and depth == 0:
            return i
    return -1


def split_bars(formula: str) -> tuple[str, list[BarTerm]]:
    """Split lme4 bar terms off a two-sided formula.

    Parameters
    ----------
    formula : str
        ``"y ~ x + (1 + x | g)"``.

    Returns
    -------
    fixed : str
        The formula without its bar terms (``"y ~ x"``; ``"y ~ 1"`` if nothing is left).
    terms : list of BarTerm
        The expanded terms (nested and ``||`` terms split), in formula order.

    Examples
    --------
    >>> fixed, terms = split_bars("y ~ x + (1 | a/b)")
    >>> fixed, [t.group_name for t in terms]
    ('y ~ x', ['a', 'b:a'])
    """
    if "~" not in formula:
        return formula, []
    terms: list[BarTerm] = []
    pieces: list[str] = []
    last = 0
    top = sorted(span[:3] for span in formula_brackets(formula)[0] if span[3] == 0)
    for start, end, call in top:
        inner = formula[start + 1:end - 1]
        if call or start < formula.index("~") or _top_level_bar(inner) < 0:
            continue
        pieces.append(formula[last:start])
        terms.extend(expand_bar(formula[start:end]))
        last = end
    if not terms:
        return formula, []
    pieces.append(formula[last:])
    fixed = _tidy("".join(pieces))
    return fixed, terms


def _tidy(formula: str) -> str:
    """The formula with the removed terms' dangling ``+`` signs dropped."""
    lhs, rhs = formula.split("~", 1)
    parts = [p.strip() for p in rhs.split("+")]
    kept = [p for p in parts if p]
    return f"{lhs.strip()} ~ {' + '.join(kept) if kept else '1'}"


def expand_bar(text: str) -> list[BarTerm]:
    """The terms of one bracketed bar term (``"(1 + x || g)"`` gives two).

    Raises a ValueError naming the term when its grouping side is not a column name,
    an interaction ``a:b`` or a nesting ``a/b``.
    """
    inner = text.strip()[1:-1]
    at = _top_level_bar(inner)
    double = inner[at + 1:at + 2] == "|"
    effects = inner[:at].strip()
    group = inner[at + (2 if double else 1):].strip()
    if not effects:
        raise ValueError(f"the random-effects term {text!r} has nothing left of the bar: "
                         "write (1 | g) for a random intercept")
    for ch in "|()+*-~ ":
        if ch in group.replace(" ", "") or not group:
            raise ValueError(
                f"the random-effects term {text!r} has grouping side {group!r}; mixednn "
                "supports a column name (1 | g), an interaction (1 | a:b) and a nesting "
                "(1 | a/b)")
    if "/" in group:
        names = [g.strip() for g in group.split("/")]
        if any(not g or ":" in g for g in names):
            raise ValueError(f"the random-effects term {text!r}: nesting is written (1 | a/b)")
        groups = [tuple(names[:i + 1]) for i in range(len(names))]
    else:
        groups = [tuple(g.strip() for g in group.split(":"))]
    if any(not g for grp in groups for g in grp):
        raise ValueError(f"the random-effects term {text!r} has an empty grouping name")
    out = []
    for grp in groups:
        if double:
            for eff in _split_uncorrelated(effects, text):
                out.append(BarTerm(eff, grp, text))
        else:
            out.append(BarTerm(effects, grp, text))
    return out


def _split_uncorrelated(effects: str, text: str) -> list[str]:
    """``1 + x + z`` of a ``||`` term as ``["1", "0 + x", "0 + z"]``."""
    parts = [p.strip() for p in effects.split("+") if p.strip()]
    no_intercept = any(p in ("0", "-1") for p in parts) or effects.replace(" ", "").startswith("-1")
    slopes = [p for p in parts if p not in ("0", "1", "-1")]
    if any("-" in p or ":" in p or "*" in p or "C(" in p for p in slopes):
        raise ValueError(f"the random-effects term {text!r}: '||' splits numeric slopes only; "
                         "write the uncorrelated terms out, e.g. (1 | g) + (0 + x | g)")
    return ([] if no_intercept else ["1"]) + [f"0 + {p}" for p in slopes]


def bar_columns(terms: Sequence[BarTerm], data: pd.DataFrame) -> list[str]:
    """The data columns the bar terms use (grouping factors and effect variables)."""
    cols: list[str] = []
    for term in terms:
        for f in term.factors:
            if f not in data.columns:
                raise KeyError(f"the grouping factor {f!r} of the random-effects term "
                               f"{term.text!r} is not a column of data")
            cols.append(f)
        cols.extend(c for c in data.columns if _mentions(term.effects, str(c)))
    return list(dict.fromkeys(cols))


def _mentions(text: str, name: str) -> bool:
    import re
    return re.search(r"(?<![\w.])" + re.escape(name) + r"(?![\w])", text) is not None


@dataclass(frozen=True)
class TermBlock:
    """The design of one term: its levels, effect names, and the training columns its
    effects are built from (patsy's design info, which cannot be pickled, is rebuilt
    from them when new rows need it)."""

    term: BarTerm
    levels: tuple[Any, ...]
    effect_names: tuple[str, ...]
    frame: pd.DataFrame = field(repr=False, compare=False)

    @property
    def design_info(self) -> Any:
        """patsy's design info of the effects (rebuilt from the training columns)."""
        return _effects(self.term, self.frame)[1]

    @property
    def k(self) -> int:
        return len(self.effect_names)

    @property
    def n_theta(self) -> int:
        return self.k * (self.k + 1) // 2

    @property
    def n_columns(self) -> int:
        return self.k * len(self.levels)


def _group_codes(frame: pd.DataFrame, term: BarTerm) -> pd.Series:
    cols = [frame[f] for f in term.factors]
    if len(cols) == 1:
        return cols[0]
    return pd.Series([":".join(map(str, vals)) for vals in zip(*cols)], index=frame.index)


def _effects(term: BarTerm, frame: pd.DataFrame, info: Any = None) -> tuple[np.ndarray, Any]:
    try:
        if info is None:
            mat = patsy.dmatrix(term.effects, frame, NA_action="raise", return_type="dataframe")
            return mat.to_numpy(dtype=float), mat.design_info
        mat = patsy.build_design_matrices([info], frame, NA_action="raise",
                                          return_type="dataframe")[0]
        return mat.to_numpy(dtype=float), info
    except patsy.PatsyError as exc:
        raise ValueError(f"the random-effects term {term.text!r}: could not build its effects "
                         f"{term.effects!r} ({str(exc).splitlines()[0]})") from None


@dataclass(frozen=True)
class GroupStructure:
    """The random-effects design of a set of bar terms on the training rows.

    Attributes
    ----------
    blocks : tuple of TermBlock
    Z : scipy.sparse.csc_matrix (n, q)
        Columns level-major within each term, terms in order.
    """

    blocks: tuple[TermBlock, ...]
    Z: Any = field(repr=False)

    @classmethod
    def from_frame(cls, terms: Sequence[BarTerm], frame: pd.DataFrame) -> "GroupStructure":
        """Build Z from the (complete) training rows of ``frame``."""
        blocks, mats = [], []
        for term in terms:
            codes = _group_codes(frame, term)
            levels = tuple(pd.unique(codes.to_numpy()))
            try:
                levels = tuple(sorted(levels))  # lme4 orders levels (factor's sort)
            except TypeError:
                pass
            if len(levels) < 2:
                raise ValueError(f"the grouping factor of {term.text!r} has {len(levels)} level "
                                 "on the rows used; a group random effect needs at least 2 "
                                 "(as lme4)")
            E, info = _effects(term, frame)
            if len(levels) * E.shape[1] >= len(frame):
                raise ValueError(
                    f"the term {term.text!r} has {len(levels)} levels x {E.shape[1]} effects for "
                    f"{len(frame)} rows: the group effects would not be separable from the "
                    "residual (lme4: 'number of levels of each grouping factor must be < number "
                    "of observations'); use a coarser grouping or fewer random effects")
            if E.shape[1] == 0:
                raise ValueError(f"the random-effects term {term.text!r} has no effects")
            # lme4's name of the intercept
            names = tuple("(Intercept)" if c == "Intercept" else c for c in info.column_names)
            used = [c for c in frame.columns if _mentions(term.effects, str(c))]
            block = TermBlock(term, levels, names, frame[used].reset_index(drop=True))
            blocks.append(block)
            mats.append(_block_matrix(codes.to_numpy(), E, levels))
        if len(blocks) > 1:
            _check_distinct(blocks)
            nl = [len(b.levels) for b in blocks]
            if any(b > a for a, b in zip(nl, nl[1:])):
                # lme4 (mkReTrms) orders terms by decreasing number of levels, ties reversed
                order = list(reversed(np.argsort(nl, kind="stable")))
                blocks = [blocks[i] for i in order]
                mats = [mats[i] for i in order]
        return cls(tuple(blocks), sp.hstack(mats, format="csc"))

    @property
    def q(self) -> int:
        return int(self.Z.shape[1])

    @property
    def n_theta(self) -> int:
        return sum(b.n_theta for b in self.blocks)

    def theta_start(self) -> np.ndarray:
        """lme4's start: 1 on the diagonals, 0 off them."""
        return np.concatenate([_tri(b.k, diag=1.0, off=0.0) for b in self.blocks])

    def theta_lower(self) -> np.ndarray:
        """Lower bounds: 0 for diagonal elements, -inf for the others."""
        return np.concatenate([_tri(b.k, diag=0.0, off=-np.inf) for b in self.blocks])

    def theta_names(self) -> list[str]:
        """lme4's names of theta (``subject.(Intercept)``, ``subject.days.(Intercept)``)."""
        names = []
        for b in self.blocks:
            g = b.term.group_name
            for j in range(b.k):
                for i in range(j, b.k):
                    names.append(f"{g}.{b.effect_names[i]}" if i == j
                                 else f"{g}.{b.effect_names[i]}.{b.effect_names[j]}")
        return names

    def factors(self, theta: np.ndarray) -> list[np.ndarray]:
        """The lower-triangular ``T`` (k x k) of each term at ``theta``."""
        out, at = [], 0
        for b in self.blocks:
            T = np.zeros((b.k, b.k))
            rows, cols = np.tril_indices(b.k)
            order = np.lexsort((rows, cols))  # column by column
            T[rows[order], cols[order]] = theta[at:at + b.n_theta]
            out.append(T)
            at += b.n_theta
        return out

    def normalise_theta(self, theta: np.ndarray) -> np.ndarray:
        """``theta`` with each factor's columns signed so that its diagonal is >= 0
        (the same ``T T^T``: the sign of a column of ``T`` is not identified)."""
        out, at = [], 0
        for b, T in zip(self.blocks, self.factors(theta)):
            T = T * np.where(np.diag(T) < 0, -1.0, 1.0)[None, :]
            out.append(T[np.tril_indices(b.k)[0][np.lexsort(np.tril_indices(b.k)[::-1])],
                         np.tril_indices(b.k)[1][np.lexsort(np.tril_indices(b.k)[::-1])]])
            at += b.n_theta
        return np.concatenate(out)

    @cached_property
    def lambda_pattern(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(rows, cols, k)``: ``Lambda[rows, cols] = theta[k]`` (every other entry 0)."""
        rows, cols, which = [], [], []
        col0, k0 = 0, 0
        for b in self.blocks:
            r, c = np.tril_indices(b.k)
            order = np.lexsort((r, c))  # theta runs down the columns of T
            r, c = r[order], c[order]
            for j in range(len(b.levels)):
                rows.append(col0 + j * b.k + r)
                cols.append(col0 + j * b.k + c)
                which.append(k0 + np.arange(b.n_theta))
            col0 += b.n_columns
            k0 += b.n_theta
        return np.concatenate(rows), np.concatenate(cols), np.concatenate(which)

    def lambda_matrix(self, theta: np.ndarray) -> np.ndarray:
        """``Lambda(theta)`` (dense q x q), block-diagonal with ``I_levels (x) T`` per term."""
        rows, cols, which = self.lambda_pattern
        out = np.zeros((self.q, self.q))
        out[rows, cols] = np.asarray(theta, dtype=float)[which]
        return out

    def covariances(self, theta: np.ndarray, scale: float) -> list[np.ndarray]:
        """``s2 T T^T`` of each term: the covariance of its effects."""
        return [scale * T @ T.T for T in self.factors(theta)]

    def boundary(self, theta: np.ndarray, tol: float = 1e-4) -> list[str]:
        """Terms at the boundary: a zero variance or a correlation of +-1 (as lme4's
        ``isSingular``: a diagonal element of ``T`` below ``tol``)."""
        out = []
        for b, T in zip(self.blocks, self.factors(theta)):
            if np.any(np.abs(np.diag(T)) < tol):
                out.append(f"({' + '.join(b.effect_names)} | {b.term.group_name})")
        return out

    def new_rows(self, frame: pd.DataFrame, allow_new_levels: bool) -> tuple[Any, np.ndarray]:
        """Z of new rows (known levels) and, per row and term, the prior variance factor
        of new levels: returns ``(Z_new, E_new)`` where ``E_new`` holds each row's effect
        values for terms whose level is new (0 elsewhere), per term block concatenated."""
        mats, news = [], []
        for b in self.blocks:
            info = b.design_info
            missing = [f for f in b.term.factors if f not in frame.columns]
            if missing:
                raise KeyError(f"newdata has no column {missing[0]!r}, the grouping factor of "
                               f"{b.term.text!r} (pass re_form='~0' for the population level)")
            codes = _group_codes(frame, b.term).to_numpy()
            E, _ = _effects(b.term, frame, info)
            known = pd.Index(b.levels).get_indexer(codes) >= 0
            if not allow_new_levels and not known.all():
                bad = codes[~known][0]
                raise ValueError(
                    f"newdata has level {bad!r} of {b.term.group_name!r}, not seen in the "
                    "training data; pass allow_new_levels=True to predict it at the population "
                    "level (its group variance enters the prediction interval)")
            mats.append(_block_matrix(codes, E, b.levels))
            news.append(E * (~known)[:, None])
        return sp.hstack(mats, format="csr"), np.hstack(news)

    def ranef(self, b: np.ndarray) -> dict[str, pd.DataFrame]:
        """Conditional modes per grouping factor (lme4's ``ranef``): one frame per term
        name, levels as rows, effects as columns (terms on one factor side by side)."""
        out: dict[str, pd.DataFrame] = {}
        at = 0
        for blk in self.blocks:
            vals = b[at:at + blk.n_columns].reshape(len(blk.levels), blk.k)
            at += blk.n_columns
            frame = pd.DataFrame(vals, index=pd.Index(blk.levels, name=blk.term.group_name),
                                 columns=list(blk.effect_names))
            name = blk.term.group_name
            if name in out:  # (1 | g) + (0 + x | g): one frame, as lme4
                frame = frame.rename(columns=lambda c: c if c not in out[name].columns
                                     else f"{c}.{len(out[name].columns)}")
                frame = pd.concat([out[name], frame], axis=1)
            out[name] = frame
        return out


def _tri(k: int, diag: float, off: float) -> np.ndarray:
    out = []
    for j in range(k):
        for i in range(j, k):
            out.append(diag if i == j else off)
    return np.array(out, dtype=float)


def _block_matrix(codes: np.ndarray, E: np.ndarray, levels: Sequence[Any]) -> sp.csr_matrix:
    """Rows x (levels * k): row i has its effects E[i] in its level's k columns."""
    n, k = E.shape
    pos = pd.Index(levels).get_indexer(codes)
    rows = np.repeat(np.arange(n), k)
    cols = (pos[:, None] * k + np.arange(k)[None, :]).ravel()
    vals = E.ravel()
    keep = np.repeat(pos >= 0, k)
    return sp.csr_matrix((vals[keep], (rows[keep], cols[keep])), shape=(n, len(levels) * k))


def _check_distinct(blocks: Sequence[TermBlock]) -> None:
    seen: dict[tuple, str] = {}
    for b in blocks:
        key = (b.term.factors, b.effect_names)
        if key in seen:
            raise ValueError(f"the random-effects terms {seen[key]!r} and {b.term.text!r} "
                             "repeat the same effects for the same groups")
        seen[key] = b.term.text


def array_groups(groups: Any, exog_re: Any, nrows: int) -> tuple[list[BarTerm], pd.DataFrame]:
    """The bar term of statsmodels' array interface (``MixedLM(endog, exog, groups,
    exog_re)``): a random intercept per group, or the columns of ``exog_re`` (correlated
    within a group; include a column of ones for an intercept).

    Parameters
    ----------
    groups : array-like (n,)
        Group labels, one per row of the data (no missing values).
    exog_re : array-like (n, k) or DataFrame, optional
        Random-effects design; a random intercept when None.
    nrows : int
        Rows of the data (before missing-value handling).

    Returns
    -------
    terms : list of BarTerm
    frame : DataFrame
        The columns the term reads (``group`` and the ``exog_re`` columns), all rows.
    """
    labels = pd.Series(np.asarray(groups).ravel() if not isinstance(groups, pd.Series)
                       else groups.to_numpy())
    if len(labels) != nrows:
        raise ValueError(f"groups has {len(labels)} labels for {nrows} rows of data")
    if labels.isna().any():
        first = int(np.flatnonzero(labels.isna().to_numpy())[0])
        raise ValueError(f"groups has a missing label (first at row {first}); drop those rows "
                         "or give them a label")
    frame = pd.DataFrame({"group": labels.to_numpy()})
    if exog_re is None:
        return [BarTerm("1", ("group",), "(1 | group)")], frame
    if isinstance(exog_re, pd.DataFrame):
        names = [str(c) for c in exog_re.columns]
        values = exog_re.to_numpy(dtype=float)
    else:
        values = np.asarray(exog_re, dtype=float)
        values = values.reshape(-1, 1) if values.ndim == 1 else values
        names = [f"re{j}" for j in range(values.shape[1])]
    if values.shape[0] != nrows:
        raise ValueError(f"exog_re has {values.shape[0]} rows for {nrows} rows of data")
    if not np.all(np.isfinite(values)):
        raise ValueError("exog_re has missing or infinite values")
    # the caller's column names where patsy can read them as they are
    safe = [c if c.isidentifier() and c not in ("group", "C", "I", "Q") else f"re_{j}"
            for j, c in enumerate(names)]
    if len(set(safe)) != len(safe):
        safe = [f"re_{j}" for j in range(values.shape[1])]
    for j, col in enumerate(safe):
        frame[col] = values[:, j]
    text = f"(0 + {' + '.join(safe)} | group)"
    return [BarTerm("0 + " + " + ".join(safe), ("group",), text)], frame
