"""Quadrature rules on [0, 1] for path integrals (Integrated Gradients, conductance).

``quadrature(method, n_steps)`` returns ``(alphas, weights)`` such that

    ∫₀¹ g(α) dα  ≈  Σ_k weights[k] · g(alphas[k])

The names and the evaluation points are Captum 0.9's
(``captum.attr._utils.approximation_methods``), so ``method="riemann_left"`` here and in Captum
evaluate the integrand at bit-for-bit the same α. One rule's *weights* differ on purpose:

* ``riemann_trapezoid``: Captum uses the points ``linspace(0, 1, n)`` (spacing ``1/(n-1)``) but
  the weights ``1/n`` (halved at both ends), which sum to ``(n-1)/n`` instead of 1, so its
  integral of a constant is short by a factor ``(n-1)/n`` and completeness fails even on a linear
  model (by 25 % at ``n = 4``, 2 % at ``n = 50``). Here the weights are the trapezoid rule's
  ``1/(n-1)`` (halved at both ends), i.e. exactly Captum's times ``n/(n-1)``.

Everything else matches Captum exactly, including two of its quirks that we keep for parity:

* the Riemann points come from ``torch.linspace`` in the default dtype (float32 unless changed
  with ``torch.set_default_dtype``) and are converted to Python floats, so ``1/3`` is
  ``0.3333333432674408``;
* the Gauss–Legendre rule comes from ``numpy.polynomial.legendre.leggauss`` (float64).

Unlike Captum, ``riemann_left``, ``riemann_right`` and ``riemann_middle`` also accept
``n_steps = 1`` (Captum asserts ``n > 1`` for every Riemann rule); the trapezoid rule needs 2.
"""

from __future__ import annotations

import numbers

import numpy as np
import torch

METHODS: tuple[str, ...] = (
    "gausslegendre",
    "riemann_left",
    "riemann_right",
    "riemann_middle",
    "riemann_trapezoid",
)


def _linspace(start: float, end: float, n: int) -> list[float]:
    # Captum's exact call: default dtype, then .tolist().
    return torch.linspace(start, end, n).tolist()


def quadrature(method: str = "gausslegendre", n_steps: int = 50) -> tuple[list[float], list[float]]:
    """Return ``(alphas, weights)``, two lists of ``n_steps`` Python floats, for ``method``.

    Rules (``n = n_steps``, ``k`` the point index):

    ``gausslegendre`` (default)
        ``alphas[k] = (1 + t_k) / 2`` and ``weights[k] = w_k / 2``, where ``(t_k, w_k)`` are the
        ``n``-point Gauss–Legendre nodes and weights on [-1, 1]. Exact for polynomials of degree
        ``2n - 1``; the end points 0 and 1 are never evaluated.
    ``riemann_left``
        ``alphas[k] = k / n`` for ``k = 0 … n-1``, ``weights[k] = 1 / n``.
    ``riemann_right``
        ``alphas[k] = (k + 1) / n`` for ``k = 0 … n-1``, ``weights[k] = 1 / n``
        (the formula in the Integrated Gradients paper).
    ``riemann_middle``
        ``alphas[k] = (k + 1/2) / n`` for ``k = 0 … n-1``, ``weights[k] = 1 / n``.
    ``riemann_trapezoid``
        ``alphas[k] = k / (n - 1)`` for ``k = 0 … n-1``, ``weights[k] = 1 / (n - 1)`` with the
        first and last halved. Needs ``n >= 2``. (Captum 0.9 uses ``1 / n`` here, see the module
        docstring.)

    The weights of every rule sum to 1 (up to rounding), so every rule integrates a constant —
    and hence Integrated Gradients of a linear model — exactly.

    Raises ``ValueError`` for an unknown ``method`` (naming the valid ones) and for
    ``n_steps < 1`` (``< 2`` for the trapezoid rule) or a non-integer ``n_steps``.
    """
    if method not in METHODS:
        raise ValueError(
            f"unknown quadrature method {method!r}; valid methods are "
            f"{', '.join(repr(m) for m in METHODS)}"
        )
    if isinstance(n_steps, bool) or not isinstance(n_steps, numbers.Integral):
        raise ValueError(f"n_steps must be an integer, got {n_steps!r}")
    n = int(n_steps)
    minimum = 2 if method == "riemann_trapezoid" else 1
    if n < minimum:
        raise ValueError(f"method {method!r} needs n_steps >= {minimum}, got {n}")

    if method == "gausslegendre":
        nodes, w = np.polynomial.legendre.leggauss(n)
        return (0.5 * (1 + nodes)).tolist(), (0.5 * w).tolist()
    if method == "riemann_left":
        return _linspace(0, 1 - 1 / n, n), [1 / n] * n
    if method == "riemann_right":
        return _linspace(1 / n, 1, n), [1 / n] * n
    if method == "riemann_middle":
        return _linspace(1 / (2 * n), 1 - 1 / (2 * n), n), [1 / n] * n
    # riemann_trapezoid
    weights = [1 / (n - 1)] * n
    weights[0] /= 2
    weights[-1] /= 2
    return _linspace(0, 1, n), weights
