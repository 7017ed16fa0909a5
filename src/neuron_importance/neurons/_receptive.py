"""Input gradients of single conv neurons computed on their receptive field only.

A neuron ``y[c, p]`` of a convolutional layer depends on one window of the input, its
receptive field. When the part of the model below the layer is a plain chain of windowed ops
(convolutions and pooling without padding) and elementwise ops, running that chain on the
cropped window gives exactly ``y[c, p]`` (the same arithmetic on the same values) and its
gradient with respect to the window is the neuron's whole input gradient (zero elsewhere).
For the MNIST CNN's second conv layer the window is 10 × 10 of 28 × 28 pixels and holds one
output position of 25, so the vector–Jacobian product of one neuron costs a small fraction of
a full backward pass through the lower layers. :class:`~.conductance.NeuronConductance`
uses this when :func:`crop_plan` accepts the model and falls back to full backward passes
otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

_ELEMENTWISE: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish,
    nn.Sigmoid, nn.Tanh, nn.Softplus, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid, nn.Identity,
)
# identity in eval mode / a per-channel affine map in eval mode
_EVAL_ONLY: tuple[type[nn.Module], ...] = (
    nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout, nn.BatchNorm1d, nn.BatchNorm2d,
)
_CONV = {1: nn.Conv1d, 2: nn.Conv2d}
_MAXPOOL = {1: nn.MaxPool1d, 2: nn.MaxPool2d}
_AVGPOOL = {1: nn.AvgPool1d, 2: nn.AvgPool2d}


@dataclass(frozen=True)
class CropPlan:
    """The modules below (and including) the layer and the (kernel, stride) of each window op."""

    modules: tuple[nn.Module, ...]
    windows: tuple[tuple[tuple[int, ...], tuple[int, ...]] | None, ...]
    spatial: int


def _tup(v: int | Sequence[int], n: int) -> tuple[int, ...]:
    return tuple(int(a) for a in v) if isinstance(v, (tuple, list)) else (int(v),) * n


def _no_padding(p: object, n: int) -> bool:
    return p == "valid" or (not isinstance(p, str) and all(a == 0 for a in _tup(p, n)))


def crop_plan(
    model: object,
    layer_name: str,
    layer_output_index: int | None,
    xs: tuple[Tensor, ...],
    extra: tuple,
    layer_shape: tuple[int, ...],
) -> CropPlan | None:
    """A plan when every module below ``layer_name`` of an ``nn.Sequential`` is supported.

    Supported: ``Conv1d``/``Conv2d`` (no padding, dilation 1), max/average pooling (no
    padding, dilation 1, floor mode), elementwise activations, and dropout / batch norm in eval
    mode. One input tensor ``(N, C, *spatial)``, no additional forward arguments, and a layer
    output ``(C, *spatial)`` of the same spatial rank.
    """
    if not isinstance(model, nn.Sequential) or layer_output_index is not None:
        return None
    if len(xs) != 1 or extra:
        return None
    spatial = xs[0].dim() - 2
    if spatial not in (1, 2) or len(layer_shape) != spatial + 1:
        return None
    children = list(model.named_children())
    names = [n for n, _ in children]
    if layer_name not in names:
        return None
    mods = tuple(m for _, m in children[: names.index(layer_name) + 1])
    windows: list[tuple[tuple[int, ...], tuple[int, ...]] | None] = []
    for m in mods:
        if isinstance(m, _EVAL_ONLY):
            if m.training:
                return None
            windows.append(None)
        elif isinstance(m, _ELEMENTWISE):
            windows.append(None)
        elif type(m) is _CONV[spatial]:
            if (not _no_padding(m.padding, spatial) or any(d != 1 for d in m.dilation)
                    or m.padding_mode != "zeros"):
                return None
            windows.append((_tup(m.kernel_size, spatial), _tup(m.stride, spatial)))
        elif type(m) in (_MAXPOOL[spatial], _AVGPOOL[spatial]):
            if not _no_padding(m.padding, spatial) or m.ceil_mode:
                return None
            if isinstance(m, (nn.MaxPool1d, nn.MaxPool2d)) and any(
                d != 1 for d in _tup(m.dilation, spatial)
            ):
                return None
            k = _tup(m.kernel_size, spatial)
            s = _tup(m.stride if m.stride else m.kernel_size, spatial)
            windows.append((k, s))
        else:
            return None
    if not any(w is not None for w in windows):
        return None  # a 1×1 "receptive field" chain: nothing to crop
    return CropPlan(mods, tuple(windows), spatial)


def receptive_box(plan: CropPlan, position: Sequence[int]) -> tuple[slice, ...]:
    """The input window (one slice per spatial dimension) that ``position`` depends on."""
    lo = list(position)
    hi = list(position)
    for w in reversed(plan.windows):
        if w is None:
            continue
        k, s = w
        lo = [a * st for a, st in zip(lo, s)]
        hi = [b * st + kk - 1 for b, st, kk in zip(hi, s, k)]
    return tuple(slice(a, b + 1) for a, b in zip(lo, hi))


#: rows of stacked crops per forward/backward (bounds the memory of one call)
MAX_CROP_ROWS = 1 << 16


def accumulate_cropped_grads(
    plan: CropPlan,
    points: Tensor,
    layer_shape: tuple[int, ...],
    flat: Sequence[int],
    weights: Tensor,
    totals: Tensor,
    rows: slice,
    k: int,
    m: int,
) -> None:
    """``totals[j, rows] += Σ_steps weights[:, j] · ∂y_{flat[j]}/∂x`` on each receptive field.

    ``points``: the ``k·m`` path points ``(k·m, C, *spatial)``; ``weights``: ``(k·m, K)``
    (quadrature weight × ∂F/∂y per row and neuron); ``totals``: ``(K, N, C, *spatial)``.
    Every receptive field of a valid conv chain has the same size, so the crops of all
    neurons are stacked and go through the lower layers in one forward and one backward pass
    (each neuron's block of rows gets its own cotangent).
    """
    r = points.shape[0]
    neurons = []
    for j, f in enumerate(flat):
        if not bool(weights[:, j].any()):
            continue
        idx = torch.unravel_index(torch.tensor(f), layer_shape)
        neurons.append((j, int(idx[0]), receptive_box(plan, [int(i) for i in idx[1:]])))
    last_conv = max(i for i, w in enumerate(plan.windows)
                    if w is not None and isinstance(plan.modules[i], (nn.Conv1d, nn.Conv2d)))
    per_call = max(1, MAX_CROP_ROWS // max(r, 1))
    for start in range(0, len(neurons), per_call):
        part = neurons[start:start + per_call]
        n_part = len(part)
        crops = torch.stack([points[(slice(None), slice(None)) + box] for _, _, box in part])
        xc = crops.reshape((n_part * r,) + tuple(crops.shape[2:])).requires_grad_(True)
        channels = [c for _, c, _ in part]
        with torch.enable_grad():
            h = xc.clone()  # an in-place first activation must not write into the leaf
            for mod in plan.modules[:last_conv]:
                h = _crop_forward(mod, h)
            # the last channel-mixing op computes only each neuron's own channel: a grouped
            # convolution with one group per neuron, the neurons laid out along channels
            h = h.reshape((n_part, r) + tuple(h.shape[1:])).transpose(0, 1)
            h = h.reshape((r, n_part * h.shape[2]) + tuple(h.shape[3:]))
            h = _selected_conv(plan.modules[last_conv], h, channels)  # (r, n_part, *sp)
            for mod in plan.modules[last_conv + 1:]:
                h = _per_neuron(mod, h, channels)
            if tuple(h.shape[2:]) != (1,) * plan.spatial:
                raise RuntimeError(
                    f"receptive-field crops of spatial shape {tuple(crops.shape[3:])} gave an "
                    f"output of spatial shape {tuple(h.shape[2:])}, expected one position; "
                    "please report this model"
                )
            sel = h.reshape(r, n_part)
            cot = weights[:, [j for j, _, _ in part]].to(sel.dtype)
            (g,) = torch.autograd.grad(sel, xc, grad_outputs=cot)
        g = g.reshape((n_part, k, m) + tuple(g.shape[1:])).sum(1)
        for i, (j, _, box) in enumerate(part):
            totals[(j, rows, slice(None)) + box] += g[i]


class _ValidConvInput(torch.autograd.Function):
    """A 2-D convolution (no padding, dilation 1, one group) that back-propagates to its input
    only, as ``fold(Wᵀ · g)``: on the many tiny crops here that is about 3× faster on CPU than
    the library's transposed convolution. The weight and bias get no gradient (this path only
    asks for input gradients).
    """

    @staticmethod
    def forward(ctx, x, weight, bias, stride):  # noqa: D102
        ctx.save_for_backward(weight)
        ctx.stride = stride
        ctx.in_size = tuple(x.shape[-2:])
        return torch.nn.functional.conv2d(x, weight, bias, stride)

    @staticmethod
    def backward(ctx, g):  # noqa: D102
        (w,) = ctx.saved_tensors
        co, ci, kh, kw = w.shape
        cols = w.reshape(co, ci * kh * kw).transpose(0, 1) @ g.reshape(g.shape[0], co, -1)
        gx = torch.nn.functional.fold(cols, ctx.in_size, (kh, kw), stride=ctx.stride)
        return gx, None, None, None


def _crop_forward(mod: nn.Module, h: Tensor) -> Tensor:
    if isinstance(mod, nn.Conv2d) and mod.groups == 1:
        return _ValidConvInput.apply(h, mod.weight, mod.bias, tuple(mod.stride))
    if isinstance(mod, nn.Conv1d) and mod.groups == 1:
        w = mod.weight.unsqueeze(2)  # (out, in, 1, k): a 1-D conv as a 2-D one of height 1
        out = _ValidConvInput.apply(h.unsqueeze(2), w, mod.bias, (1, mod.stride[0]))
        return out.squeeze(2)
    return mod(h)


def _selected_conv(conv: nn.Module, h: Tensor, channels: list[int]) -> Tensor:
    """Output channel ``channels[i]`` of ``conv`` on input group ``i`` of ``h``."""
    idx = torch.tensor(channels, device=h.device)
    groups = conv.groups
    n = len(channels)
    kernel = tuple(conv.weight.shape[2:])
    if groups == 1 and tuple(h.shape[2:]) == kernel:
        # the window is the whole crop: one dot product per neuron, batched as an einsum
        w = conv.weight.index_select(0, idx).reshape(n, -1)
        out = torch.einsum("rnk,nk->rn", h.reshape(h.shape[0], n, -1), w)
        if conv.bias is not None:
            out = out + conv.bias.index_select(0, idx)
        return out.reshape((h.shape[0], n) + (1,) * len(kernel))
    if groups != 1:
        # grouped conv: output channel c reads input channels of its group only
        per_out = conv.out_channels // groups
        per_in = conv.in_channels // groups
        h = h.reshape((h.shape[0], n, conv.in_channels) + tuple(h.shape[2:]))
        starts = [(c // per_out) * per_in for c in channels]
        h = torch.stack([h[:, i, s0:s0 + per_in] for i, s0 in enumerate(starts)], 1)
        h = h.reshape((h.shape[0], n * per_in) + tuple(h.shape[3:]))
    w = conv.weight.index_select(0, idx)
    b = None if conv.bias is None else conv.bias.index_select(0, idx)
    fn = torch.nn.functional.conv1d if isinstance(conv, nn.Conv1d) else torch.nn.functional.conv2d
    return fn(h, w, b, conv.stride, 0, 1, len(channels))


def _per_neuron(mod: nn.Module, h: Tensor, channels: list[int]) -> Tensor:
    """A channel-wise module applied to ``h`` whose channel ``i`` is the layer's ``channels[i]``."""
    if isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)):
        idx = torch.tensor(channels, device=h.device)
        shape = (1, -1) + (1,) * (h.dim() - 2)
        mean = mod.running_mean.index_select(0, idx).view(shape)
        var = mod.running_var.index_select(0, idx).view(shape)
        out = (h - mean) / torch.sqrt(var + mod.eps)
        if mod.affine:
            out = out * mod.weight.index_select(0, idx).view(shape) \
                + mod.bias.index_select(0, idx).view(shape)
        return out
    return mod(h)  # pooling, elementwise activations, eval dropout act per channel
