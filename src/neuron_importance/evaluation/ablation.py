"""Neuron ablation curves: remove a layer's most important neurons and measure the output drop.

For each example the layer's neurons are ranked by ``scores`` (descending, **signed**: pass
``scores.abs()`` to rank by magnitude), the top ``k`` are set to 0 (``mode="zero"``) or to their
value on the reference input (``mode="reference"``: the layer output on ``baselines``, zeros
by default, as in the attribution methods), and the drop of the target output
``f(x)[target] − f(x with top-k ablated)[target]`` is recorded for every ``k`` in ``k_values``
(protocol: ``docs/methods/evaluation.md`` §4). ``random_orders`` repeats this with random
rankings as a control. Ties in the scores are broken at random with ``seed``.

**Units or channels.** For a layer output of shape ``(N, *S)``:

* scores of shape ``(N, *S)`` (per example) or ``S`` (shared by all examples) rank and ablate
  single units (``N_neurons = prod(S)``);
* for a ``(N, C, *)`` output (e.g. conv ``(N, C, H, W)``), scores of shape ``(N, C)`` (per
  example) or ``(C,)`` (shared) rank and ablate whole channels (``N_neurons = C``).

If ``N`` and ``S`` happen to make ``(N, C)`` equal to ``S``, the scores are read as per-example
channel scores; expand shared unit scores to ``(N, *S)`` in that case.

One batched forward pass runs per ``k`` (per block of ``batch_size`` examples), with the layer
output replaced through :func:`neuron_importance.neurons._layers.capture_layer`, under
``torch.no_grad`` and in eval mode.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from ..attribution._common import (
    AttributionError,
    BaselineType,
    TargetType,
    TensorOrTuple,
    check_finite,
    eval_mode,
    format_additional_args,
    format_baselines,
    format_inputs,
    format_target,
    run_forward,
    select_target,
)
from ..neurons._layers import capture_layer, resolve_layer
from ..neurons.activation import check_batch_first

__all__ = ["AblationCurves", "ablate_neurons"]


@dataclass
class AblationCurves:
    """Output drops of a neuron-ablation experiment (float64 tensors on the CPU).

    Attributes:
        k_values: ``(K,)`` numbers of ablated neurons, ascending.
        drop: ``(N, K)`` per-example drop ``f(x)[t] − f(x_ablated)[t]`` (positive = the
            target output went down).
        original: ``(N,)`` target output before ablation.
        random_drop: ``(R, N, K)`` the same for ``R`` random neuron orders, or ``None``.
        prediction: ``(N, K)`` argmax class after ablating ``k`` neurons, for a
            ``(N, classes)`` output with more than one class; otherwise ``None``.
        original_prediction: ``(N,)`` argmax class before ablation (or ``None``).
        n_neurons: the number of rankable neurons (units, or channels).
        level: ``"unit"`` or ``"channel"``.
        mode: ``"zero"`` or ``"reference"``.
        layer: the layer's dotted name.
    """

    k_values: Tensor
    drop: Tensor
    original: Tensor
    random_drop: Tensor | None
    prediction: Tensor | None
    original_prediction: Tensor | None
    n_neurons: int
    level: str
    mode: str
    layer: str

    @property
    def mean(self) -> Tensor:
        """``(K,)`` mean drop over examples."""
        return self.drop.mean(dim=0)

    @property
    def median(self) -> Tensor:
        """``(K,)`` median drop over examples (midpoint of the two middle values for even N)."""
        return torch.quantile(self.drop, 0.5, dim=0)

    @property
    def random_mean(self) -> Tensor | None:
        """``(K,)`` mean drop over random orders and examples (``None`` without orders)."""
        if self.random_drop is None:
            return None
        return self.random_drop.mean(dim=(0, 1))

    @property
    def random_std(self) -> Tensor | None:
        """``(K,)`` std (ddof = 0) over random orders of each order's mean curve."""
        if self.random_drop is None:
            return None
        return self.random_drop.mean(dim=1).std(dim=0, correction=0)

    def area_under_curve(
        self, which: Literal["mean", "median", "random", "examples"] = "mean"
    ) -> float | Tensor:
        """Normalised area under a drop curve: the trapezoid area over ``k`` divided by
        ``k_max − k_min``, i.e. the average drop over the ``k`` range, in output units.

        ``which="examples"`` returns an ``(N,)`` tensor (one area per example); the other
        choices a float. With a single ``k`` the "area" is the drop at that ``k``.
        """
        if which == "examples":
            return _normalised_area(self.drop, self.k_values)
        if which == "mean":
            curve = self.mean
        elif which == "median":
            curve = self.median
        elif which == "random":
            if self.random_drop is None:
                raise ValueError("no random orders were run (random_orders=0)")
            curve = self.random_mean
        else:
            raise ValueError(
                f"which must be 'mean', 'median', 'random' or 'examples', got {which!r}"
            )
        return float(_normalised_area(curve, self.k_values))

    def ablations_to_flip(self) -> Tensor:
        """``(N,)`` smallest ``k`` in ``k_values`` at which the predicted class changes
        (``inf`` where it never does); needs a ``(N, classes)`` output."""
        if self.prediction is None or self.original_prediction is None:
            raise ValueError("predictions are only recorded for a (N, classes) model output")
        flipped = self.prediction != self.original_prediction[:, None]
        k = self.k_values.to(torch.float64).expand_as(self.drop)
        return torch.where(flipped, k, torch.full_like(k, math.inf)).min(dim=1).values

    def to_dict(self, per_example: bool = True) -> dict[str, Any]:
        """JSON-ready summary (``per_example=False`` leaves out the ``(N, K)`` drops)."""
        d: dict[str, Any] = {
            "layer": self.layer,
            "mode": self.mode,
            "level": self.level,
            "n_neurons": self.n_neurons,
            "n_examples": int(self.drop.shape[0]),
            "k_values": self.k_values.tolist(),
            "mean": self.mean.tolist(),
            "median": self.median.tolist(),
            "auc_mean": self.area_under_curve("mean"),
            "auc_median": self.area_under_curve("median"),
            "random_orders": 0 if self.random_drop is None else int(self.random_drop.shape[0]),
            "random_mean": None if self.random_drop is None else self.random_mean.tolist(),
            "random_std": None if self.random_drop is None else self.random_std.tolist(),
            "auc_random": None if self.random_drop is None else self.area_under_curve("random"),
        }
        if self.prediction is not None:
            flips = self.ablations_to_flip()
            d["ablations_to_flip"] = [None if math.isinf(v) else int(v) for v in flips.tolist()]
        if per_example:
            d["original"] = self.original.tolist()
            d["drop"] = self.drop.tolist()
        return d


