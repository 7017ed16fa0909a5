"""An exact DeepLIFT rule for max pooling ("cross-max" routing).

For a window with actual maximum ``y`` and reference maximum ``y⁰`` and ``Δy = y − y⁰``:
if ``Δy ≥ 0`` the whole of ``Δy`` goes to the position of the actual arg-max ``i*``, else to
the position of the reference arg-max ``j*``; the multiplier is ``Δy / Δx`` at that
position. This is the rule of shap's DeepExplainer, and it always sums to delta:
``Δx_{i*} = x_{i*} − x⁰_{i*} ≥ y − y⁰ = Δy ≥ 0`` (and symmetrically for ``j*``), so the
chosen position's ``Δx`` can only be zero when ``Δy`` is zero too, in which case the
multiplier is 0. The 2017 DeepLIFT code routes by the actual arg-max only, which breaks
summation-to-delta for a non-uniform reference (Captum #1104).
"""

from __future__ import annotations

import re
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

_POOLS = {
    ("max", 1): F.max_pool1d,
    ("max", 2): F.max_pool2d,
    ("max", 3): F.max_pool3d,
    ("adaptive", 1): F.adaptive_max_pool1d,
    ("adaptive", 2): F.adaptive_max_pool2d,
    ("adaptive", 3): F.adaptive_max_pool3d,
}


def parse(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]):
    """Return ``(pool_fn, spatial_dims, extra_args, extra_kwargs, wants_indices)``."""
    kind = "adaptive" if name.startswith("adaptive") else "max"
    nd = int(re.search(r"(\d)d", name).group(1))
    kwargs = dict(kwargs)
    wants = name.endswith("_with_indices") or bool(kwargs.pop("return_indices", False))
    n_pos = 1 if kind == "adaptive" else 5  # positional options before return_indices
    extra = list(args[1:])
    if len(extra) > n_pos:
        wants = wants or bool(extra[n_pos])
        extra = extra[:n_pos]
    return _POOLS[(kind, nd)], nd, tuple(extra), kwargs, wants


def pool(fn, nd: int, extra, kwargs, v: Tensor) -> tuple[Tensor, Tensor]:
    return fn(v, *extra, **kwargs, return_indices=True)


def gather_windows(v: Tensor, idx: Tensor, nd: int) -> Tensor:
    """``v`` at the flat spatial positions ``idx`` (one per output window)."""
    lead = v.shape[: v.dim() - nd]
    flat = v.reshape(*lead, -1)
    return flat.gather(-1, idx.reshape(*lead, -1)).reshape(idx.shape)


@torch.no_grad()
def route(y: Tensor, idx: Tensor, y_ref: Tensor, idx_ref: Tensor, delta_at) -> tuple[Tensor, Tensor]:
    """Choose the receiving position per window and its multiplier ``Δy/Δx``."""
    dy = y - y_ref
    chosen = torch.where(dy >= 0, idx, idx_ref)
    dx = delta_at(chosen)
    nonzero = dx != 0
    m = torch.where(nonzero, dy / torch.where(nonzero, dx, torch.ones_like(dx)), torch.zeros_like(dx))
    return chosen, m
