"""Plain-gradient attributions: Saliency and Input × Gradient.

Both explain the model's output exactly as the model returns it (no softmax, no logit
stripping): with ``target=c`` the explained scalar is ``model(x)[i, c]`` for each example ``i``.
Pass a model that returns logits if that is what you want explained.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from ._common import (
    TargetType,
    TensorOrTuple,
    check_finite,
    eval_mode,
    format_additional_args,
    format_inputs,
    format_target,
    run_forward,
    select_target,
    unpack,
)

__all__ = ["InputXGradient", "Saliency", "compute_gradients"]


def compute_gradients(
    model: nn.Module | Callable[..., Tensor],
    inputs: tuple[Tensor, ...],
    extra: tuple[Any, ...],
    target: TargetType = None,
    target_idx: Tensor | None = None,
    use_target_idx: bool = False,
) -> tuple[tuple[Tensor, ...], Tensor | None]:
    """Gradient of the selected output of ``model(*inputs, *extra)`` w.r.t. each input.

    ``inputs`` are used as fresh autograd leaves via ``detach().requires_grad_()``: callers
    pass tensors they own (clones of user data), and no ``.grad`` is ever written anywhere
    (``torch.autograd.grad`` only). The selected outputs of all examples are summed before the
    backward pass, which gives each example its own gradient because examples do not interact
    (eval mode).

    The target is validated against the output with ``format_target`` unless
    ``use_target_idx`` is set, in which case ``target_idx`` (already validated indices, one per
    row, or ``None`` for single-output models) is used as is. Returns ``(gradients, indices)``.
    An input the output does not depend on gets a zero gradient.
    """
    leaves = tuple(x.detach().requires_grad_(True) for x in inputs)
    with torch.enable_grad():
        out = run_forward(model, leaves, extra)  # also checks one output row per example
        idx = target_idx if use_target_idx else format_target(target, out)
        selected = select_target(out, idx)
        if selected.requires_grad:
            grads = torch.autograd.grad(selected.sum(), leaves, allow_unused=True)
        else:  # the output does not depend on the inputs at all
            grads = (None,) * len(leaves)
    result = tuple(torch.zeros_like(x) if g is None else g.detach() for g, x in zip(grads, leaves))
    return result, idx


class _GradientBase:
    _name = "Gradient"

    def __init__(self, model: nn.Module | Callable[..., Tensor]) -> None:
        self.model = model
        # Captum names this ``forward_func``; keep the alias so code written for it works.
        self.forward_func = model

    def _gradients(
        self, inputs: TensorOrTuple, target: TargetType, additional_forward_args: Any
    ) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...], bool]:
        xs, was_tuple = format_inputs(inputs)
        check_finite(xs)
        extra = format_additional_args(additional_forward_args)
        with eval_mode(self.model, self._name, stacklevel=5):
            grads, _ = compute_gradients(
                self.model, tuple(x.detach().clone() for x in xs), extra, target
            )
        return grads, xs, was_tuple


class Saliency(_GradientBase):
    r"""Saliency maps (Simonyan, Vedaldi & Zisserman 2014): ``|∂F/∂x_i|`` at the input.

    ``F`` is the model output selected by ``target``, taken as the model returns it (no logit
    stripping). With ``abs=False`` the signed gradient is returned. The call mirrors
    ``captum.attr.Saliency``.
    """

    _name = "Saliency"

    def attribute(
        self,
        inputs: TensorOrTuple,
        target: TargetType = None,
        abs: bool = True,  # Captum's argument name (shadows the builtin here)
        additional_forward_args: Any = None,
    ) -> TensorOrTuple:
        """Gradient (absolute value by default) of the target output w.r.t. each input.

        Args:
            inputs: a batch-first float tensor, or a tuple of them for multi-input models.
            target: ``None`` for models with one output per example; an int, a list of ints or
                a 1-D tensor (one per example) selecting the output column otherwise.
            abs: return ``|gradient|`` (Captum's default) instead of the signed gradient.
            additional_forward_args: extra arguments for ``model(*inputs, *args)``; not
                attributed.

        Returns:
            Tensors shaped like ``inputs`` (a tuple if ``inputs`` was a tuple).
        """
        grads, _, was_tuple = self._gradients(inputs, target, additional_forward_args)
        if abs:
            grads = tuple(torch.abs(g) for g in grads)
        return unpack(grads, was_tuple)


class InputXGradient(_GradientBase):
    r"""Input × Gradient (Shrikumar et al. 2016): ``x_i · ∂F/∂x_i``.

    ``F`` is the model output selected by ``target``, taken as the model returns it (no logit
    stripping). Equals Integrated Gradients with a zero baseline when ``F`` is linear. The call
    mirrors ``captum.attr.InputXGradient``.
    """

    _name = "InputXGradient"

    def attribute(
        self,
        inputs: TensorOrTuple,
        target: TargetType = None,
        additional_forward_args: Any = None,
    ) -> TensorOrTuple:
        """Input times the gradient of the target output w.r.t. it.

        Args:
            inputs: a batch-first float tensor, or a tuple of them for multi-input models.
            target: ``None`` for models with one output per example; an int, a list of ints or
                a 1-D tensor (one per example) selecting the output column otherwise.
            additional_forward_args: extra arguments for ``model(*inputs, *args)``; not
                attributed.

        Returns:
            Tensors shaped like ``inputs`` (a tuple if ``inputs`` was a tuple).
        """
        grads, xs, was_tuple = self._gradients(inputs, target, additional_forward_args)
        return unpack(tuple(x.detach() * g for x, g in zip(xs, grads)), was_tuple)