def _normalised_area(curve: Tensor, k: Tensor) -> Tensor:
    if k.numel() == 1:
        return curve[..., 0]
    kf = k.to(torch.float64)
    return torch.trapezoid(curve, kf, dim=-1) / (kf[-1] - kf[0])


# ---------------------------------------------------------------------------------------------


@dataclass
class _CurveRun:
    """Forward passes of one block of examples with its top-k neurons ablated, per k."""

    model: nn.Module
    module: nn.Module
    name: str
    layer_output_index: int | None
    inputs: tuple[Tensor, ...]
    extra: tuple[Any, ...]
    ks: list[int]
    mask_shape: tuple[int, ...]
    reference: Tensor | None  # layer output on the baselines, or None for zero ablation
    original: Tensor  # (n,) target output before ablation
    target_idx: Tensor | None
    original_prediction: Tensor | None

    def curve(self, rank: Tensor) -> tuple[Tensor, Tensor | None]:
        """``(drop (n, K), prediction (n, K) or None)`` for the ranks ``(n, N_neurons)``."""
        n, n_k = self.original.shape[0], len(self.ks)
        drop = torch.zeros(n, n_k, dtype=torch.float64, device=self.original.device)
        pred = None
        if self.original_prediction is not None:
            pred = self.original_prediction.unsqueeze(1).repeat(1, n_k)
        for j, k in enumerate(self.ks):
            if k == 0:  # nothing ablated: the drop is exactly 0
                continue
            mask = (rank < k).reshape(self.mask_shape)
            replace = self._replacer(mask)
            with capture_layer(self.module, self.name, self.layer_output_index, replace) as cap:
                out = run_forward(self.model, self.inputs, self.extra)
            cap.single()
            drop[:, j] = (self.original - select_target(out, self.target_idx)).to(torch.float64)
            if pred is not None:
                pred[:, j] = out.argmax(dim=1)
        return drop.cpu(), None if pred is None else pred.cpu()

    def _replacer(self, mask: Tensor):
        ref = self.reference
        if ref is None:
            return lambda t: t.masked_fill(mask, 0)
        return lambda t: torch.where(mask, ref.to(t.dtype), t)


