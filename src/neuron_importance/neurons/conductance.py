r"""Conductance of hidden neurons: total conductance of a whole layer, and its per-input split.

For a hidden unit ``y`` of a layer, the input ``x``, the baseline ``x′``, the straight path
``x(α) = x′ + α (x − x′)`` and ``F`` the model output selected by ``target`` (as the model
returns it; pass logits if logits are what you want explained):

.. math::

    \mathrm{Cond}^y_i(x) = (x_i - x'_i) \int_0^1 \frac{\partial F}{\partial y}(x(\alpha))\,
        \frac{\partial y}{\partial x_i}(x(\alpha))\, d\alpha
    \qquad
    \mathrm{TC}^y(x) = \sum_i \mathrm{Cond}^y_i(x) = \int_0^1 \frac{\partial F}{\partial y}(x(\alpha))
        \, d\,y(x(\alpha))

(Dhamdhere, Sundararajan & Yan, "How Important Is a Neuron?", ICLR 2019, arXiv:1805.12233).
By the chain rule the total conductance is path Integrated Gradients on the hidden layer along
the *curved* path the layer output traces while the input moves on the straight line
(Shrikumar, Su & Kundaje, "Computationally Efficient Measures of Internal Neuron Importance",
arXiv:1807.09946, 2018, who call it "Neuron Integrated Gradients"). It is **not** IG along the
straight line from ``y(x′)`` to ``y(x)`` (Captum's ``LayerIntegratedGradients``); the two agree
only where ``y(x(α))`` is affine in α, e.g. for a first linear layer's pre-activations.

Over a layer that cuts the network, ``Σ_y TC^y = F(x) − F(x′)`` (layer completeness).

Discretisations (``m = n_steps``; ``G_k = ∂F/∂y`` and ``Y_k = y`` at ``x(α_k)``):

``"left"``
    ``TC ≈ Σ_{k<m} G_k · (Y_{k+1} − Y_k)`` on ``α_k = k/m``, ``k = 0 … m``. First order. This is
    what Captum's ``LayerConductance(method="riemann_trapezoid", n_steps=m)`` computes.
``"trapezoid"`` (the default of :class:`TotalConductance`)
    ``TC ≈ Σ_{k<m} ½ (G_k + G_{k+1}) · (Y_{k+1} − Y_k)`` on the same ``m + 1`` points: the
    trapezoid rule for the Stieltjes integral ``∫ G dY``, second order on smooth paths (error
    ÷4 per doubling of ``m``), at the cost of the left rule.
``"gausslegendre"``
    ``TC ≈ Σ_k w_k G_k · Ẏ_k`` at the ``m`` Gauss–Legendre nodes, where ``Ẏ_k = dy(x(α))/dα``
    is computed *exactly* by forward-mode AD (one dual-number forward pass carrying the
    tangent ``x − x′``; models whose operations lack forward-mode formulas fall back to the
    double-backward identity ``Jv = ∂/∂u ⟨Jᵀu, v⟩``). This is Gauss–Legendre quadrature of the
    exact integrand ``G(α)·Ẏ(α)``, hence convergent to the true integral, with exponential
    convergence on analytic (tanh/softplus/sigmoid) nets. On ReLU nets every rule is first
    order (kinks along the path), and the difference rules are the more robust ones there.

The grid ``α_k = k/m`` is Captum's ``torch.linspace(0, 1, m + 1)`` (default dtype), so the left
rule reproduces Captum bit for bit in the evaluation points. The left and trapezoid rules need
``α_0 = 0`` and ``α_m = 1`` for the differences to telescope to ``F(x) − F(x′)``; Captum's default
Gauss–Legendre ``LayerConductance`` misses both end points and is first order at best.

Cost. One batched forward over all path points with the layer output captured and replaced by
a fresh autograd leaf (so the backward pass stops at the layer), then one backward pass of
``F`` w.r.t. that leaf gives ``G`` for every neuron at once: the cost of IG with ``m`` steps,
independent of the number of neurons. ``internal_batch_size`` chunks the ``points × examples``
rows; for the difference rules consecutive chunks share their boundary point (its ``Y`` and
``G`` are carried over, detached, instead of recomputed), so the result does not depend on the
chunking.

Per-input conductance (:class:`NeuronConductance`) needs one vector–Jacobian product
``∂y/∂x`` per selected neuron; all neurons share one forward pass per chunk.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any, Union

import torch
import torch.autograd.forward_ad as fwAD
from torch import Tensor, nn

from ..attribution._common import (
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
    unpack,
)

# The (α points × examples) chunking and the per-chunk slicing of extra arguments are the ones
# Integrated Gradients uses (same rows per pass, same tiling rule).
from ..attribution.quadrature import quadrature
from ._layers import capture_layer, resolve_layer
from ._receptive import accumulate_cropped_grads, crop_plan

__all__ = ["METHODS", "LayersTotalConductance", "NeuronConductance", "TotalConductance"]

METHODS: tuple[str, ...] = ("left", "trapezoid", "gausslegendre")

NeuronSelector = Union[int, tuple[int, ...], Sequence[Union[int, tuple[int, ...]]], slice]  # noqa: UP007


# --------------------------------------------------------------------------------------------
# grids and argument checks


def _check_method(method: str) -> None:
    if method not in METHODS:
        hint = ""
        if method == "riemann_trapezoid":
            hint = (
                "; Captum's LayerConductance(method='riemann_trapezoid', n_steps=m) is our "
                "method='left' with the same n_steps"
            )
        raise AttributionError(
            f"unknown conductance method {method!r}; valid methods are "
            f"{', '.join(repr(m) for m in METHODS)}{hint}"
        )


def _check_steps(n_steps: Any) -> int:
    if isinstance(n_steps, bool) or not isinstance(n_steps, numbers.Integral) or n_steps < 1:
        raise AttributionError(f"n_steps must be a positive integer, got {n_steps!r}")
    return int(n_steps)


def _check_batch_size(internal_batch_size: Any) -> None:
    if internal_batch_size is not None and (
        isinstance(internal_batch_size, bool)
        or not isinstance(internal_batch_size, int)
        or internal_batch_size < 1
    ):
        raise AttributionError(
            f"internal_batch_size must be None or a positive int, got {internal_batch_size!r}"
        )


def _uniform_points(n_steps: int) -> list[float]:
    """``linspace(0, 1, n_steps + 1)`` exactly as Captum builds it (``α_0 = 0``, ``α_m = 1``)."""
    return quadrature("riemann_trapezoid", n_steps + 1)[0]


def total_conductance_points(method: str, n_steps: int) -> tuple[list[float], list[float] | None]:
    """Path points of :class:`TotalConductance`: ``(alphas, weights)``.

    ``weights`` is ``None`` for the difference rules (``left``/``trapezoid``: ``m + 1`` uniform
    points, the weights are implied by the differences) and the Gauss–Legendre weights (summing
    to 1) for ``gausslegendre`` (``m`` nodes).
    """
    _check_method(method)
    m = _check_steps(n_steps)
    if method == "gausslegendre":
        return quadrature("gausslegendre", m)
    return _uniform_points(m), None


def neuron_conductance_rule(method: str, n_steps: int) -> tuple[list[float], list[float]]:
    """Quadrature ``(alphas, weights)`` of :class:`NeuronConductance` for ``method``.

    * ``left``: ``α_k = k/m`` for ``k = 0 … m−1``, weights ``1/m``;
    * ``trapezoid``: ``α_k = k/m`` for ``k = 0 … m``, weights ``1/m`` halved at both ends;
    * ``gausslegendre``: the ``m`` Gauss–Legendre nodes and weights on [0, 1].

    The points are those :class:`TotalConductance` uses with the same method and ``n_steps``.
    """
    _check_method(method)
    m = _check_steps(n_steps)
    if method == "gausslegendre":
        return quadrature("gausslegendre", m)
    alphas, weights = quadrature("riemann_trapezoid", m + 1)
    if method == "left":
        return alphas[:-1], [1 / m] * m
    return alphas, weights


# --------------------------------------------------------------------------------------------
# shared setup


@dataclass
class _Setup:
    xs: tuple[Tensor, ...]
    bs: tuple[Tensor, ...]
    was_tuple: bool
    extra: tuple[Any, ...]
    idx: Tensor | None
    f_x: Tensor
    f_b: Tensor
    layer_shape: tuple[int, ...]
    n: int


class _LayerPathMethod:
    _name = "Conductance"

    def __init__(
        self,
        model: nn.Module | Callable[..., Tensor],
        layer: nn.Module | str,
        layer_output_index: int | None = None,
    ) -> None:
        self.model = model
        self.forward_func = model  # Captum's attribute name
        self.layer_name, self.layer = resolve_layer(model, layer)
        if layer_output_index is not None and (
            isinstance(layer_output_index, bool) or not isinstance(layer_output_index, int)
        ):
            raise AttributionError(
                f"layer_output_index must be None or an int, got {layer_output_index!r}"
            )
        self.layer_output_index = layer_output_index

    # -- helpers ---------------------------------------------------------------------------

    def _setup(
        self,
        inputs: TensorOrTuple,
        baselines: BaselineType,
        target: TargetType,
        additional_forward_args: Any,
        internal_batch_size: int | None,
    ) -> _Setup:
        xs, was_tuple = format_inputs(inputs)
        check_finite(xs)
        bs = format_baselines(baselines, xs)
        xs = tuple(x.detach() for x in xs)
        bs = tuple(b.detach() for b in bs)
        extra = format_additional_args(additional_forward_args)
        _check_batch_size(internal_batch_size)
        n = xs[0].shape[0]
        block = n if internal_batch_size is None else min(n, internal_batch_size)
        out_x, layer_shape = self._endpoint(xs, extra, n, block)
        out_b, _ = self._endpoint(bs, extra, n, block)
        idx = format_target(target, out_x)
        return _Setup(
            xs=xs,
            bs=bs,
            was_tuple=was_tuple,
            extra=extra,
            idx=idx,
            f_x=select_target(out_x, idx),
            f_b=select_target(out_b, idx),
            layer_shape=layer_shape,
            n=n,
        )

    def _endpoint(
        self, points: tuple[Tensor, ...], extra: tuple[Any, ...], n: int, block: int
    ) -> tuple[Tensor, Any]:
        """Model output at ``points`` (no gradient) and the layer's per-example output shape
        (:meth:`_endpoint_shape`: one tuple, or one per layer for several layers)."""
        outs = []
        shape: Any = ()
        with torch.no_grad():
            for start in range(0, n, block):
                rows = slice(start, min(start + block, n))
                with ExitStack() as stack:
                    caps = self._captures(stack)
                    out = run_forward(self.model, tuple(p[rows] for p in points),
                                      slice_args(extra, rows, n))
                shape = self._endpoint_shape(caps, rows.stop - rows.start)
                outs.append(out.detach())
        return (outs[0] if len(outs) == 1 else torch.cat(outs, dim=0)), shape

    def _captures(self, stack: ExitStack) -> list[Any]:
        """The layer captures of one forward pass, entered on ``stack``."""
        return [stack.enter_context(
            capture_layer(self.layer, self.layer_name, self.layer_output_index))]

    def _endpoint_shape(self, caps: list[Any], rows: int) -> Any:
        """The per-example output shape the endpoint pass recorded (checked)."""
        return self._check_rows(caps[0].single(), rows)

    def _check_rows(
        self, y: Tensor, rows: int, shape: tuple[int, ...] | None = None
    ) -> tuple[int, ...]:
        if y.dim() == 0 or y.shape[0] != rows:
            raise AttributionError(
                f"layer {self.layer_name!r} returned shape {tuple(y.shape)} for a batch of {rows} "
                "rows; conductance needs a batch-first layer output (one row per example)"
            )
        if shape is not None and tuple(y.shape[1:]) != shape:
            raise AttributionError(
                f"layer {self.layer_name!r} returned per-example shape {tuple(y.shape[1:])} on the "
                f"path but {shape} at the input; its output shape must not depend on the batch"
            )
        return tuple(y.shape[1:])

    def _path_points(
        self, s: _Setup, alphas: list[float], steps: range, rows: slice
    ) -> tuple[tuple[Tensor, ...], tuple[Any, ...], Tensor | None, int]:
        x_c = tuple(x[rows] for x in s.xs)
        b_c = tuple(b[rows] for b in s.bs)
        m = x_c[0].shape[0]
        k = len(steps)
        points = tuple(
            torch.cat([b + alphas[j] * (x - b) for j in steps], dim=0) for x, b in zip(x_c, b_c)
        )
        args = repeat_additional_args(slice_args(s.extra, rows, s.n), k, m)
        idx_c = None if s.idx is None else s.idx[rows].repeat(k)
        return points, args, idx_c, m

    def _forward_cut(
        self, points: tuple[Tensor, ...], args: tuple[Any, ...], forward_ad: bool = False
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Forward with the layer output ``t`` cut off: downstream sees a copy of a fresh leaf ``z``.

        Returns ``(t, z, out)``. ``t`` keeps its graph to ``points`` (if they require grad; its
        tangent if they are dual); ``F``'s graph starts at ``z``, so ``∂F/∂z = ∂F/∂y``. The copy
        lets downstream in-place operations (``ReLU(inplace=True)``) leave ``z`` intact.
        """
        cut: list[tuple[Tensor, Tensor]] = []

        def replace(t: Tensor) -> Tensor:
            primal = fwAD.unpack_dual(t).primal if forward_ad else t
            z = primal.detach().requires_grad_(True)
            cut.append((t, z))
            return z.clone()

        with capture_layer(
            self.layer, self.layer_name, self.layer_output_index, replace=replace
        ) as cap:
            out = run_forward(self.model, points, args)
        cap.single()  # raises unless the layer ran exactly once
        t, z = cut[-1]
        return t, z, out

    @staticmethod
    def _grad_wrt(f: Tensor, z: Tensor, retain_graph: bool = False) -> Tensor:
        if not f.requires_grad:
            return torch.zeros_like(z)
        (g,) = torch.autograd.grad(f.sum(), z, retain_graph=retain_graph, allow_unused=True)
        return torch.zeros_like(z) if g is None else g


