"""Argument handling shared by every attribution method.

The conventions are Captum's, so users can switch without rereading docs:

* ``inputs`` is a tensor or a tuple of tensors, batch first;
* ``baselines`` is ``None`` (zeros), a number, a tensor broadcastable to the input,
  or a tuple of those (one per input);
* ``target`` is ``None`` (single-output models), an ``int``, a list or a 1-D tensor of ints
  (one per example);
* ``additional_forward_args`` are passed to ``model(*inputs, *additional_forward_args)``.

Every check here fails with a message that names the argument, its position and shape,
because a wrong shape found three layers deep in the model is much harder to read.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Sequence
from typing import Any, Union

import numpy as np
import torch
from torch import Tensor, nn

TensorOrTuple = Union[Tensor, tuple[Tensor, ...]]  # noqa: UP007 (runtime alias, py3.10)
BaselineType = Union[None, int, float, Tensor, tuple[Union[int, float, Tensor], ...]]  # noqa: UP007
TargetType = Union[None, int, Sequence[int], Tensor]  # noqa: UP007


class AttributionError(ValueError):
    """Raised for inputs, baselines, targets or models that an attribution method cannot use."""


def format_inputs(
    inputs: TensorOrTuple, name: str = "inputs", require_float: bool = True
) -> tuple[tuple[Tensor, ...], bool]:
    """Return ``(tuple_of_inputs, was_tuple)`` for a tensor or a tuple/list of batch-first tensors.

    Attribution methods need floating-point inputs (``require_float``); activations and
    ablations do not (token ids, one-hot indices are fine there).
    """
    was_tuple = isinstance(inputs, (tuple, list))
    items = tuple(inputs) if was_tuple else (inputs,)
    if len(items) == 0:
        raise AttributionError(f"{name} is an empty tuple")
    for i, t in enumerate(items):
        if not isinstance(t, Tensor):
            raise AttributionError(f"{name}[{i}] must be a torch.Tensor, got {type(t).__name__}")
        if require_float and not t.is_floating_point():
            raise AttributionError(
                f"{name}[{i}] has dtype {t.dtype}; attributions need a floating-point input "
                "(convert with .float() or .double())"
            )
        if t.dim() == 0:
            raise AttributionError(f"{name}[{i}] is a scalar; inputs must be batch-first tensors")
    n = items[0].shape[0]
    if n == 0:
        raise AttributionError(f"{name}[0] has an empty batch (0 examples)")
    for i, t in enumerate(items[1:], start=1):
        if t.shape[0] != n:
            raise AttributionError(
                f"{name}[{i}] has batch size {t.shape[0]} but {name}[0] has {n}; "
                "all inputs must share the batch dimension"
            )
    return items, was_tuple


def check_finite(tensors: tuple[Tensor, ...], name: str = "inputs") -> None:
    """Raise if any tensor holds NaN or inf, naming the tensor and the first bad example."""
    for i, t in enumerate(tensors):
        bad = ~torch.isfinite(t)
        if bool(bad.any()):
            flat = bad.reshape(bad.shape[0], -1).any(dim=1) if t.dim() > 0 else bad
            example = int(torch.nonzero(flat)[0, 0]) if t.dim() > 0 else 0
            kind = "NaN" if bool(torch.isnan(t).any()) else "inf"
            raise AttributionError(
                f"{name}[{i}] contains {kind} (first at example {example}); attributions of "
                "non-finite values are meaningless"
            )


def format_baselines(
    baselines: BaselineType, inputs: tuple[Tensor, ...]
) -> tuple[Tensor, ...]:
    """Broadcast baselines to the inputs' shapes (zeros when ``None``)."""
    if baselines is None:
        return tuple(torch.zeros_like(x) for x in inputs)
    items = tuple(baselines) if isinstance(baselines, (tuple, list)) else (baselines,)
    if len(items) != len(inputs):
        raise AttributionError(
            f"got {len(items)} baselines for {len(inputs)} inputs; give one baseline per input"
        )
    out = []
    for i, (b, x) in enumerate(zip(items, inputs)):
        if isinstance(b, (int, float)):
            out.append(torch.full_like(x, float(b)))
            continue
        if not isinstance(b, Tensor):
            raise AttributionError(
                f"baselines[{i}] must be a number or a tensor, got {type(b).__name__}"
            )
        try:
            bb = torch.broadcast_to(b.to(device=x.device, dtype=x.dtype), x.shape)
        except RuntimeError:
            raise AttributionError(
                f"baselines[{i}] of shape {tuple(b.shape)} does not broadcast to inputs[{i}] "
                f"of shape {tuple(x.shape)}"
            ) from None
        out.append(bb)
    check_finite(tuple(out), "baselines")
    return tuple(out)


