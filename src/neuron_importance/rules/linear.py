"""DeepLIFT's Linear rule for dense and convolutional layers, and signed elementwise scaling.

For ``y = b + Σ_i w_i x_i`` the paper (Shrikumar et al. 2017, §3.5.1) splits the output
difference by the sign of each term ``w_i Δx_i``, using the *total* input difference::

    Δy⁺ = Σ_i 1{w_iΔx_i > 0} w_i Δx_i        Δy⁻ = Σ_i 1{w_iΔx_i < 0} w_i Δx_i

Vectorised with ``P = max(W, 0)``, ``N = min(W, 0)``, ``Δx_p = Δx·1[Δx>0]``,
``Δx_n = Δx·1[Δx<0]``: ``Δy⁺ = PΔx_p + NΔx_n`` and ``Δy⁻ = NΔx_p + PΔx_n``. Biases never get
credit. Written this way autograd gives exactly the paper's multipliers
``m_x = 1[Δx>0](Pᵀm⁺ + Nᵀm⁻) + 1[Δx<0](Nᵀm⁺ + Pᵀm⁻)``; the sign masks count ½ where
``Δx = 0`` so that such inputs receive ``½·Wᵀ(m⁺ + m⁻)`` as in the DeepLIFT notes (0 would
still sum to delta but would drop credit when a neuron's ± parts cancel).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

Streams = tuple[Tensor, Tensor]


def sign_masks(d: Tensor) -> tuple[Tensor, Tensor]:
    """``(1[d>0] + ½·1[d=0], 1[d<0] + ½·1[d=0])``, detached: masks are not differentiated."""
    with torch.no_grad():
        half = (d == 0).to(d.dtype) * 0.5
        return (d > 0).to(d.dtype) + half, (d < 0).to(d.dtype) + half


def split_by_sign(d: Tensor) -> Streams:
    mp, mn = sign_masks(d)
    return d * mp, d * mn


def mixing_rule(apply: Callable[[Tensor, Tensor], Tensor], weight: Tensor, pos: Tensor,
                neg: Tensor) -> Streams:
    """± parts of a bias-free linear map ``apply(v, W)`` (dense or conv) under the Linear rule."""
    p, n = split_by_sign(pos + neg)
    w = weight.detach()
    wp, wn = w.clamp(min=0), w.clamp(max=0)
    return apply(p, wp) + apply(n, wn), apply(p, wn) + apply(n, wp)


def signed_scale(pos: Tensor, neg: Tensor, c: Tensor | float) -> Streams:
    """± parts of ``c·Δ`` for an elementwise constant ``c``: a negative factor swaps the parts."""
    if not isinstance(c, Tensor):
        c = float(c)
        return (c * pos, c * neg) if c >= 0 else (c * neg, c * pos)
    c = c.detach()
    cp, cn = c.clamp(min=0), c.clamp(max=0)
    return cp * pos + cn * neg, cp * neg + cn * pos