# --------------------------------------------------------------------------------------------
# total conductance


def _difference_step(
    y: Tensor,
    g: Tensor,
    k: int,
    m: int,
    carry: dict[Any, tuple[Tensor, Tensor]],
    key: Any,
    method: str,
) -> Tensor | None:
    """``Σ_j G_j · (Y_{j+1} − Y_j)`` (left) or with ``½ (G_j + G_{j+1})`` (trapezoid) over one
    chunk of ``k`` path points × ``m`` examples, per example and neuron, or ``None`` when the
    chunk holds a single point. ``carry[key]`` keeps the chunk's last point (detached) for the
    next chunk of the same examples, so the differences span chunk boundaries.
    """
    y = y.detach().reshape(k, m, -1)
    g = g.reshape(k, m, -1)
    if key in carry:
        y_prev, g_prev = carry[key]
        y = torch.cat([y_prev, y], dim=0)
        g = torch.cat([g_prev, g], dim=0)
    carry[key] = (y[-1:], g[-1:])
    if y.shape[0] < 2:
        return None
    g_step = g[:-1] if method == "left" else 0.5 * (g[:-1] + g[1:])
    return (g_step * (y[1:] - y[:-1])).sum(dim=0)


class TotalConductance(_LayerPathMethod):
    r"""Total conductance of every neuron of a layer ("Neuron Integrated Gradients").

    .. math::

        \mathrm{TC}^y(x) = \int_0^1 \frac{\partial F}{\partial y}(x(\alpha))\,
            \frac{d\, y(x(\alpha))}{d\alpha}\, d\alpha,
        \qquad x(\alpha) = x' + \alpha (x - x')

    Dhamdhere, Sundararajan & Yan, "How Important Is a Neuron?" (ICLR 2019,
    arXiv:1805.12233); Shrikumar, Su & Kundaje, "Computationally Efficient Measures of Internal
    Neuron Importance" (arXiv:1807.09946, 2018). Path IG on the hidden layer along the path the
    straight input path induces there, for all neurons at once with ordinary autograd.

    ``method="left"`` is Captum's ``LayerConductance(method="riemann_trapezoid")`` with the same
    ``n_steps``; ``"trapezoid"`` (default) is second order; ``"gausslegendre"`` uses exact
    path derivatives (forward-mode AD) at Gauss–Legendre nodes and converges exponentially on
    smooth nets. See the module docstring for the formulas.

    Args:
        model: an ``nn.Module`` called as ``model(*inputs, *additional_forward_args)``,
            returning one row per example.
        layer: a module of ``model`` or its dotted name (``"features.3"``). It must run exactly
            once per forward pass and return a batch-first tensor.
        layer_output_index: for layers returning a tuple (LSTM, attention blocks), the index of
            the tensor whose neurons to score; required for them, refused for tensor outputs.
    """

    _name = "TotalConductance"

    def attribute(
        self,
        inputs: TensorOrTuple,
        baselines: BaselineType = None,
        target: TargetType = None,
        additional_forward_args: Any = None,
        n_steps: int = 50,
        method: str = "trapezoid",
        internal_batch_size: int | None = None,
        return_convergence_delta: bool = False,
        completeness_tol: float | None = 0.05,
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Total conductance of every neuron of the layer, for each example.

        Args:
            inputs: a batch-first float tensor, or a tuple of them for multi-input models.
            baselines: ``None`` (zeros), a number, a tensor broadcastable to the input, or a
                tuple of those (one per input).
            target: ``None`` for single-output models; an int, a list or a 1-D tensor of ints.
            additional_forward_args: extra arguments for the model (not attributed); tensors
                whose first dimension is the batch size are tiled along with the path points.
            n_steps: ``m``: intervals of the uniform grid (``m + 1`` model evaluations) for
                ``left``/``trapezoid``, Gauss–Legendre nodes for ``gausslegendre``.
            method: ``"trapezoid"`` (default), ``"left"`` or ``"gausslegendre"``.
            internal_batch_size: at most this many rows per forward/backward pass (``None``:
                all at once). The result does not depend on it (up to rounding).
            return_convergence_delta: also return the completeness residual.
            completeness_tol: warn (``CompletenessWarning``, naming the worst example) when
                ``|δ| / max(1, |F(x) − F(x′)|)`` exceeds this; ``None`` never warns. Layer
                completeness holds only for layers that cut the network (no skip connection
                around them); for other layers δ measures the part of ``F(x) − F(x′)`` that
                flows around the layer.

        Returns:
            A tensor shaped like the layer output, ``(batch, *per_example_shape)``; with
            ``return_convergence_delta=True``, ``(conductance, delta)`` where
            ``delta = Σ_neurons TC − (F(x) − F(x′))`` per example (always computed).
        """
        alphas, weights = total_conductance_points(method, n_steps)
        with eval_mode(self.model, self._name, stacklevel=4):
            s = self._setup(inputs, baselines, target, additional_forward_args, internal_batch_size)
            total = self._sweep(s, method, alphas, weights, internal_batch_size)
        change = s.f_x - s.f_b
        delta = total.reshape(s.n, -1).sum(dim=1) - change
        if completeness_tol is not None:
            convergence_warning(self._name, delta, change, completeness_tol)
        if return_convergence_delta:
            return total, delta
        return total

    def _sweep(
        self,
        s: _Setup,
        method: str,
        alphas: list[float],
        weights: list[float] | None,
        internal_batch_size: int | None,
    ) -> Tensor:
        total: Tensor | None = None
        # Last point (Y, G) of the previous chunk of each example block: the finite differences
        # span chunk boundaries, so consecutive chunks share that point (detached).
        carry: dict[int, tuple[Tensor, Tensor]] = {}
        forward_ad = True
        for steps, rows in chunk_plan(len(alphas), s.n, internal_batch_size):
            points, args, idx_c, m = self._path_points(s, alphas, steps, rows)
            k = len(steps)
            if weights is not None:  # Gauss–Legendre on exact path derivatives
                ydot, g, forward_ad = self._tangent_and_grad(
                    s, points, rows, args, idx_c, forward_ad
                )
                self._check_rows(ydot, k * m, s.layer_shape)
                w = torch.tensor([weights[j] for j in steps], dtype=g.dtype, device=g.device)
                prod = (g * ydot).reshape(k, m, -1) * w.view(k, 1, 1)
                part = prod.sum(dim=0)
            else:
                with torch.enable_grad():
                    _, z, out = self._forward_cut(points, args)
                    g = self._grad_wrt(select_target(out, idx_c), z)
                self._check_rows(z, k * m, s.layer_shape)
                part = _difference_step(z, g, k, m, carry, rows.start, method)
                if part is None:
                    continue
            if total is None:
                total = torch.zeros((s.n,) + part.shape[1:], dtype=part.dtype, device=part.device)
            total[rows] += part
        assert total is not None  # every grid has >= 2 points (difference rules) or >= 1 node
        return total.reshape((s.n,) + s.layer_shape)

    def _tangent_and_grad(
        self,
        s: _Setup,
        points: tuple[Tensor, ...],
        rows: slice,
        args: tuple[Any, ...],
        idx_c: Tensor | None,
        forward_ad: bool,
    ) -> tuple[Tensor, Tensor, bool]:
        """``(dY/dα, ∂F/∂y, forward_ad_still_usable)`` at the path points of one chunk."""
        k = points[0].shape[0] // (rows.stop - rows.start)
        dirs = tuple(
            (x[rows] - b[rows]).repeat(k, *([1] * (x.dim() - 1))).contiguous()
            for x, b in zip(s.xs, s.bs)
        )
        if forward_ad:
            try:
                with torch.enable_grad(), fwAD.dual_level():
                    duals = tuple(fwAD.make_dual(p, d) for p, d in zip(points, dirs))
                    t, z, out = self._forward_cut(duals, args, forward_ad=True)
                    tangent = fwAD.unpack_dual(t).tangent
                    ydot = torch.zeros_like(z) if tangent is None else tangent.detach().clone()
                    f = select_target(fwAD.unpack_dual(out).primal, idx_c)
                    g = self._grad_wrt(f, z)
                return ydot.detach(), g, True
            except AttributionError as err:
                if err.__cause__ is None:  # our own check (layer reached twice, shapes): real
                    raise
                # the model failed on dual numbers (an operation without a forward-mode
                # formula): use reverse-over-reverse for this and the remaining chunks
        leaves = tuple(p.detach().requires_grad_(True) for p in points)
        with torch.enable_grad():
            t, z, out = self._forward_cut(leaves, args)
            g = self._grad_wrt(select_target(out, idx_c), z, retain_graph=True)
            ydot = None
            if t.requires_grad:
                u = torch.zeros_like(t, requires_grad=True)
                jtu = torch.autograd.grad(t, leaves, u, create_graph=True, allow_unused=True)
                inner = [(a * d).sum() for a, d in zip(jtu, dirs) if a is not None]
                if inner:
                    dot = torch.stack(inner).sum()
                    if dot.requires_grad:
                        (ydot,) = torch.autograd.grad(dot, u, allow_unused=True)
        ydot = torch.zeros_like(z) if ydot is None else ydot.detach()
        return ydot, g.detach(), False


class LayersTotalConductance(_LayerPathMethod):
    r"""Total conductance of every neuron of several layers, from one sweep of the input path.

    For each layer, :class:`TotalConductance`'s quantity with the same points and rule:

    .. math::

        \mathrm{TC}^y(x) = \int_0^1 \frac{\partial F}{\partial y}(x(\alpha))\,
            \frac{d\, y(x(\alpha))}{d\alpha}\, d\alpha,
        \qquad x(\alpha) = x' + \alpha (x - x')

    (Dhamdhere, Sundararajan & Yan, arXiv:1805.12233; Shrikumar, Su & Kundaje,
    arXiv:1807.09946). Every layer's path is induced by the same straight input path, so one
    forward pass over a chunk of path points gives every layer's ``Y_k``, and one backward
    pass of ``F`` to the recorded layer outputs gives every layer's ``G_k = ∂F/∂y``: ``L``
    layers cost one sweep (a forward and a backward per chunk) instead of ``L`` sweeps that
    each repeat the forward pass. The numbers are those of ``L`` :class:`TotalConductance`
    calls (the same operations on the same points; a test checks it).

    Only the difference rules (``left``, ``trapezoid``) share the sweep. ``gausslegendre``
    needs each layer's exact path derivative, so it runs one :class:`TotalConductance` per
    layer (same numbers, no saving).

    Args:
        model: as for :class:`TotalConductance`.
        layers: a non-empty list of modules of ``model`` or their dotted names, each running
            exactly once per forward pass and returning a batch-first tensor; no layer twice.
        layer_output_index: for layers returning tuples, the index of the tensor to score (the
            same for every layer).
    """

    _name = "LayersTotalConductance"

    def __init__(
        self,
        model: nn.Module | Callable[..., Tensor],
        layers: Sequence[nn.Module | str],
        layer_output_index: int | None = None,
    ) -> None:
        if isinstance(layers, (str, nn.Module)) or not isinstance(layers, Sequence) or not layers:
            raise AttributionError(
                f"layers must be a non-empty list of modules or dotted names, got {layers!r}; "
                "for one layer use TotalConductance"
            )
        self.singles = [TotalConductance(model, layer, layer_output_index) for layer in layers]
        names = [t.layer_name for t in self.singles]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise AttributionError(f"layer {twice[0]!r} is listed twice in layers {names}")
        super().__init__(model, layers[0], layer_output_index)
        self.layer_names = names

    def attribute(
        self,
        inputs: TensorOrTuple,
        baselines: BaselineType = None,
        target: TargetType = None,
        additional_forward_args: Any = None,
        n_steps: int = 50,
        method: str = "trapezoid",
        internal_batch_size: int | None = None,
        return_convergence_delta: bool = False,
        completeness_tol: float | None = 0.05,
    ) -> tuple[Tensor, ...] | tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
        """Total conductance of every neuron of each layer, for each example.

        Arguments as for :meth:`TotalConductance.attribute`. Returns one tensor per layer, in
        the order of ``layers``, shaped like that layer's output; with
        ``return_convergence_delta=True``, ``(conductances, deltas)`` with one completeness
        residual ``Σ_neurons TC − (F(x) − F(x′))`` per layer. ``completeness_tol`` warns per
        layer, naming it.
        """
        alphas, weights = total_conductance_points(method, n_steps)
        kw = dict(baselines=baselines, target=target,
                  additional_forward_args=additional_forward_args, n_steps=n_steps,
                  method=method, internal_batch_size=internal_batch_size,
                  return_convergence_delta=True, completeness_tol=completeness_tol)
        if weights is not None:
            pairs = [t.attribute(inputs, **kw) for t in self.singles]
            totals = tuple(p[0] for p in pairs)
            deltas = tuple(p[1] for p in pairs)
            return (totals, deltas) if return_convergence_delta else totals
        with eval_mode(self.model, self._name, stacklevel=4):
            s = self._setup(inputs, baselines, target, additional_forward_args, internal_batch_size)
            totals = self._sweep(s, method, alphas, internal_batch_size)
        change = s.f_x - s.f_b
        deltas = tuple(t.reshape(s.n, -1).sum(dim=1) - change for t in totals)
        if completeness_tol is not None:
            for name, delta in zip(self.layer_names, deltas):
                convergence_warning(f"{self._name} (layer {name!r})", delta, change,
                                    completeness_tol)
        return (totals, deltas) if return_convergence_delta else totals

    def _captures(self, stack: ExitStack) -> list[Any]:
        # protect: the model computes on a copy, so the recorded output stays the tensor
        # autograd differentiates to, whatever in-place op follows the layer
        return [stack.enter_context(capture_layer(t.layer, t.layer_name, t.layer_output_index,
                                                  protect=True)) for t in self.singles]

    def _endpoint_shape(self, caps: list[Any], rows: int) -> tuple[tuple[int, ...], ...]:
        """Every layer's per-example output shape (checked, each naming its layer)."""
        return tuple(t._check_rows(c.single(), rows) for t, c in zip(self.singles, caps))

    def _sweep(
        self, s: _Setup, method: str, alphas: list[float], internal_batch_size: int | None
    ) -> tuple[Tensor, ...]:
        shapes: tuple[tuple[int, ...], ...] = s.layer_shape  # type: ignore[assignment]
        totals: list[Tensor | None] = [None] * len(self.singles)
        carry: dict[tuple[int, int], tuple[Tensor, Tensor]] = {}
        for steps, rows in chunk_plan(len(alphas), s.n, internal_batch_size):
            points, args, idx_c, m = self._path_points(s, alphas, steps, rows)
            k = len(steps)
            with torch.enable_grad():
                # inputs that require grad put every layer output in the graph, even when
                # the model's parameters are frozen
                leaves = tuple(p.detach().requires_grad_(True) for p in points)
                with ExitStack() as stack:
                    caps = self._captures(stack)
                    out = run_forward(self.model, leaves, args)
                ys = [c.single() for c in caps]
                f = select_target(out, idx_c)
                grads: list[Tensor | None] = [None] * len(ys)
                needed = [i for i, y in enumerate(ys) if y.requires_grad]
                if f.requires_grad and needed:
                    got = torch.autograd.grad(f.sum(), [ys[i] for i in needed],
                                              allow_unused=True)
                    for i, g in zip(needed, got):
                        grads[i] = g
            for i, (t, y, g) in enumerate(zip(self.singles, ys, grads)):
                t._check_rows(y, k * m, shapes[i])
                g = torch.zeros_like(y) if g is None else g
                part = _difference_step(y, g, k, m, carry, (i, rows.start), method)
                if part is None:
                    continue
                if totals[i] is None:
                    totals[i] = torch.zeros((s.n,) + part.shape[1:], dtype=part.dtype,
                                            device=part.device)
                totals[i][rows] += part
        return tuple(tot.reshape((s.n,) + shape)  # type: ignore[union-attr]
                     for tot, shape in zip(totals, shapes))


