"""Rules for elementwise nonlinearities ``y = f(x)``: Rescale and RevealCancel.

Both are from Shrikumar, Greenside & Kundaje, "Learning Important Features Through
Propagating Activation Differences" (ICML 2017), §3.5.2–3.5.3.

* Rescale: ``m = Δy/Δx``; where ``|Δx| < 1e-7`` the derivative ``f′(x⁰)`` at the reference
  is used instead (the reference code's ``NEAR_ZERO_THRESHOLD``). ``Δy± = m·Δx±``.
* RevealCancel: the two-player Shapley values of the parts ``Δx⁺`` and ``Δx⁻``::

      Δy⁺ = ½[f(x⁰+Δx⁺) − f(x⁰)] + ½[f(x⁰+Δx⁻+Δx⁺) − f(x⁰+Δx⁻)]
      Δy⁻ = ½[f(x⁰+Δx⁻) − f(x⁰)] + ½[f(x⁰+Δx⁺+Δx⁻) − f(x⁰+Δx⁺)]

  with ``m⁺ = Δy⁺/Δx⁺`` and ``m⁻ = Δy⁻/Δx⁻`` (no cross terms); ``Δy⁺ + Δy⁻ = Δy`` exactly.
  Division is guarded as in the reference code: ``Δx±`` with ``|Δx±| < 0.5e-7`` gets
  ``1e-7`` added (sign-preserving, so a tiny negative part keeps a non-negative multiplier).

Multipliers are computed without gradient tracking and applied as constants, so that
autograd's backward pass is exactly DeepLIFT's chain rule for multipliers.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

NEAR_ZERO = 1e-7

Fn = Callable[[Tensor], Tensor]


def derivative(f: Fn, at: Tensor) -> Tensor:
    """Elementwise derivative ``f′(at)`` by autograd (f is elementwise)."""
    with torch.enable_grad():
        v = at.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(f(v).sum(), v, allow_unused=True)
    return torch.zeros_like(at) if g is None else g


@torch.no_grad()
def rescale_multiplier(f: Fn, delta_x: Tensor, ref: Tensor, delta_y: Tensor,
                       scratch: bool = False, pointwise: bool = False) -> Tensor:
    """``Δy/Δx``, or ``f′(x⁰)`` where ``|Δx| < 1e-7``.

    With ``scratch=True`` the caller's ``delta_y`` and ``delta_x`` temporaries are reused in
    place (fewer full-size allocations: this runs once per nonlinearity per call). With
    ``pointwise=True`` (``f`` takes no other tensor argument) the derivative is evaluated
    at the few near-zero positions only.
    """
    m = delta_y.div_(delta_x) if scratch else delta_y / delta_x
    mag = delta_x.abs_() if scratch else delta_x.abs()
    small = mag < NEAR_ZERO
    if bool(small.any()):
        if pointwise:
            m = m.clone() if not scratch else m
            m[small] = derivative(f, ref.expand(m.shape)[small])
        else:
            m = torch.where(small, derivative(f, ref), m)
    return m


def _guard(v: Tensor) -> Tensor:
    sign = torch.where(v < 0, -torch.ones_like(v), torch.ones_like(v))
    return v + NEAR_ZERO * sign * (v.abs() < 0.5 * NEAR_ZERO).to(v.dtype)


@torch.no_grad()
def reveal_cancel_multipliers(f: Fn, ref: Tensor, pos: Tensor, neg: Tensor,
                              y_ref: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(Δy⁺, Δy⁻, m⁺, m⁻)`` of the RevealCancel rule for one elementwise nonlinearity."""
    f_pos = f(ref + pos)
    f_neg = f(ref + neg)
    f_both = f(ref + pos + neg)
    dy_pos = 0.5 * (f_pos - y_ref) + 0.5 * (f_both - f_neg)
    dy_neg = 0.5 * (f_neg - y_ref) + 0.5 * (f_both - f_pos)
    return dy_pos, dy_neg, dy_pos / _guard(pos), dy_neg / _guard(neg)
