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
