"""Layer activations and streaming per-neuron activation statistics.

* :class:`LayerActivation` returns a layer's output for a batch (Captum's ``LayerActivation``
  call: ``LayerActivation(model, layer).attribute(inputs, additional_forward_args=None)``).
* :func:`activation_statistics` streams a data set through the model and accumulates, per
  neuron of one layer, the mean, mean ``|a|``, mean ``a²``, the fraction of observations with
  ``a > 0`` and the variance, in float64, without ever holding more than one batch of
  activations. The result, :class:`ActivationStatistics`, merges with another one (e.g. the
  statistics of the next task in continual learning) exactly as if both data sets had been
  streamed together.

**What a neuron is.** By default every element of the per-example layer output is a neuron:
a ``(N, C, H, W)`` conv output has ``C·H·W`` neurons and the statistics have shape
``(C, H, W)``. ``reduce="channel"`` (or ``reduce_dims=(2, 3)``) gives per-channel statistics
of shape ``(C,)``. How the reduced dimensions enter is set by ``reduce_mode``:

* ``"mean"`` (default): each example's activations are first averaged over the reduced
  dimensions, ``h_c(x) = mean_{h,w} a_{c,h,w}(x)``, and the statistics are taken over examples
  (``count`` = number of examples). This is the channel activation of the continual-learning
  notes (AGS-CL's node importance is ``E_x[h_c(x)]`` of a post-ReLU layer). Note that
  ``frac_active`` is then the fraction of examples whose *spatial mean* is positive.
* ``"pool"``: every position is one observation of its channel (``count`` = examples ×
  positions); ``mean_abs``, ``mean_sq`` and ``frac_active`` are then the averages over positions
  of the per-unit statistics (``mean`` is the same in both modes).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from ..attribution._common import (
    AttributionError,
    TensorOrTuple,
    call_model,
    eval_mode,
    format_additional_args,
    format_inputs,
)
from ._layers import capture_layer, resolve_layer

__all__ = ["ActivationStatistics", "LayerActivation", "activation_statistics"]


# ---------------------------------------------------------------------------------------------
# shared helpers (also used by evaluation.ablation)


def check_batch_first(name: str, out: Tensor, n: int) -> None:
    """The layer output must have one row per example."""
    if out.dim() == 0 or out.shape[0] != n:
        raise AttributionError(
            f"layer {name!r} returned shape {tuple(out.shape)} for a batch of {n} examples; "
            "per-neuron statistics and ablations need a batch-first layer output"
        )


# ---------------------------------------------------------------------------------------------
# LayerActivation


class LayerActivation:
    """The output of ``layer`` for the inputs (Captum's ``LayerActivation``).

    ``layer`` is a module of ``model`` or its dotted name (``"features.3"``). For a layer that
    returns a tuple, ``layer_output_index`` picks the tensor. The forward pass runs in eval
    mode (restored afterwards, with a warning if the model was training with dropout or batch
    norm) and without autograd; the returned tensor is detached.
    """

    def __init__(
        self, model: nn.Module, layer: nn.Module | str, layer_output_index: int | None = None
    ) -> None:
        self.model = model
        self.forward_func = model  # Captum's name
        self.layer_name, self.layer = resolve_layer(model, layer)
        self.layer_output_index = layer_output_index

    def attribute(self, inputs: TensorOrTuple, additional_forward_args: Any = None) -> Tensor:
        xs, _ = format_inputs(inputs, require_float=False)
        extra = format_additional_args(additional_forward_args)
        with eval_mode(self.model, "LayerActivation"), torch.no_grad():
            with capture_layer(self.layer, self.layer_name, self.layer_output_index) as cap:
                call_model(self.model, xs, extra)
            return cap.single().detach()


# ---------------------------------------------------------------------------------------------
# statistics


@dataclass
class ActivationStatistics:
    """Per-neuron activation statistics of one layer (float64 tensors of the neuron shape).

    ``mean`` E[a], ``mean_abs`` E|a|, ``mean_sq`` E[a²], ``frac_active`` P(a > 0) and ``m2``
    Σ (a − mean)², over ``count`` observations per neuron (the same for every neuron: the
    number of examples, times the number of positions with ``reduce_mode="pool"``).
    ``var`` and ``std`` are population moments (ddof = 0). ``merge`` combines two statistics
    of the same layer as if their data had been streamed together (Chan et al.'s parallel
    update, so the variance stays accurate).
    """

    mean: Tensor
    mean_abs: Tensor
    mean_sq: Tensor
    frac_active: Tensor
    m2: Tensor
    count: int
    layer: str | None = None
    reduce_dims: tuple[int, ...] = ()
    reduce_mode: str = "mean"

    def __post_init__(self) -> None:
        shape = self.mean.shape
        for field_name in ("mean_abs", "mean_sq", "frac_active", "m2"):
            t = getattr(self, field_name)
            if t.shape != shape:
                raise ValueError(
                    f"ActivationStatistics.{field_name} has shape {tuple(t.shape)} but mean has "
                    f"{tuple(shape)}"
                )
        self.count = int(self.count)
        self.reduce_dims = tuple(int(d) for d in self.reduce_dims)

    @property
    def shape(self) -> torch.Size:
        """The neuron shape (per-example layer output shape, reduced dimensions removed)."""
        return self.mean.shape

    @property
    def n_neurons(self) -> int:
        return self.mean.numel()

    @property
    def var(self) -> Tensor:
        """Population variance ``m2 / count``."""
        return self.m2 / self.count

    @property
    def std(self) -> Tensor:
        """Population standard deviation (ddof = 0)."""
        return self.var.clamp(min=0).sqrt()

    def merge(self, other: ActivationStatistics) -> ActivationStatistics:
        """Statistics of the union of both data sets (neither object is modified)."""
        if not isinstance(other, ActivationStatistics):
            raise TypeError(f"can only merge ActivationStatistics, got {type(other).__name__}")
        if other.shape != self.shape:
            raise ValueError(
                f"cannot merge statistics of neuron shape {tuple(self.shape)} and "
                f"{tuple(other.shape)}"
            )
        if (self.reduce_dims, self.reduce_mode) != (other.reduce_dims, other.reduce_mode):
            raise ValueError(
                f"cannot merge statistics reduced differently: reduce_dims={self.reduce_dims}, "
                f"reduce_mode={self.reduce_mode!r} vs reduce_dims={other.reduce_dims}, "
                f"reduce_mode={other.reduce_mode!r}"
            )
        if self.layer is not None and other.layer is not None and self.layer != other.layer:
            raise ValueError(
                f"cannot merge statistics of layer {self.layer!r} with those of {other.layer!r}"
            )
        device = self.mean.device
        acc = _Accumulator.from_stats(self)
        acc.add(_Accumulator.from_stats(other, device))
        return acc.result(self.layer or other.layer, self.reduce_dims, self.reduce_mode)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (nested lists); ``from_dict`` reads it back exactly."""
        return {
            "layer": self.layer,
            "shape": list(self.shape),
            "count": self.count,
            "reduce_dims": list(self.reduce_dims),
            "reduce_mode": self.reduce_mode,
            "mean": self.mean.tolist(),
            "mean_abs": self.mean_abs.tolist(),
            "mean_sq": self.mean_sq.tolist(),
            "frac_active": self.frac_active.tolist(),
            "std": self.std.tolist(),
            "m2": self.m2.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ActivationStatistics:
        shape = tuple(d["shape"])

        def t(key: str) -> Tensor:
            return torch.tensor(d[key], dtype=torch.float64).reshape(shape)

        return cls(
            mean=t("mean"),
            mean_abs=t("mean_abs"),
            mean_sq=t("mean_sq"),
            frac_active=t("frac_active"),
            m2=t("m2"),
            count=int(d["count"]),
            layer=d.get("layer"),
            reduce_dims=tuple(d.get("reduce_dims", ())),
            reduce_mode=d.get("reduce_mode", "mean"),
        )


class _Accumulator:
    """Running float64 moments of ``(n, U)`` observation blocks (Chan et al. parallel update)."""

    def __init__(self) -> None:
        self.n = 0
        self.shape: torch.Size | None = None
        self.mean: Tensor | None = None
        self.mean_abs: Tensor | None = None
        self.mean_sq: Tensor | None = None
        self.m2: Tensor | None = None
        self.active: Tensor | None = None  # float64 count of a > 0 (exact below 2**53)

    @classmethod
    def from_stats(
        cls, s: ActivationStatistics, device: torch.device | None = None
    ) -> _Accumulator:
        acc = cls()
        dev = s.mean.device if device is None else device

        def f(t: Tensor) -> Tensor:
            return t.to(device=dev, dtype=torch.float64).reshape(-1)

        acc.n = s.count
        acc.shape = s.shape
        acc.mean, acc.mean_abs, acc.mean_sq, acc.m2 = (
            f(s.mean),
            f(s.mean_abs),
            f(s.mean_sq),
            f(s.m2),
        )
        acc.active = (f(s.frac_active) * s.count).round()
        return acc

    @classmethod
    def from_block(cls, a: Tensor, shape: torch.Size) -> _Accumulator:
        """Moments of a block ``a`` of shape ``(n, U)`` (already float64)."""
        acc = cls()
        acc.n = a.shape[0]
        acc.shape = shape
        acc.mean = a.mean(dim=0)
        acc.m2 = (a - acc.mean).square().sum(dim=0)
        acc.mean_abs = a.abs().mean(dim=0)
        acc.mean_sq = a.square().mean(dim=0)
        acc.active = (a > 0).sum(dim=0).to(torch.float64)
        return acc

    def add(self, other: _Accumulator) -> None:
        if other.n == 0:
            return
        if self.n == 0:
            self.__dict__.update(other.__dict__)
            return
        na, nb = self.n, other.n
        n = na + nb
        wb = nb / n
        delta = other.mean - self.mean
        self.mean = self.mean + delta * wb
        self.m2 = self.m2 + other.m2 + delta.square() * (na * wb)
        self.mean_abs = self.mean_abs + (other.mean_abs - self.mean_abs) * wb
        self.mean_sq = self.mean_sq + (other.mean_sq - self.mean_sq) * wb
        self.active = self.active + other.active
        self.n = n

    def result(
        self, layer: str | None, reduce_dims: tuple[int, ...], reduce_mode: str
    ) -> ActivationStatistics:
        shape = self.shape

        def out(t: Tensor) -> Tensor:
            return t.reshape(shape).cpu()

        return ActivationStatistics(
            mean=out(self.mean),
            mean_abs=out(self.mean_abs),
            mean_sq=out(self.mean_sq),
            frac_active=out(self.active / self.n),
            m2=out(self.m2),
            count=self.n,
            layer=layer,
            reduce_dims=reduce_dims,
            reduce_mode=reduce_mode,
        )


def _batch_inputs(batch: Any, index: int) -> tuple[Tensor, ...]:
    """The model inputs of one batch: a tensor, ``(x, y, ...)`` / ``[x, ...]`` or a dict."""
    where = f"batch {index}"
    if isinstance(batch, dict):
        for key in ("input", "x"):
            if key in batch:
                x = batch[key]
                break
        else:
            raise AttributionError(
                f"{where} is a dict with keys {sorted(map(str, batch))}; activation_statistics "
                "reads the input from the key 'input' or 'x'"
            )
    elif isinstance(batch, (tuple, list)):
        if len(batch) == 0:
            raise AttributionError(f"{where} is an empty {type(batch).__name__}")
        x = batch[0]  # (inputs, labels, ...): the first element is the input
    else:
        x = batch
    if isinstance(x, (tuple, list)):  # several model inputs
        xs, _ = format_inputs(x, where, require_float=False)
    elif isinstance(x, Tensor):
        xs, _ = format_inputs(x, where, require_float=False)
    else:
        raise AttributionError(
            f"{where}: expected a tensor, a tuple/list whose first element is the input, or a "
            f"dict with key 'input' or 'x'; got {type(x).__name__}"
        )
    return xs


def _model_device(model: nn.Module) -> torch.device | None:
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return None


def _normalise_reduce_dims(dims: Sequence[int], ndim: int, name: str) -> tuple[int, ...]:
    out = []
    for d in dims:
        if isinstance(d, bool) or not isinstance(d, int):
            raise AttributionError(f"reduce_dims must hold ints, got {d!r}")
        dd = d + ndim if d < 0 else d
        if not 1 <= dd < ndim:
            raise AttributionError(
                f"reduce_dim {d} is out of range for layer {name!r} whose output has {ndim} "
                f"dimensions (dimension 0 is the batch and cannot be reduced)"
            )
        out.append(dd)
    if len(set(out)) != len(out):
        raise AttributionError(f"reduce_dims {tuple(dims)} repeats a dimension")
    return tuple(sorted(out))


@contextlib.contextmanager
def _collect_mode(model: nn.Module, mode: str) -> Iterator[None]:
    """Eval (silently) or train mode; batch-norm running statistics are never changed."""
    modes = {m: m.training for m in model.modules()}
    saved = []
    if mode == "train":
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                saved.extend((b, b.detach().clone()) for b in m.buffers(recurse=False))
    model.train(mode == "train")
    try:
        yield
    finally:
        for buf, value in saved:
            buf.copy_(value)
        for m, training in modes.items():
            m.training = training


def activation_statistics(
    model: nn.Module,
    layer: nn.Module | str,
    data: Iterable[Any] | Tensor,
    *,
    layer_output_index: int | None = None,
    reduce_dims: int | Sequence[int] | None = None,
    reduce: Literal["channel"] | None = None,
    reduce_mode: Literal["mean", "pool"] = "mean",
    max_batches: int | None = None,
    device: torch.device | str | None = None,
    collect_mode: Literal["eval", "train"] = "eval",
    progress: bool = False,
) -> ActivationStatistics:
    """Stream ``data`` through ``model`` and accumulate per-neuron statistics of ``layer``.

    Args:
        model: the model; called as ``model(*inputs)``.
        layer: a module of ``model`` or its dotted name.
        data: a DataLoader or any iterable of batches. A batch is a tensor (the input), a
            tuple/list whose first element is the input (``(x, y)`` from a DataLoader; the
            first element may itself be a tuple of inputs for multi-input models), or a dict
            with key ``"input"`` or ``"x"``. A bare tensor is taken as one batch.
        layer_output_index: which tensor of a layer that returns a tuple.
        reduce_dims: dimensions of the layer output (batch dimension 0 counted, so ``(2, 3)``
            for ``(N, C, H, W)``) to reduce; see ``reduce_mode``. Default: none, every element
            of the per-example output is a neuron.
        reduce: ``"channel"`` is shorthand for ``reduce_dims = (2, ..., ndim − 1)`` of a
            ``(N, C, *)`` output: per-channel statistics of shape ``(C,)``.
        reduce_mode: ``"mean"`` averages each example over the reduced dimensions before the
            statistics (count = examples); ``"pool"`` treats every position as an observation
            (count = examples × positions). See the module docstring.
        max_batches: stop after this many batches.
        device: where to run the batches; default the device of the model's parameters
            (batches stay where they are for a model without parameters or buffers).
        collect_mode: ``"eval"`` (default; dropout off, batch norm with running statistics) or
            ``"train"`` (as AGS-CL collects). The model's modes are restored afterwards and
            batch-norm running statistics are left unchanged in either case.
        progress: show a tqdm progress bar.

    Returns:
        :class:`ActivationStatistics` with float64 tensors on the CPU.
    """
    name, module = resolve_layer(model, layer)
    if reduce is not None:
        if reduce != "channel":
            raise AttributionError(f"reduce must be None or 'channel', got {reduce!r}")
        if reduce_dims is not None:
            raise AttributionError("pass either reduce='channel' or reduce_dims, not both")
    if reduce_mode not in ("mean", "pool"):
        raise AttributionError(f"reduce_mode must be 'mean' or 'pool', got {reduce_mode!r}")
    if collect_mode not in ("eval", "train"):
        raise AttributionError(f"collect_mode must be 'eval' or 'train', got {collect_mode!r}")
    if max_batches is not None and (
        isinstance(max_batches, bool) or not isinstance(max_batches, int) or max_batches < 1
    ):
        raise AttributionError(f"max_batches must be a positive int or None, got {max_batches!r}")
    if isinstance(reduce_dims, int) and not isinstance(reduce_dims, bool):
        reduce_dims = (reduce_dims,)
    dev = torch.device(device) if device is not None else _model_device(model)

    batches: Iterable[Any] = [data] if isinstance(data, Tensor) else data
    total: int | None
    try:
        total = len(batches)  # type: ignore[arg-type]
    except TypeError:
        total = None
    if max_batches is not None:
        total = max_batches if total is None else min(total, max_batches)

    from tqdm.auto import tqdm

    acc = _Accumulator()
    dims: tuple[int, ...] | None = None
    per_example: torch.Size | None = None
    seen = 0
    with _collect_mode(model, collect_mode), torch.no_grad():
        bar = tqdm(batches, total=total, desc=f"activations {name}", disable=not progress)
        try:
            for i, batch in enumerate(bar):
                if max_batches is not None and i >= max_batches:
                    break
                xs = _batch_inputs(batch, i)
                if dev is not None:
                    xs = tuple(x.to(dev) for x in xs)
                with capture_layer(module, name, layer_output_index) as cap:
                    call_model(model, xs, ())
                a = cap.single().detach()
                check_batch_first(name, a, xs[0].shape[0])
                if dims is None:
                    if reduce == "channel":
                        if a.dim() < 3:
                            raise AttributionError(
                                f"reduce='channel' needs a (N, C, *) output with spatial "
                                f"dimensions; layer {name!r} returned shape {tuple(a.shape)}"
                            )
                        dims = tuple(range(2, a.dim()))
                    else:
                        dims = _normalise_reduce_dims(reduce_dims or (), a.dim(), name)
                    per_example = a.shape[1:]
                elif a.shape[1:] != per_example:
                    raise AttributionError(
                        f"layer {name!r} returned shape {tuple(a.shape)} for batch {i}, but "
                        f"per-example shape {tuple(per_example)} for earlier batches"
                    )
                acc.add(_block(a, dims, reduce_mode))
                seen += 1
        finally:
            bar.close()
    if seen == 0:
        raise AttributionError("data yielded no batches; there is nothing to take statistics of")
    return acc.result(name, dims or (), reduce_mode)


def _block(a: Tensor, dims: tuple[int, ...], reduce_mode: str) -> _Accumulator:
    """``(n_obs, U)`` float64 observations of one batch and their moments."""
    dev = a.device
    if dev.type == "mps":  # no float64 there
        a = a.cpu()
    a = a.to(torch.float64)
    kept = [d for d in range(1, a.dim()) if d not in dims]
    shape = torch.Size(a.shape[d] for d in kept)
    if dims and reduce_mode == "mean":
        a = a.mean(dim=dims)
    elif dims:  # pool: reduced positions become observations
        a = a.permute(0, *dims, *kept)
    obs = a.reshape(-1, math.prod(shape))
    return _Accumulator.from_block(obs, shape)