def format_additional_args(additional_forward_args: Any) -> tuple[Any, ...]:
    if additional_forward_args is None:
        return ()
    if isinstance(additional_forward_args, tuple):
        return additional_forward_args
    return (additional_forward_args,)


def repeat_additional_args(args: tuple[Any, ...], n_repeat: int, batch: int) -> tuple[Any, ...]:
    """Tile batch-first tensor arguments ``n_repeat`` times along dim 0 (others untouched)."""
    if n_repeat == 1:
        return args
    out = []
    for a in args:
        if isinstance(a, Tensor) and a.dim() > 0 and a.shape[0] == batch:
            out.append(a.repeat(n_repeat, *([1] * (a.dim() - 1))))
        else:
            out.append(a)
    return tuple(out)


def call_model(model: nn.Module, inputs: tuple[Tensor, ...], extra: tuple[Any, ...]) -> Any:
    """``model(*inputs, *extra)``, turning a shape failure into an error that shows the inputs."""
    try:
        return model(*inputs, *extra)
    except (RuntimeError, ValueError, IndexError, TypeError) as err:
        if isinstance(err, AttributionError) or type(err).__module__.startswith(
            "neuron_importance"
        ):
            raise
        shapes = ", ".join(str(tuple(x.shape)) for x in inputs)
        raise AttributionError(
            f"the model rejected inputs of shape {shapes}: {type(err).__name__}: {err}"
        ) from err


def run_forward(model: nn.Module, inputs: tuple[Tensor, ...], extra: tuple[Any, ...]) -> Tensor:
    """Call the model (see :func:`call_model`) and check it returned one batch-first tensor."""
    out = call_model(model, inputs, extra)
    if isinstance(out, (tuple, list)):
        raise AttributionError(
            f"the model returned a {type(out).__name__} of {len(out)} items; attribution needs a "
            "single output tensor (wrap the model to select one)"
        )
    if not isinstance(out, Tensor):
        raise AttributionError(f"the model returned {type(out).__name__}, not a tensor")
    n = inputs[0].shape[0]
    if out.dim() == 0 or out.shape[0] != n:
        raise AttributionError(
            f"the model returned shape {tuple(out.shape)} for a batch of {n} examples; the "
            "output must be batch-first with one row per example"
        )
    return out


def format_target(target: TargetType, output: Tensor) -> Tensor | None:
    """Validate ``target`` against the model output and return per-example indices.

    Returns ``None`` when the output has one value per example.
    """
    n = output.shape[0]
    per_example = output.reshape(n, -1).shape[1] if output.dim() > 0 else 1
    if target is None:
        if per_example != 1:
            raise AttributionError(
                f"the model output has shape {tuple(output.shape)} ({per_example} values per "
                "example); pass target=<class index> to say which one to explain"
            )
        return None
    if isinstance(target, bool):
        raise AttributionError("target must be an int, not a bool")
    if isinstance(target, (int, np.integer)):
        idx = torch.full((n,), int(target), dtype=torch.long, device=output.device)
    elif isinstance(target, Tensor):
        if target.dim() == 0:
            idx = torch.full((n,), int(target), dtype=torch.long, device=output.device)
        else:
            idx = target.to(device=output.device, dtype=torch.long).reshape(-1)
    elif isinstance(target, Sequence) and all(
        isinstance(t, (int, np.integer)) and not isinstance(t, bool) for t in target
    ):
        idx = torch.tensor([int(t) for t in target], dtype=torch.long, device=output.device)
    else:
        raise AttributionError(
            "target must be None, an int, a list of ints or a tensor of ints; tuple targets "
            f"for multi-dimensional outputs are not supported (got {target!r})"
        )
    if idx.numel() != n:
        raise AttributionError(f"target has {idx.numel()} entries for a batch of {n} examples")
    if output.dim() != 2:
        raise AttributionError(
            f"an integer target needs a (batch, classes) output; the model returned "
            f"shape {tuple(output.shape)}"
        )
    c = output.shape[1]
    bad = (idx < 0) | (idx >= c)
    if bool(bad.any()):
        j = int(torch.nonzero(bad)[0, 0])
        raise AttributionError(
            f"target {int(idx[j])} for example {j} is out of range for an output with {c} classes"
        )
    return idx


