"""The activation record shared by the analytic kernel and the torch network.

One frozen :class:`Activation` per supported activation holds everything any
part of :mod:`mixednn.kernels` needs to know about it:

* its ``name`` and ``aliases``;
* the numpy function ``phi`` and its derivative ``dphi`` (reference values,
  Monte Carlo checks);
* ``dual``: a :class:`DualForm`, how the infinite-width kernel
  (:mod:`~mixednn.kernels.analytic`) integrates it against a bivariate normal
  (which closed form, and the decomposition used by Gauss--Hermite quadrature);
* ``torch_fn``: the same function on torch tensors, used by the finite-width
  network (:mod:`~mixednn.kernels.torch_mlp`).  It imports torch when first
  called, so importing this module never imports torch.

:data:`ACTIVATIONS` is the registry (every accepted name, aliases included)
and :func:`canonical_activation` / :func:`get_activation` validate a
user-supplied name.  This module sits at the bottom of the kernels layer: it
imports nothing from mixednn.

Examples
--------
>>> from mixednn.kernels.activations import get_activation
>>> act = get_activation("Leaky-ReLU")
>>> act.name, float(act.phi(-2.0))
('leaky_relu', -0.02)
>>> get_activation("linear").name   # an alias
'identity'
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np
from scipy.special import erf as _sp_erf
from scipy.special import expit as _expit
from scipy.special import ndtr as _ndtr

if TYPE_CHECKING:  # pragma: no cover - typing only, torch is imported lazily
    from torch import Tensor

__all__ = [
    "Activation",
    "DualForm",
    "ACTIVATIONS",
    "LEAKY_SLOPE",
    "TANH_ERF_WEIGHTS",
    "TANH_ERF_RATES",
    "canonical_activation",
    "get_activation",
]

_PI = math.pi
_SQRT2 = math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)

#: Negative slope of ``leaky_relu`` (torch.nn.functional.leaky_relu's default).
LEAKY_SLOPE = 0.01


# ---------------------------------------------------------------------------
# numpy activations and derivatives
# ---------------------------------------------------------------------------


def _relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0)


def _drelu(x: np.ndarray) -> np.ndarray:
    return (np.asarray(x) > 0).astype(np.float64)


def _leaky(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return np.where(x > 0, x, LEAKY_SLOPE * x)


def _dleaky(x: np.ndarray) -> np.ndarray:
    return np.where(np.asarray(x) > 0, 1.0, LEAKY_SLOPE)


def _derf(x: np.ndarray) -> np.ndarray:
    return (2.0 / math.sqrt(_PI)) * np.exp(-np.square(x))


def _dtanh(x: np.ndarray) -> np.ndarray:
    return 1.0 - np.square(np.tanh(x))


def _gelu(x: np.ndarray) -> np.ndarray:
    return np.asarray(x) * _ndtr(x)


def _dgelu(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return _ndtr(x) + x * _INV_SQRT_2PI * np.exp(-0.5 * x * x)


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x)


def _dsigmoid(x: np.ndarray) -> np.ndarray:
    s = _expit(x)
    return s * (1.0 - s)


def _identity(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def _one(x: np.ndarray) -> np.ndarray:
    return np.ones_like(np.asarray(x, dtype=np.float64))


# ---------------------------------------------------------------------------
# torch activations (torch imported on first call; derivatives by autograd)
# ---------------------------------------------------------------------------


def _torch_relu(x: Tensor) -> Tensor:
    import torch

    return torch.relu(x)


def _torch_erf(x: Tensor) -> Tensor:
    import torch

    return torch.erf(x)


def _torch_tanh(x: Tensor) -> Tensor:
    import torch

    return torch.tanh(x)


def _torch_gelu(x: Tensor) -> Tensor:
    from torch.nn import functional as F

    return F.gelu(x, approximate="none")


def _torch_softplus(x: Tensor) -> Tensor:
    import torch

    # log(1 + exp(x)) without torch's linear cut-off at x > 20
    return torch.logaddexp(torch.zeros_like(x), x)


def _torch_sigmoid(x: Tensor) -> Tensor:
    import torch

    return torch.sigmoid(x)


def _torch_abs(x: Tensor) -> Tensor:
    import torch

    return torch.abs(x)


def _torch_leaky(x: Tensor) -> Tensor:
    from torch.nn import functional as F

    return F.leaky_relu(x, negative_slope=LEAKY_SLOPE)


def _torch_identity(x: Tensor) -> Tensor:
    return x


def _torch_sin(x: Tensor) -> Tensor:
    import torch

    return torch.sin(x)


# ---------------------------------------------------------------------------
# Base functions h of the quadrature decomposition (see DualForm).  Each
# returns (h(B), h'(B)) (or the second output that DualForm.dh_affine maps to
# h'), overwriting B with h(B) when it can.
# ---------------------------------------------------------------------------


def _h_tanh(B: np.ndarray, want_d: bool) -> tuple[np.ndarray, np.ndarray | None]:
    # returns tanh and tanh**2; the derivative 1 - tanh**2 is applied through
    # DualForm.dh_affine after the (linear) quadrature sum, saving a pass
    t = np.tanh(B, out=B)
    if not want_d:
        return t, None
    return t, np.multiply(t, t)


def _h_abs(B: np.ndarray, want_d: bool) -> tuple[np.ndarray, np.ndarray | None]:
    d = np.sign(B) if want_d else None
    return np.abs(B, out=B), d


def _h_erf(B: np.ndarray, want_d: bool) -> tuple[np.ndarray, np.ndarray | None]:
    d = None
    if want_d:
        d = np.multiply(B, B)
        np.negative(d, out=d)
        np.exp(d, out=d)
        d *= 2.0 / math.sqrt(_PI)
    return _sp_erf(B, out=B), d


def _h_sin(B: np.ndarray, want_d: bool) -> tuple[np.ndarray, np.ndarray | None]:
    d = np.cos(B) if want_d else None
    return np.sin(B, out=B), d


def _h_gelu_even(B: np.ndarray, want_d: bool) -> tuple[np.ndarray, np.ndarray | None]:
    # gelu(x) = x/2 + h(x) with h(x) = x * erf(x / sqrt 2) / 2 (even)
    e = _sp_erf(B / _SQRT2)
    d = None
    if want_d:  # h'(x) = erf(x / sqrt 2) / 2 + x * pdf(x)   (odd)
        d = np.multiply(B, B)
        d *= -0.5
        np.exp(d, out=d)
        d *= B
        d *= _INV_SQRT_2PI
        d += 0.5 * e
    e *= B
    e *= 0.5
    return e, d


def _h_softplus_even(B: np.ndarray, want_d: bool) -> tuple[np.ndarray, np.ndarray | None]:
    # softplus(x) = x/2 + h(x), h(x) = log(2 cosh(x/2)) = |x|/2 + log1p(exp(-|x|))
    d = None
    if want_d:  # h'(x) = tanh(x/2) / 2   (odd)
        d = np.multiply(B, 0.5)
        np.tanh(d, out=d)
        d *= 0.5
    a = np.abs(B, out=B)
    e = np.negative(a)
    np.exp(e, out=e)
    np.log1p(e, out=e)
    a *= 0.5
    a += e
    return a, d


# ---------------------------------------------------------------------------
# The tanh erf-mixture (closed forms of tanh, sigmoid and softplus)
# ---------------------------------------------------------------------------

# tanh(x) ~= sum_k A_k erf(B_k x): a scale mixture of erfs (the logistic
# density is a scale mixture of normals), fitted once by variable-projection
# least squares to tanh and its derivative on [0, 12].  The weights are all
# positive; sup |psi - tanh| = 4e-10 and sup |psi' - tanh'| = 8e-10 on the
# whole real line (tested).  Every term then has Williams' closed form, so the
# tanh / sigmoid kernels are exact kernels of the network with activation psi:
# accurate uniformly in the pre-activation variance and positive definite.

#: Weights ``A_k`` of ``tanh(x) ~= sum_k A_k erf(B_k x)`` (read-only, all positive).
TANH_ERF_WEIGHTS: np.ndarray = np.array([
    0.00048547419996633966, 0.010860976202931416, 0.061625636923677014,
    0.16174232908216707, 0.2542396347644198, 0.26282722435184536,
    0.17346361140618366, 0.0641421260562897, 0.010226311910977837,
    0.00038667469673439706,
])
#: Rates ``B_k`` of ``tanh(x) ~= sum_k A_k erf(B_k x)`` (read-only).
TANH_ERF_RATES: np.ndarray = np.array([
    0.3174035772518017, 0.4005090234778952, 0.49804968955707957,
    0.6169813675724228, 0.7628792415391477, 0.9406808667314811,
    1.1559897589524808, 1.4171732357212414, 1.739518806085259,
    2.162221402713687,
])
TANH_ERF_WEIGHTS.setflags(write=False)
TANH_ERF_RATES.setflags(write=False)


# ---------------------------------------------------------------------------
# The record
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DualForm:
    """How to integrate an activation against a bivariate normal.

    The analytic kernel needs the dual activations ``E[phi(a) phi(b)]`` and
    ``E[phi'(a) phi'(b)]`` for ``(a, b)`` jointly Gaussian.  ``closed`` names
    the closed form used for them; quadrature uses the decomposition

    ``phi(x) = c0 + lin * x + gamma * h(kappa * x)``

    where ``h`` is odd (then ``lin == 0``) or even (then ``c0 == 0``).  Under
    either condition the cross terms vanish by the symmetry
    ``(a, b) -> (-a, -b)``, so

    ``E[phi(a) phi(b)]   = c0**2 + lin**2 k12 + gamma**2 E[h(ka) h(kb)]`` and
    ``E[phi'(a) phi'(b)] = lin**2 + (gamma kappa)**2 E[h'(ka) h'(kb)]``,

    and the integrand ``h(ka) h(kb)`` is invariant under
    ``(a, b) -> (-a, -b)``, which halves the number of outer quadrature nodes.

    Attributes
    ----------
    closed : {"abrelu", "erf", "erfmix", "softplusmix", "gelu", "sin", "identity"} or None
        The closed form: arc-cosine kernel of a two-slope ReLU (Cho & Saul
        2009), Williams' (1997) arcsine kernel, the erf mixture of
        :data:`TANH_ERF_WEIGHTS` / :data:`TANH_ERF_RATES` (tanh, sigmoid), its
        antiderivative (softplus), the GELU form of Tsuchida et al. (2021), the
        Gaussian-characteristic-function form of ``sin``, or the identity;
        ``None``: quadrature only.
    h : callable ``(B, want_d) -> (h(B), second)`` or None
        Base function of the quadrature decomposition (may overwrite ``B``);
        ``second`` is mapped to ``h'(B)`` by ``dh_affine``.  ``None`` for the
        identity (nothing to integrate).
    c0, lin, gamma, kappa : float
        Coefficients of the decomposition above.
    slopes : (float, float)
        Negative and positive slope of an ``"abrelu"`` activation.
    dh_affine : (float, float)
        ``(u, v)`` with ``h' = u + v * second``.
    """

    closed: str | None
    h: Callable[[np.ndarray, bool], tuple[np.ndarray, np.ndarray | None]] | None
    c0: float = 0.0
    lin: float = 0.0
    gamma: float = 1.0
    kappa: float = 1.0
    slopes: tuple[float, float] = (0.0, 1.0)
    dh_affine: tuple[float, float] = (0.0, 1.0)


@dataclass(frozen=True)
class Activation:
    """One supported activation: numpy and torch functions and its kernel data.

    Attributes
    ----------
    name : str
        Canonical name (lower case, underscores).
    phi : callable ``ndarray -> ndarray``
        The activation on numpy arrays (float64).
    dphi : callable ``ndarray -> ndarray``
        Its derivative (any value at a kink).
    dual : DualForm
        How the analytic kernel integrates it against a bivariate normal.
    torch_fn : callable ``Tensor -> Tensor``
        The same function on torch tensors (derivatives by autograd); torch is
        imported when it is first called.
    aliases : tuple of str
        Other accepted names (e.g. ``"linear"`` for ``"identity"``).
    description : str
        One line: what the function is exactly.

    Examples
    --------
    >>> import numpy as np
    >>> act = get_activation("softplus")
    >>> act.description
    'log(1 + exp(x))'
    >>> round(float(act.phi(np.array(0.0))), 6)   # log 2
    0.693147
    """

    name: str
    phi: Callable[[np.ndarray], np.ndarray]
    dphi: Callable[[np.ndarray], np.ndarray]
    dual: DualForm
    torch_fn: Callable[[Tensor], Tensor]
    aliases: tuple[str, ...] = ()
    description: str = ""

    @property
    def names(self) -> tuple[str, ...]:
        """The canonical name followed by the aliases."""
        return (self.name,) + self.aliases


_RECORDS: tuple[Activation, ...] = (
    Activation(
        "relu", _relu, _drelu,
        DualForm("abrelu", _h_abs, lin=0.5, gamma=0.5, slopes=(0.0, 1.0)),
        _torch_relu, description="max(x, 0)",
    ),
    Activation(
        "erf", _sp_erf, _derf, DualForm("erf", _h_erf), _torch_erf,
        description="erf(x) (stax.Erf(a=1, b=1, c=0))",
    ),
    Activation(
        "tanh", np.tanh, _dtanh,
        DualForm("erfmix", _h_tanh, dh_affine=(1.0, -1.0)),
        _torch_tanh, description="tanh(x) (kernel of a 10-term erf mixture, error < 1e-9)",
    ),
    Activation(
        "gelu", _gelu, _dgelu, DualForm("gelu", _h_gelu_even, lin=0.5), _torch_gelu,
        description="x * Phi(x), exact (stax.Gelu(approximate=False))",
    ),
    Activation(
        "softplus", _softplus, _expit, DualForm("softplusmix", _h_softplus_even, lin=0.5),
        _torch_softplus, description="log(1 + exp(x))",
    ),
    Activation(
        "sigmoid", _expit, _dsigmoid,
        DualForm("erfmix", _h_tanh, c0=0.5, gamma=0.5, kappa=0.5, dh_affine=(1.0, -1.0)),
        _torch_sigmoid, description="1 / (1 + exp(-x)) (logistic)",
    ),
    Activation(
        "abs", np.abs, np.sign,
        DualForm("abrelu", _h_abs, gamma=1.0, slopes=(-1.0, 1.0)),
        _torch_abs, description="|x|",
    ),
    Activation(
        "leaky_relu", _leaky, _dleaky,
        DualForm(
            "abrelu",
            _h_abs,
            lin=(1.0 + LEAKY_SLOPE) / 2.0,
            gamma=(1.0 - LEAKY_SLOPE) / 2.0,
            slopes=(LEAKY_SLOPE, 1.0),
        ),
        _torch_leaky, description=f"max(x, {LEAKY_SLOPE:g} x)",
    ),
    Activation(
        "sin", np.sin, np.cos, DualForm("sin", _h_sin), _torch_sin,
        description="sin(x) (stax.Sin(a=1, b=1, c=0)); with a large bias variance "
        "its first layer's kernel is a Gaussian (RBF) kernel",
    ),
    Activation(
        "identity", _identity, _one, DualForm("identity", None, lin=1.0, gamma=0.0),
        _torch_identity, aliases=("linear",), description="x",
    ),
)


def _registry(records: tuple[Activation, ...]) -> Mapping[str, Activation]:
    table: dict[str, Activation] = {}
    for rec in records:
        for nm in rec.names:
            if nm in table:  # pragma: no cover - a programming error
                raise RuntimeError(f"activation name {nm!r} registered twice")
            table[nm] = rec
    return MappingProxyType(table)


#: Registry of supported activations: every accepted name (canonical names and
#: aliases) -> its :class:`Activation` record (read-only).  ``erf`` is the plain
#: ``erf(x)`` (``stax.Erf(a=1, b=1, c=0)``), ``gelu`` the exact ``x * Phi(x)``
#: (``stax.Gelu(approximate=False)``), ``sigmoid`` the logistic function,
#: ``softplus`` is ``log(1 + exp(x))``, ``leaky_relu`` has negative slope 0.01
#: (torch's default) and ``linear`` is an alias of ``identity``.
ACTIVATIONS: Mapping[str, Activation] = _registry(_RECORDS)


def canonical_activation(name: Any) -> str:
    """Validate an activation name and return its canonical spelling.

    Spelling is normalised (surrounding spaces removed, lower case, ``-`` to
    ``_``); the result is a key of :data:`ACTIVATIONS`.  An alias keeps its own
    name (``"linear"`` stays ``"linear"``, so a spec echoes the user's choice);
    :func:`get_activation` resolves it to its record.

    Parameters
    ----------
    name : str
        An activation name, e.g. ``"ReLU"`` or ``"leaky-relu"``.

    Returns
    -------
    str
        The normalised name.

    Raises
    ------
    ValueError
        If ``name`` is not a string or not a supported activation.

    Examples
    --------
    >>> canonical_activation(" Leaky-ReLU ")
    'leaky_relu'
    """
    if not isinstance(name, str):
        raise ValueError(
            f"activation must be a string, one of {sorted(ACTIVATIONS)}; got {name!r}"
        )
    key = name.strip().lower().replace("-", "_")
    if key not in ACTIVATIONS:
        raise ValueError(
            f"Unknown activation {name!r}; valid names are: {', '.join(sorted(ACTIVATIONS))}"
        )
    return key


def get_activation(name: Any) -> Activation:
    """The :class:`Activation` record of a (validated) activation name or alias.

    Parameters
    ----------
    name : str
        Any spelling accepted by :func:`canonical_activation`.

    Returns
    -------
    Activation

    Raises
    ------
    ValueError
        If ``name`` is not a supported activation.

    Examples
    --------
    >>> get_activation("GELU").dual.closed
    'gelu'
    """
    return ACTIVATIONS[canonical_activation(name)]
