"""Interpretable networks with flexible (GP-interpolated) activation functions.

* :class:`GPActivation`: a bank of learnable 1-D functions, each the Gaussian-process
  interpolant of trainable control points, with linear extrapolation off the grid.
* :class:`KSTNetwork`: the Kolmogorov–Arnold superposition topology built from such banks.
* :func:`plot_learned_functions`: one small plot per learned function, control points marked.

Method notes: ``docs/methods/flexible-activations.md`` (shared docs).
"""

from __future__ import annotations

from .gp_activation import GPActivation, JitterWarning
from .kst import KSTNetwork
from .plots import plot_learned_functions

__all__ = ["GPActivation", "JitterWarning", "KSTNetwork", "plot_learned_functions"]

from .response import partial_dependence, per_input_responses, plot_responses  # noqa: E402
from .symbolic import (  # noqa: E402
    DEFAULT_CANDIDATES,
    SymbolicFit,
    SymbolicReadout,
    fit_symbolic,
    symbolic_readout,
)

__all__ += [
    "DEFAULT_CANDIDATES",
    "SymbolicFit",
    "SymbolicReadout",
    "fit_symbolic",
    "partial_dependence",
    "per_input_responses",
    "plot_responses",
    "symbolic_readout",
]

from .sweep import complexity_sweep, plot_tradeoff  # noqa: E402

__all__ += ["complexity_sweep", "plot_tradeoff"]