def select_target(output: Tensor, idx: Tensor | None) -> Tensor:
    """Pick one value per example: ``output[i, idx[i]]`` (or the single output)."""
    n = output.shape[0]
    if idx is None:
        return output.reshape(n)
    return output.gather(1, idx.view(n, 1)).view(n)


_STOCHASTIC = (
    nn.modules.dropout._DropoutNd,
    nn.modules.batchnorm._BatchNorm,
    nn.modules.instancenorm._InstanceNorm,
)


@contextlib.contextmanager
def eval_mode(model: nn.Module, method: str, stacklevel: int = 4) -> Iterator[None]:
    """Run in eval mode, warning once when a training-mode model had dropout or batch norm.

    Dropout draws different masks for the input and the reference and training-mode batch
    norm mixes examples, so neither has a meaning for attribution; the model's own mode is
    restored afterwards.
    """
    if not isinstance(model, nn.Module):  # a plain forward function: nothing to switch
        yield
        return
    modes = {m: m.training for m in model.modules()}
    offending = [
        name
        for name, m in model.named_modules()
        if m.training and isinstance(m, _STOCHASTIC)
    ]
    if offending:
        warnings.warn(
            f"{method}: the model is in training mode with {', '.join(offending[:3])}"
            f"{' and others' if len(offending) > 3 else ''} (dropout/batch norm); switched to "
            "eval mode for attribution and restored afterwards",
            stacklevel=stacklevel,
        )
        model.eval()
    try:
        yield
    finally:
        for m, training in modes.items():
            m.training = training


def convergence_warning(
    method: str, delta: Tensor, scale: Tensor, tol: float
) -> None:
    """Warn, naming the worst example, when the completeness error exceeds ``tol``.

    The error is judged relative to ``max(1, |f(x) - f(x')|)`` so that large logits do not
    trip the check on rounding alone.
    """
    rel = delta.detach().abs() / scale.detach().abs().clamp(min=1.0)
    if rel.numel() == 0:
        return
    worst = int(torch.argmax(rel))
    if float(rel[worst]) > tol:
        warnings.warn(
            f"{method}: attributions do not sum to f(x) - f(baseline): worst example {worst} "
            f"is off by {float(delta[worst]):.3g} (relative {float(rel[worst]):.3g} > tol {tol:g})",
            CompletenessWarning,
            stacklevel=3,
        )


class CompletenessWarning(UserWarning):
    """Attributions fail summation-to-delta by more than the tolerance."""


def sum_per_example(tensors: tuple[Tensor, ...]) -> Tensor:
    return sum(t.reshape(t.shape[0], -1).sum(dim=1) for t in tensors)


def unpack(result: tuple[Tensor, ...], was_tuple: bool) -> TensorOrTuple:
    return result if was_tuple else result[0]


def chunk_plan(
    n_points: int, n_examples: int, internal_batch_size: int | None
) -> list[tuple[range, slice]]:
    """Split the ``n_points × n_examples`` evaluations into ``(alpha indices, example slice)``.

    * ``None``: one chunk with everything.
    * ``internal_batch_size >= n_examples``: chunks of ``internal_batch_size // n_examples``
      whole α points times the whole batch (Captum's scheme).
    * ``internal_batch_size < n_examples``: one α point at a time, times a block of
      ``internal_batch_size`` examples (Captum instead warns and uses ``n_examples``).

    Either way no forward/backward pass sees more than ``internal_batch_size`` rows.
    """
    everything = slice(0, n_examples)
    if internal_batch_size is None:
        return [(range(n_points), everything)]
    if internal_batch_size >= n_examples:
        per = internal_batch_size // n_examples
        return [(range(s, min(s + per, n_points)), everything) for s in range(0, n_points, per)]
    return [
        (range(k, k + 1), slice(e, min(e + internal_batch_size, n_examples)))
        for k in range(n_points)
        for e in range(0, n_examples, internal_batch_size)
    ]


def slice_args(args: tuple[Any, ...], rows: slice, batch: int) -> tuple[Any, ...]:
    """Take ``rows`` of every batch-first tensor argument (same rule as repeat_additional_args)."""
    if rows == slice(0, batch):
        return args
    return tuple(
        a[rows] if isinstance(a, Tensor) and a.dim() > 0 and a.shape[0] == batch else a
        for a in args
    )
