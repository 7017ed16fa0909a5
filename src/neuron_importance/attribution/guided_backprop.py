"""Guided Backpropagation (Springenberg et al. 2015, "Striving for Simplicity").

The gradient of the target w.r.t. the input, except that at every ReLU only positive
gradient signals are passed back: ``R_in = 1[x > 0] · max(R_out, 0)``. Every ReLU is
intercepted at the operation level (``nn.ReLU``, ``F.relu``, ``torch.relu``, ``x.relu()``,
reused modules alike), unlike module-hook implementations that miss the functional ones.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from ..engine.ops import op_name
from ._common import (
    AttributionError,
    TargetType,
    TensorOrTuple,
    unpack,
)
from .gradient import _GradientBase


class _GuidedRelu(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, inplace: bool) -> Tensor:  # type: ignore[override]
        if inplace:
            # Keep in-place semantics: a model may call ``h.relu_()`` and use ``h`` afterwards.
            ctx.mark_dirty(x)
            y = x.clamp_(min=0)
        else:
            y = x.clamp(min=0)
        # The mask, not y: y may be changed in place later (e.g. a view of a tensor whose other
        # part gets its own in-place ReLU). y > 0 exactly where x > 0.
        ctx.save_for_backward(y > 0)
        return y

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        (mask,) = ctx.saved_tensors
        return grad.clamp(min=0) * mask.to(grad.dtype), None


def _relu_input(args: tuple, kwargs: dict) -> Any:
    if args:
        return args[0]
    return kwargs.get("input", kwargs.get("self"))


def _is_inplace(func: Any, args: tuple, kwargs: dict) -> bool:
    raw = getattr(func, "__name__", "")
    if raw.endswith("_") and not raw.startswith("_"):  # torch.relu_, Tensor.relu_
        return True
    if len(args) > 1:  # F.relu(x, True)
        return bool(args[1])
    return bool(kwargs.get("inplace", False))


class _GuidedReluMode(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        x = _relu_input(args, kwargs)
        if op_name(func) == "relu" and isinstance(x, Tensor):
            inplace = _is_inplace(func, args, kwargs)
            if inplace and x.is_leaf and x.requires_grad:
                inplace = False  # autograd forbids mutating the leaf we differentiate by
            return _GuidedRelu.apply(x, inplace)
        return func(*args, **kwargs)


class GuidedBackprop(_GradientBase):
    """Guided backpropagation attributions, shaped like the inputs (Captum's signature)."""

    _name = "GuidedBackprop"

    def __init__(self, model: nn.Module) -> None:
        if isinstance(model, torch.jit.ScriptModule):
            raise AttributionError(
                "GuidedBackprop needs a Python model: TorchScript runs outside Python, so its "
                "ReLUs cannot be intercepted and the result would silently be the plain gradient"
            )
        super().__init__(model)

    def attribute(
        self,
        inputs: TensorOrTuple,
        target: TargetType = None,
        additional_forward_args: Any = None,
    ) -> TensorOrTuple:
        with _GuidedReluMode():
            grads, _, was_tuple = self._gradients(inputs, target, additional_forward_args)
        return unpack(grads, was_tuple)
