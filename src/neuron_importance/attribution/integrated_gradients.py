"""Integrated Gradients (Sundararajan, Taly & Yan, "Axiomatic Attribution for Deep Networks",
ICML 2017, arXiv:1703.01365).

    IG_i(x) = (x_i − x′_i) · ∫₀¹ ∂F/∂x_i (x′ + α (x − x′)) dα
            ≈ (x_i − x′_i) · Σ_k w_k · ∂F/∂x_i (x′ + α_k (x − x′))

with the quadrature ``(α_k, w_k)`` from :func:`neuron_importance.attribution.quadrature.quadrature`.
Completeness: ``Σ_i IG_i(x) = F(x) − F(x′)`` for ``F`` differentiable almost everywhere; the
residual of the quadrature is always computed and reported.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from ._common import (
    AttributionError,
    BaselineType,
    TargetType,
    TensorOrTuple,
    check_finite,
    chunk_plan,
    convergence_warning,
    eval_mode,
    format_additional_args,
    format_baselines,
    format_inputs,
    format_target,
    repeat_additional_args,
    run_forward,
    select_target,
    slice_args,
    sum_per_example,
    unpack,
)
from .gradient import compute_gradients
from .quadrature import quadrature

__all__ = ["IntegratedGradients"]


class IntegratedGradients:
    r"""Integrated Gradients along the straight line from the baseline to the input.

    .. math::

        \mathrm{IG}_i(x) = (x_i - x'_i)\int_0^1
            \frac{\partial F(x' + \alpha (x - x'))}{\partial x_i}\, d\alpha

    (Sundararajan, Taly & Yan, ICML 2017, arXiv:1703.01365), approximated by
    ``(x − x′) · Σ_k w_k ∂F/∂x (x′ + α_k (x − x′))`` with the quadrature rule ``method``.

    ``F`` is the model's output selected by ``target``, **as the model returns it**: the
    gradient family does no logit stripping, so pass a model that ends in logits (not softmax)
    if the logit is what you want explained.

    The call and the numbers are Captum 0.9's ``IntegratedGradients`` (same argument names,
    same evaluation points, same order of operations), with these differences:

    * the completeness residual is always computed (two extra forward passes, no backward) and
      a :class:`CompletenessWarning` is raised when it exceeds ``completeness_tol``;
    * the quadrature weights are applied in the input's dtype (Captum casts them to float32,
      which limits float64 results to about 1e-8 relative accuracy);
    * ``method="riemann_trapezoid"`` uses the trapezoid weights ``1/(n-1)`` (Captum's ``1/n``
      make its result ``(n-1)/n`` times ours and break completeness; see ``quadrature``);
    * ``internal_batch_size`` smaller than the batch splits the batch instead of being raised
      to the batch size;
    * only tensors in ``additional_forward_args`` whose first dimension equals the batch size
      are tiled (Captum tiles every tensor with a dimension);
    * a training-mode model with dropout/batch norm is run in eval mode (with a warning) and
      its mode restored.

    Args:
        model: an ``nn.Module`` (or any callable returning a tensor) called as
            ``model(*inputs, *additional_forward_args)``.
        multiply_by_inputs: ``True`` (default) returns IG ("global" attribution);
            ``False`` returns the path-averaged gradient ``Σ_k w_k ∂F/∂x(α_k)`` without the
            ``(x − x′)`` factor ("local" attribution; Ancona et al. 2018).
    """

    def __init__(
        self, model: nn.Module | Callable[..., Tensor], multiply_by_inputs: bool = True
    ) -> None:
        self.model = model
        self.forward_func = model  # Captum's attribute name
        self._multiply_by_inputs = multiply_by_inputs

    @property
    def multiplies_by_inputs(self) -> bool:
        return self._multiply_by_inputs

    def attribute(
        self,
        inputs: TensorOrTuple,
        baselines: BaselineType = None,
        target: TargetType = None,
        additional_forward_args: Any = None,
        n_steps: int = 50,
        method: str = "gausslegendre",
        internal_batch_size: int | None = None,
        return_convergence_delta: bool = False,
        completeness_tol: float | None = 0.05,
    ) -> TensorOrTuple | tuple[TensorOrTuple, Tensor]:
        """Integrated gradients of the target output w.r.t. each input.

        Args:
            inputs: a batch-first float tensor, or a tuple of them for multi-input models.
            baselines: the path's start ``x′``: ``None`` (zeros), a number, a tensor that
                broadcasts to the input (e.g. shape ``(1, ...)`` for one baseline for all
                examples, or the input's shape for one per example), or a tuple of those, one
                per input.
            target: ``None`` for models with one output per example; an int, a list of ints or
                a 1-D tensor (one per example) selecting the output column otherwise.
            additional_forward_args: extra arguments for ``model(*inputs, *args)``; not
                attributed. Tensors whose first dimension is the batch size are tiled along
                with the path points (and split with the batch when chunking); other arguments
                are passed unchanged.
            n_steps: number of quadrature points (default 50).
            method: ``"gausslegendre"`` (default), ``"riemann_left"``, ``"riemann_right"``,
                ``"riemann_middle"`` or ``"riemann_trapezoid"``; see ``quadrature``.
            internal_batch_size: at most this many rows go through the model at once. The
                ``n_steps × batch`` path points are evaluated in chunks of
                ``internal_batch_size // batch`` whole α points times the batch; when
                ``internal_batch_size`` is smaller than the batch, one α point at a time times
                blocks of ``internal_batch_size`` examples. ``None``: all points at once.
                The result does not depend on the chunking (up to rounding).
            return_convergence_delta: also return the completeness residual, like Captum.
            completeness_tol: warn (:class:`CompletenessWarning`, naming the worst example)
                when ``|δ| / max(1, |F(x) − F(x′)|)`` exceeds this; ``None`` never warns.

        Returns:
            Attributions shaped like ``inputs`` (a tuple if ``inputs`` was a tuple); with
            ``return_convergence_delta=True``, ``(attributions, delta)`` where
            ``delta = Σ_i IG_i − (F(x) − F(x′))`` has one entry per example. ``delta`` is the
            residual of the IG attributions (with the ``(x − x′)`` factor) even when
            ``multiply_by_inputs=False``.
        """
        xs, was_tuple = format_inputs(inputs)
        check_finite(xs)
        bs = format_baselines(baselines, xs)
        xs = tuple(x.detach() for x in xs)
        bs = tuple(b.detach() for b in bs)
        extra = format_additional_args(additional_forward_args)
        alphas, weights = quadrature(method, n_steps)
        if internal_batch_size is not None and (
            isinstance(internal_batch_size, bool)
            or not isinstance(internal_batch_size, int)
            or internal_batch_size < 1
        ):
            raise AttributionError(
                f"internal_batch_size must be None or a positive int, got {internal_batch_size!r}"
            )
        n = xs[0].shape[0]
        if n == 0:
            raise AttributionError("inputs have an empty batch (dimension 0 is 0)")
        block = n if internal_batch_size is None else min(n, internal_batch_size)

        with eval_mode(self.model, "IntegratedGradients", stacklevel=4):
            out_x = self._outputs(xs, extra, n, block)
            out_b = self._outputs(bs, extra, n, block)
            idx = format_target(target, out_x)
            f_x = select_target(out_x, idx)
            f_b = select_target(out_b, idx)

            totals = [torch.zeros(x.shape, dtype=x.dtype, device=x.device) for x in xs]
            for steps, rows in chunk_plan(len(alphas), n, internal_batch_size):
                k = len(steps)
                x_c = tuple(x[rows] for x in xs)
                b_c = tuple(b[rows] for b in bs)
                m = x_c[0].shape[0]
                scaled = tuple(
                    torch.cat([b + alphas[j] * (x - b) for j in steps], dim=0)
                    for x, b in zip(x_c, b_c)
                )
                args = repeat_additional_args(slice_args(extra, rows, n), k, m)
                idx_c = None if idx is None else idx[rows].repeat(k)
                grads, _ = compute_gradients(
                    self.model, scaled, args, target_idx=idx_c, use_target_idx=True
                )
                for total, g in zip(totals, grads):
                    w = torch.tensor([weights[j] for j in steps], dtype=g.dtype, device=g.device)
                    weighted = g.contiguous().view(k, -1) * w.view(k, 1)
                    total[rows] += weighted.reshape((k, m) + tuple(g.shape[1:])).sum(dim=0)

        diffs = tuple(x - b for x, b in zip(xs, bs))
        ig = tuple(t * d for t, d in zip(totals, diffs))
        attributions = ig if self._multiply_by_inputs else tuple(totals)
        change = f_x - f_b
        delta = sum_per_example(ig) - change
        if completeness_tol is not None:
            convergence_warning("IntegratedGradients", delta, change, completeness_tol)
        result = unpack(attributions, was_tuple)
        if return_convergence_delta:
            return result, delta
        return result

    def _outputs(
        self, points: tuple[Tensor, ...], extra: tuple[Any, ...], n: int, block: int
    ) -> Tensor:
        """Model outputs at ``points`` (no gradient), at most ``block`` rows per call."""
        outs = []
        with torch.no_grad():
            for start in range(0, n, block):
                rows = slice(start, min(start + block, n))
                chunk = tuple(p[rows] for p in points)
                out = run_forward(self.model, chunk, slice_args(extra, rows, n))
                m = chunk[0].shape[0]
                if out.dim() == 0 or out.shape[0] != m:
                    raise AttributionError(
                        f"the model returned shape {tuple(out.shape)} for a batch of {m} "
                        "examples; attribution needs one output row per example (batch first)"
                    )
                outs.append(out.detach())
        return outs[0] if len(outs) == 1 else torch.cat(outs, dim=0)