def _score_layout(
    shape: tuple[int, ...], n: int, per_ex: tuple[int, ...], name: str
) -> tuple[str, bool]:
    """``(level, per_example)`` for scores of ``shape`` and a layer output ``(n, *per_ex)``."""
    channels = len(per_ex) >= 2
    if shape == (n, *per_ex):
        return "unit", True
    if channels and shape == (n, per_ex[0]):
        return "channel", True
    if shape == per_ex:
        return "unit", False
    if channels and shape == (per_ex[0],):
        return "channel", False
    expected = f"{(n, *per_ex)} (per unit and example) or {per_ex} (per unit, shared)"
    if channels:
        expected += (
            f", or {(n, per_ex[0])} (per channel and example) or {(per_ex[0],)} (per channel, "
            "shared) to ablate whole channels"
        )
    raise AttributionError(
        f"scores of shape {shape} do not fit layer {name!r}, whose output for these inputs has "
        f"shape {(n, *per_ex)}; expected {expected}"
    )


def _k_list(k_values: Any, n_units: int, name: str, level: str) -> list[int]:
    if k_values is None:
        return list(range(0, min(50, n_units) + 1))
    if isinstance(k_values, Tensor):
        k_values = k_values.reshape(-1).tolist()
    elif isinstance(k_values, (int, np.integer)):
        k_values = [k_values]
    ks = []
    for k in k_values:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
            raise AttributionError(f"k_values must hold non-negative ints, got {k!r}")
        ks.append(int(k))
    if not ks:
        raise AttributionError("k_values is empty")
    if min(ks) < 0:
        raise AttributionError(f"k_values must be non-negative, got {min(ks)}")
    if max(ks) > n_units:
        what = "channels" if level == "channel" else "neurons"
        raise AttributionError(
            f"k_values include k={max(ks)} but layer {name!r} has only {n_units} {what} to ablate"
        )
    return sorted(set(ks))


def _ranks_from_order(order: Tensor) -> Tensor:
    """``rank[i, order[i, j]] = j``: the position of each neuron in its example's order."""
    ar = torch.arange(order.shape[1], device=order.device).expand_as(order)
    return torch.empty_like(order).scatter_(1, order, ar)


def _rows(x: Any, sl: slice, n: int) -> Any:
    """Slice a batch-first tensor argument; leave anything else alone."""
    if isinstance(x, Tensor) and x.dim() > 0 and x.shape[0] == n:
        return x[sl]
    return x


def _target_rows(target: TargetType, sl: slice, n: int, whole: bool) -> TargetType:
    if whole or target is None or isinstance(target, (int, np.integer)):
        return target
    if isinstance(target, Tensor):
        if target.dim() == 0:
            return target
        flat = target.reshape(-1)
    elif isinstance(target, Sequence) and not isinstance(target, str):
        flat = list(target)
    else:
        return target  # format_target names the problem
    if len(flat) != n:
        raise AttributionError(f"target has {len(flat)} entries for a batch of {n} examples")
    return flat[sl]