# --------------------------------------------------------------------------------------------
# neuron conductance


class NeuronConductance(_LayerPathMethod):
    r"""Conductance of selected hidden neurons, split over the input features.

    .. math::

        \mathrm{Cond}^y_i(x) = (x_i - x'_i) \int_0^1 \frac{\partial F}{\partial y}(x(\alpha))\,
            \frac{\partial y}{\partial x_i}(x(\alpha))\, d\alpha
        \approx (x_i - x'_i) \sum_k w_k\, G_k\, \frac{\partial y}{\partial x_i}(x(\alpha_k))

    (Dhamdhere, Sundararajan & Yan, arXiv:1805.12233), with the quadrature of
    :func:`neuron_conductance_rule`. Summed over the inputs it gives
    ``Σ_k w_k G_k · dY/dα(α_k)`` (chain rule), which is exactly
    ``TotalConductance(method="gausslegendre")`` for ``method="gausslegendre"`` (the default
    here) with the same ``n_steps``. For ``left`` and ``trapezoid`` the per-input split is of
    the derivative form while :class:`TotalConductance` uses differences ``Y_{k+1} − Y_k``
    (no finite set of gradients splits a difference of a nonlinear ``y`` exactly over the
    inputs), so the sum differs from the total conductance of the same rule by ``O(1/m)``
    (left) or ``O(1/m²)`` (trapezoid, smooth nets); both converge to the same integral.

    Relation to Captum 0.9 ``NeuronConductance`` (same formula, same summation):

    * ``method="gausslegendre"``: same nodes and weights; Captum rounds the weights to float32,
      so float64 results agree to about 1e-7 relative.
    * ``method="trapezoid", n_steps=m`` uses the ``m + 1`` points Captum's
      ``method="riemann_trapezoid", n_steps=m+1`` uses, with weights ``1/m`` (halved at the
      ends) instead of Captum's ``1/(m+1)``, which sum to ``m/(m+1)`` and lose completeness:
      ours equals Captum's times ``(m+1)/m``.
    * ``method="left", n_steps=m``: the points ``k/m``, ``k < m`` (Captum's ``riemann_left``
      builds them with a different float32 rounding; agreement ~1e-7 relative).

    Neurons are selected with ``neuron_selector``: an int (flat index into the per-example
    layer output, row-major; negative counts from the end), a tuple of ints (one per
    per-example dimension), a list of those, or a slice over the flattened per-example
    neurons. Captum's callable selectors are not supported (they can aggregate neurons, which
    conductance cannot).

    Cost: per chunk of path points one forward pass and one backward pass from ``F`` to the
    layer, then one vector–Jacobian product ``∂y/∂x`` per selected neuron, all sharing the
    forward graph (neurons whose ``G`` vanishes on the chunk are skipped). A loop of
    ``torch.autograd.grad`` calls with ``retain_graph`` is used rather than
    ``is_grads_batched``: the vmapped backward was 2–4× slower on CPU for convolutions.

    **Receptive-field fast path.** When the model is an ``nn.Sequential`` and everything up to
    the layer is convolutions / pooling without padding, elementwise activations and eval-mode
    dropout / batch norm (:func:`~._receptive.crop_plan`), a neuron's input gradient is computed
    on its receptive field only: the crops of all selected neurons are stacked, the last
    convolution computes only each neuron's own channel, and one backward pass gives every
    neuron's gradient. Same values up to float rounding (tested against the general path);
    on the MNIST CNN's second conv layer this made 32 neurons about 7× cheaper.

    Args:
        model, layer, layer_output_index: as for :class:`TotalConductance`.
    """

    _name = "NeuronConductance"

    def attribute(
        self,
        inputs: TensorOrTuple,
        neuron_selector: NeuronSelector,
        baselines: BaselineType = None,
        target: TargetType = None,
        additional_forward_args: Any = None,
        n_steps: int = 50,
        method: str = "gausslegendre",
        internal_batch_size: int | None = None,
    ) -> TensorOrTuple:
        """Per-input conductance through each selected neuron.

        Args:
            inputs, baselines, target, additional_forward_args: as for
                :meth:`TotalConductance.attribute`.
            neuron_selector: see the class docstring.
            n_steps: number of quadrature intervals (``left``: ``m`` points, ``trapezoid``:
                ``m + 1`` points) or Gauss–Legendre nodes.
            method: ``"gausslegendre"`` (default), ``"trapezoid"`` or ``"left"``.
            internal_batch_size: at most this many rows per forward pass (``None``: all).

        Returns:
            For a single int or tuple selector, attributions shaped like ``inputs`` (a tuple
            for tuple inputs). For a list or a slice selecting ``K`` neurons, each input's
            attributions get a leading dimension ``K`` (in selector order):
            ``(K, *input.shape)``.
        """
        alphas, weights = neuron_conductance_rule(method, n_steps)
        with eval_mode(self.model, self._name, stacklevel=4):
            s = self._setup(inputs, baselines, target, additional_forward_args, internal_batch_size)
            flat, single = self._neuron_indices(neuron_selector, s.layer_shape)
            totals = self._sweep(s, alphas, weights, flat, internal_batch_size)
        diffs = tuple(x - b for x, b in zip(s.xs, s.bs))
        result = tuple(t * d.unsqueeze(0) for t, d in zip(totals, diffs))
        if single:
            result = tuple(r[0] for r in result)
        return unpack(result, s.was_tuple)

    def _neuron_indices(self, selector: Any, shape: tuple[int, ...]) -> tuple[list[int], bool]:
        """Flat per-example neuron indices for ``selector`` and whether it names one neuron."""
        count = 1
        for d in shape:
            count *= d

        def bad(what: Any, why: str) -> AttributionError:
            return AttributionError(
                f"neuron index {what!r} {why} for layer {self.layer_name!r}, whose per-example "
                f"output has shape {shape} ({count} neurons)"
            )

        def is_int(v: Any) -> bool:
            return isinstance(v, numbers.Integral) and not isinstance(v, bool)

        def one(sel: Any) -> int:
            if is_int(sel):
                i = int(sel)
                if not -count <= i < count:
                    raise bad(sel, "is out of range")
                return i % count
            if isinstance(sel, tuple):
                if len(sel) != len(shape) or not all(is_int(v) for v in sel):
                    raise bad(sel, f"must be a tuple of {len(shape)} ints")
                flat = 0
                for v, d in zip(sel, shape):
                    if not -d <= int(v) < d:
                        raise bad(sel, "is out of range")
                    flat = flat * d + int(v) % d
                return flat
            raise AttributionError(
                "neuron_selector must be an int (flat index), a tuple of ints, a list of those "
                f"or a slice, got {type(sel).__name__}"
            )

        if isinstance(selector, slice):
            flat = list(range(count))[selector]
            if not flat:
                raise bad(selector, "selects no neuron")
            return flat, False
        if isinstance(selector, list):
            if not selector:
                raise bad(selector, "selects no neuron")
            return [one(sel) for sel in selector], False
        return [one(selector)], True

    def _sweep(
        self,
        s: _Setup,
        alphas: list[float],
        weights: list[float],
        flat: list[int],
        internal_batch_size: int | None,
    ) -> tuple[Tensor, ...]:
        n_neurons = len(flat)
        totals = tuple(
            torch.zeros((n_neurons,) + tuple(x.shape), dtype=x.dtype, device=x.device) for x in s.xs
        )
        index = torch.tensor(flat, dtype=torch.long, device=s.xs[0].device)
        # conv neurons of a plain Sequential: each neuron's input gradient on its receptive
        # field only (neurons/_receptive.py), instead of a full backward pass per neuron
        plan = crop_plan(self.model, self.layer_name, self.layer_output_index, s.xs, s.extra,
                         s.layer_shape)
        for steps, rows in chunk_plan(len(alphas), s.n, internal_batch_size):
            points, args, idx_c, m = self._path_points(s, alphas, steps, rows)
            k = len(steps)
            leaves = tuple(p.detach().requires_grad_(plan is None) for p in points)
            with torch.enable_grad():
                t, z, out = self._forward_cut(leaves, args)
                self._check_rows(z, k * m, s.layer_shape)
                # retain: F's graph may share upstream nodes with y's (skip connections)
                g = self._grad_wrt(select_target(out, idx_c), z, retain_graph=True)
                w = torch.tensor([weights[j] for j in steps], dtype=g.dtype, device=g.device)
                wg = g.reshape(k, m, -1).index_select(2, index) * w.view(k, 1, 1)
                wg = wg.reshape(k * m, n_neurons)
                if plan is not None:
                    accumulate_cropped_grads(plan, leaves[0], s.layer_shape, flat, wg,
                                             totals[0], rows, k, m)
                    continue
                if not t.requires_grad:  # the layer does not depend on the inputs
                    continue
                y_sel = t.reshape(k * m, -1).index_select(1, index)
                todo = torch.nonzero(wg.any(dim=0)).flatten().tolist()
                for pos, j in enumerate(todo):
                    grads = torch.autograd.grad(
                        y_sel[:, j],
                        leaves,
                        grad_outputs=wg[:, j],
                        retain_graph=pos < len(todo) - 1,
                        allow_unused=True,
                    )
                    for total, gr in zip(totals, grads):
                        if gr is not None:
                            total[j, rows] += gr.reshape((k, m) + tuple(gr.shape[1:])).sum(dim=0)
        return totals
