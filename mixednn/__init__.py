"""mixednn: neural-network training as a random effect.

Gradient-flow training of an over-parameterised network is the posterior mean
(BLUP) of a linear mixed model with covariance ``s2 * exp(t K)``, ``K`` the
network's neural tangent kernel: training time ``t`` is a variance component,
estimated by REML and tested at ``t = 0``.

Main entry points: :class:`MixedLMNTK` (``from_formula`` for R-style formulas),
:class:`MLP` (architecture spec with its analytic NTK), :mod:`mixednn.datasets`.
Attributes load lazily so that ``import mixednn`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "MixedLMNTK": ("mixednn.model", "MixedLMNTK"),
    "KernelMemoryError": ("mixednn.model", "KernelMemoryError"),
    "MixedLMNTKResults": ("mixednn.results", "MixedLMNTKResults"),
    "MLP": ("mixednn.kernels.analytic", "MLP"),
    "BoundaryFitWarning": ("mixednn.spectral", "BoundaryFitWarning"),
    "InterpolationWarning": ("mixednn.spectral", "InterpolationWarning"),
    "KernelClippedWarning": ("mixednn.spectral", "KernelClippedWarning"),
    "anova": ("mixednn.inference", "anova"),
    "MLRefitWarning": ("mixednn.inference", "MLRefitWarning"),
    "inference": ("mixednn.inference", None),
    "TrainingPath": ("mixednn.training", "TrainingPath"),
    "training": ("mixednn.training", None),
    "datasets": ("mixednn.datasets", None),
    "spectral": ("mixednn.spectral", None),
    "stopping": ("mixednn.stopping", None),
    "freemodes": ("mixednn.freemodes", None),
    "hyper": ("mixednn.hyper", None),
    "lowrank": ("mixednn.lowrank", None),
    "streaming": ("mixednn.streaming", None),
    "CSVSource": ("mixednn.streaming", "CSVSource"),
    "kernels": ("mixednn.kernels", None),
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'mixednn' has no attribute {name!r}") from None
    mod = importlib.import_module(module)
    value = mod if attr is None else getattr(mod, attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