def ablate_neurons(
    model: nn.Module,
    layer: nn.Module | str,
    inputs: TensorOrTuple,
    scores: Tensor,
    *,
    target: TargetType = None,
    k_values: Sequence[int] | Tensor | None = None,
    mode: Literal["zero", "reference"] = "zero",
    baselines: BaselineType = None,
    additional_forward_args: Any = None,
    random_orders: int = 0,
    seed: int = 0,
    layer_output_index: int | None = None,
    batch_size: int | None = None,
) -> AblationCurves:
    """Ablate each example's top-``k`` neurons of ``layer`` by ``scores``; record output drops.

    Args:
        model: the model, returning ``(N,)``/``(N, 1)`` or ``(N, classes)`` outputs.
        layer: a module of ``model`` or its dotted name; it must run once per forward pass.
        inputs: a tensor or a tuple of batch-first tensors.
        scores: importance of the layer's neurons; see the module docstring for the shapes
            (units: ``(N, *S)`` or ``S``; channels of a ``(N, C, *)`` output: ``(N, C)`` or
            ``(C,)``). Ranked descending, signed.
        target: output index per example, as for the attribution methods.
        k_values: numbers of neurons to ablate (sorted, deduplicated); default
            ``0, 1, ..., min(50, N_neurons)``.
        mode: ``"zero"`` sets ablated neurons to 0; ``"reference"`` sets them to their value
            on ``baselines`` (broadcast to the inputs; ``None`` = zero input).
        baselines: reference inputs for ``mode="reference"``.
        additional_forward_args: extra model arguments (batch-first tensors are sliced with
            the examples when ``batch_size`` splits them).
        random_orders: number of random neuron orders to run as a control.
        seed: seeds the random orders and the random tie-breaking of equal scores.
        layer_output_index: which tensor of a layer that returns a tuple.
        batch_size: examples per forward pass (default: all at once). The result does not
            depend on it, random orders included.

    Returns:
        :class:`AblationCurves`.
    """
    name, module = resolve_layer(model, layer)
    xs, _ = format_inputs(inputs, require_float=False)
    check_finite(tuple(x for x in xs if x.is_floating_point()))
    extra = format_additional_args(additional_forward_args)
    if mode not in ("zero", "reference"):
        raise AttributionError(f"mode must be 'zero' or 'reference', got {mode!r}")
    if mode == "zero" and baselines is not None:
        raise AttributionError(
            "baselines are only used with mode='reference' (ablating to the neurons' values "
            "on the baselines); mode='zero' ablates to 0"
        )
    refs = format_baselines(baselines, xs) if mode == "reference" else None
    if isinstance(random_orders, bool) or not isinstance(random_orders, int) or random_orders < 0:
        raise AttributionError(f"random_orders must be a non-negative int, got {random_orders!r}")
    n = xs[0].shape[0]
    if batch_size is None:
        batch_size = n
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise AttributionError(f"batch_size must be a positive int or None, got {batch_size!r}")
    if not isinstance(scores, Tensor):
        scores = torch.as_tensor(np.asarray(scores))
    if scores.is_complex() or scores.dtype == torch.bool:
        raise AttributionError(f"scores must be a real tensor, got dtype {scores.dtype}")
    scores = scores.detach()
    if not bool(torch.isfinite(scores).all()):
        raise AttributionError("scores contain NaN or inf; neurons cannot be ranked by them")

    chunks = [slice(s, min(s + batch_size, n)) for s in range(0, n, batch_size)]
    whole = len(chunks) == 1
    drops, originals, preds, orig_preds, rand_drops = [], [], [], [], []
    ks: list[int] = []
    level, per_example, n_units = "unit", True, 0
    tie_perm: Tensor | None = None
    order_gens: list[torch.Generator] = []
    per_ex_shape: tuple[int, ...] = ()

    with eval_mode(model, "ablate_neurons"), torch.no_grad():
        for ci, sl in enumerate(chunks):
            xc = tuple(x[sl] for x in xs)
            ec = extra if whole else tuple(_rows(a, sl, n) for a in extra)
            nc = xc[0].shape[0]
            with capture_layer(module, name, layer_output_index) as cap:
                out = run_forward(model, xc, ec)
            a = cap.single().detach()
            check_batch_first(name, a, nc)
            if ci == 0:
                per_ex_shape = tuple(a.shape[1:])
                level, per_example = _score_layout(tuple(scores.shape), n, per_ex_shape, name)
                n_units = per_ex_shape[0] if level == "channel" else math.prod(per_ex_shape)
                ks = _k_list(k_values, n_units, name, level)
                base = torch.Generator().manual_seed(int(seed))
                tie_perm = torch.randperm(n_units, generator=base)
                order_seeds = torch.randint(0, 2**62, (random_orders,), generator=base)
                order_gens = [torch.Generator().manual_seed(int(s)) for s in order_seeds]
            elif tuple(a.shape[1:]) != per_ex_shape:
                raise AttributionError(
                    f"layer {name!r} returned per-example shape {tuple(a.shape[1:])} for "
                    f"examples {sl.start}..{sl.stop - 1} but {per_ex_shape} for the first ones"
                )
            tidx = format_target(_target_rows(target, sl, n, whole), out)
            orig = select_target(out, tidx)
            classes = out.dim() == 2 and out.shape[1] > 1
            orig_pred = out.argmax(dim=1) if classes else None

            ref_a = None
            if refs is not None:
                rc = tuple(r[sl] for r in refs)
                with capture_layer(module, name, layer_output_index) as rcap:
                    run_forward(model, rc, ec)
                ref_a = rcap.single().detach()
                if ref_a.shape != a.shape:
                    raise AttributionError(
                        f"layer {name!r} returned shape {tuple(ref_a.shape)} on the baselines "
                        f"but {tuple(a.shape)} on the inputs"
                    )

            # rank: position of each neuron in each example's order (0 = most important)
            s = scores[sl] if per_example else scores.unsqueeze(0).expand(nc, *scores.shape)
            s = s.reshape(nc, n_units).to(device="cpu", dtype=torch.float64)
            perm = tie_perm.expand(nc, n_units)
            order = perm.gather(
                1, torch.argsort(s[:, tie_perm], dim=1, descending=True, stable=True)
            )
            rank = _ranks_from_order(order).to(a.device)

            mask_shape = (nc, n_units, *([1] * (a.dim() - 2))) if level == "channel" else a.shape
            run = _CurveRun(
                model,
                module,
                name,
                layer_output_index,
                xc,
                ec,
                ks,
                mask_shape,
                ref_a,
                orig,
                tidx,
                orig_pred,
            )
            d, p = run.curve(rank)
            drops.append(d)
            originals.append(orig.detach().to(torch.float64).cpu())
            if p is not None:
                preds.append(p)
                orig_preds.append(orig_pred.cpu())
            if order_gens:
                per_order = []
                for g in order_gens:
                    keys = torch.rand(nc, n_units, generator=g, dtype=torch.float64)
                    r_rank = _ranks_from_order(torch.argsort(keys, dim=1)).to(a.device)
                    per_order.append(run.curve(r_rank)[0])
                rand_drops.append(torch.stack(per_order))

    return AblationCurves(
        k_values=torch.tensor(ks, dtype=torch.long),
        drop=torch.cat(drops),
        original=torch.cat(originals),
        random_drop=torch.cat(rand_drops, dim=1) if rand_drops else None,
        prediction=torch.cat(preds) if preds else None,
        original_prediction=torch.cat(orig_preds) if orig_preds else None,
        n_neurons=n_units,
        level=level,
        mode=mode,
        layer=name,
    )
