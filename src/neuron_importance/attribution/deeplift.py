"""DeepLIFT (Shrikumar, Greenside & Kundaje, ICML 2017).

Contributions ``C_{Δx_i Δt}`` of every input feature to the change of a target output ``t``
between the input ``x`` and a reference ``x⁰``, with summation-to-delta::

    Σ_i C_{Δx_i Δt} = t(x) − t(x⁰)

They are obtained in one backward pass of *multipliers* ``m = C/Δx`` with the chain rule
``m_{Δx_iΔt} = Σ_j m_{Δx_iΔy_j} m_{Δy_jΔt}``; the rules for each operation are in
:mod:`neuron_importance.rules` and the operation interception in
:mod:`neuron_importance.engine`.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from ..engine.interceptor import RULES, DeltaEngine, Streams
from ..neurons._layers import capture_layer
from ..rules.linear import split_by_sign
from ._common import (
    AttributionError,
    BaselineType,
    TargetType,
    TensorOrTuple,
    check_finite,
    convergence_warning,
    eval_mode,
    format_additional_args,
    format_baselines,
    format_inputs,
    format_target,
    run_forward,
    select_target,
    sum_per_example,
    unpack,
)


class SplitContributions(NamedTuple):
    """Contributions to the positive and negative parts of the target's difference.

    ``positive`` sums to ``Δt⁺`` and ``negative`` to ``Δt⁻``, where ``Δt = Δt⁺ + Δt⁻`` is
    split by the Linear rule at the layer that computes the target (the evidence for and
    against it, §3.3 of the paper). ``total`` is the ordinary contribution.
    """

    positive: TensorOrTuple
    negative: TensorOrTuple

    @property
    def total(self) -> TensorOrTuple:
        if isinstance(self.positive, tuple):
            return tuple(p + n for p, n in zip(self.positive, self.negative))
        return self.positive + self.negative


class _Pass(NamedTuple):
    multipliers: tuple[Tensor, ...]  # of the total target w.r.t. the explained tensors
    contribs: tuple[Tensor, ...]
    contribs_pos: tuple[Tensor, ...] | None  # contributions to Δt⁺ (split=True only)
    contribs_neg: tuple[Tensor, ...] | None
    delta_t: Tensor  # t(x) - t(x0) per example


def _shared_row(b: Tensor) -> Tensor:
    if b.shape[0] > 1 and (b.stride(0) == 0 or bool((b == b[:1]).all())):
        return b[:1]
    return b


def _default_tol(dtype: torch.dtype) -> float:
    return 1e-6 if dtype == torch.float64 else 1e-3


class DeepLift:
    """DeepLIFT with the Rescale or RevealCancel rule, on any PyTorch model.

    Args:
        model: a Python ``nn.Module`` (or any callable module). Its operations are
            intercepted wherever they come from: modules, ``torch.nn.functional``,
            ``torch.*`` functions or tensor methods, and a module may be reused.
        rule: ``"rescale"`` (§3.5.2), ``"reveal_cancel"`` (§3.5.3) or ``"genomics_default"``
            (RevealCancel for nonlinearities fed by a dense layer, Rescale for those fed by a
            convolution, as in the authors' ``NonlinearMxtsMode.DeepLIFT_GenomicsDefault``).
        output: ``"logit"`` (default): when the model ends in softmax, log-softmax or sigmoid,
            attribute to its input (the logits), as the paper advises (§3.6): summation-to-
            delta on a probability attenuates scores. ``"raw"``: attribute to the output as
            returned (a final softmax then raises, since softmax has no DeepLIFT rule).
        softmax_mean_subtraction: with a softmax/log-softmax output, attribute to
            ``z_c − mean_j z_j`` instead of ``z_c`` (the paper's adjustment
            ``C′_c = C_c − (1/n)Σ_j C_j``: a constant added to every logit leaves the softmax
            unchanged). Differences between two classes are unaffected.
        unsupported: ``"error"`` (default) raises :class:`UnsupportedOperationError` for an op
            without a rule; ``"gradient"`` uses the gradient there and warns.
        completeness_tol: relative tolerance of the summation-to-delta check (default 1e-6 in
            float64, 1e-3 in float32); a :class:`CompletenessWarning` names the worst example.
    """

    def __init__(
        self,
        model: nn.Module,
        rule: str = "rescale",
        output: str = "logit",
        softmax_mean_subtraction: bool = False,
        unsupported: str = "error",
        completeness_tol: float | None = None,
    ) -> None:
        if rule not in RULES:
            raise ValueError(f"unknown DeepLIFT rule {rule!r}; choose one of {', '.join(RULES)}")
        if output not in ("logit", "raw"):
            raise ValueError("output must be 'logit' or 'raw'")
        if unsupported not in ("error", "gradient"):
            raise ValueError("unsupported must be 'error' or 'gradient'")
        if isinstance(model, torch.jit.ScriptModule):
            raise AttributionError(
                "DeepLIFT needs a Python model: TorchScript runs outside Python, so its "
                "operations cannot be intercepted (gradient methods still work on it)"
            )
        self.model = model
        self.rule = rule
        self.output = output
        self.softmax_mean_subtraction = softmax_mean_subtraction
        self.unsupported = unsupported
        self.completeness_tol = completeness_tol

    # ------------------------------------------------------------------ public API
    def attribute(
        self,
        inputs: TensorOrTuple,
        baselines: BaselineType = None,
        target: TargetType = None,
        additional_forward_args: Any = None,
        return_convergence_delta: bool = False,
        split: bool = False,
    ):
        """Contributions of each input feature, shaped like ``inputs``.

        Args:
            inputs: a tensor or tuple of tensors, batch first.
            baselines: references ``x⁰`` (default zeros); a number, a tensor broadcastable to
                the input, or a tuple of those.
            target: output index per example (int, list or tensor), or None for a model
                with one output per example.
            additional_forward_args: extra arguments for ``model(*inputs, *args)``.
            return_convergence_delta: also return ``Σ_i C_i − (t(x) − t(x⁰))`` per example.
            split: return a :class:`SplitContributions` (contributions to ``Δt⁺`` and
                ``Δt⁻``) instead of the total.
        """
        xs, was_tuple = format_inputs(inputs)
        res = self._propagate(xs, baselines, target, additional_forward_args, split)
        total = res.contribs
        if split:
            result: Any = SplitContributions(unpack(res.contribs_pos, was_tuple),
                                             unpack(res.contribs_neg, was_tuple))
        else:
            result = unpack(total, was_tuple)
        delta = sum_per_example(total) - res.delta_t
        tol = self.completeness_tol or _default_tol(xs[0].dtype)
        convergence_warning("DeepLift", delta, res.delta_t, tol)
        if return_convergence_delta:
            return result, delta.detach()
        return result

    def multipliers(
        self,
        inputs: TensorOrTuple,
        baselines: BaselineType = None,
        target: TargetType = None,
        additional_forward_args: Any = None,
    ) -> TensorOrTuple:
        """The input multipliers ``m_{Δx_iΔt}`` (contributions are ``m·(x − x⁰)``).

        Defined also where ``x_i = x⁰_i``; this is what hypothetical contributions of
        one-hot DNA need (:func:`neuron_importance.genomics.hypothetical`).
        """
        xs, was_tuple = format_inputs(inputs)
        res = self._propagate(xs, baselines, target, additional_forward_args, False)
        return unpack(res.multipliers, was_tuple)

    # ------------------------------------------------------------------ engine run
    def _propagate(self, xs, baselines, target, additional_forward_args, split,
                   layer: tuple[nn.Module, str, int | None] | None = None) -> _Pass:
        """Run the engine once; contributions of the inputs, or of ``layer``'s neurons."""
        check_finite(xs)
        base = format_baselines(baselines, xs)
        extra = format_additional_args(additional_forward_args)
        use_split = split or self.rule != "rescale"
        engine = DeltaEngine(split=use_split, rule=self.rule, unsupported=self.unsupported)
        deltas_in = tuple((x - b).detach() for x, b in zip(xs, base))
        # A reference shared by the whole batch runs through per-example ops as one row.
        base = tuple(_shared_row(b) for b in base)
        capture = (capture_layer(layer[0], layer[1], layer[2], protect=True)
                   if layer is not None else contextlib.nullcontext())
        with eval_mode(self.model, "DeepLift"), torch.enable_grad():
            if use_split:
                visible = tuple(x.detach().clone() for x in xs)
                leaves = tuple(d.clone().requires_grad_(True) for d in deltas_in)
            else:
                leaves = tuple(x.detach().clone().requires_grad_(True) for x in xs)
                # Non-leaf copies, so that a model may modify its input in place.
                visible = tuple(v.clone() for v in leaves)
            with engine, capture as captured:
                for i, (v, b) in enumerate(zip(visible, base)):
                    parts = split_by_sign(leaves[i]) if use_split else (None, None)
                    engine.track(v, Streams(b.detach(), *parts))
                out = run_forward(self.model, visible, extra)
                out, s = engine.resolve_output(out, self.output)
            idx = format_target(target, out)
            t_x, t_r = self._target(out, idx), self._target(engine.reference_of(out), idx)
            if layer is None:
                wrt = leaves

                def contributions(gs):
                    return tuple(g * d for g, d in zip(gs, deltas_in))
            else:
                y = captured.single()
                if y not in engine.table:
                    raise AttributionError(
                        f"the output of layer {layer[1]!r} does not depend on the inputs")
                ys = engine.table[y]
                if use_split:
                    wrt = (ys.pos, ys.neg)

                    def contributions(gs):
                        return (gs[0] * ys.pos.detach() + gs[1] * ys.neg.detach(),)
                else:
                    wrt = (y,)
                    dy = (y - engine.reference_of(y)).detach()

                    def contributions(gs):
                        return (gs[0] * dy,)
            pos = neg = None
            if use_split:
                t_pos, t_neg = self._target_split(s, idx)
                if split:
                    g_pos = self._grad(t_pos, wrt, retain=True)
                    g_neg = self._grad(t_neg, wrt, retain=False)
                    pos, neg = contributions(g_pos), contributions(g_neg)
                    grads = tuple(a + b for a, b in zip(g_pos, g_neg))
                    total = tuple(a + b for a, b in zip(pos, neg))
                else:
                    grads = self._grad(t_pos + t_neg, wrt, retain=False)
                    total = contributions(grads)
            else:
                grads = self._grad(t_x, wrt, retain=False)
                total = contributions(grads)
        self._last_engine_bytes = engine.bytes_tracked
        if engine.fallbacks:
            warnings.warn(
                "DeepLift used the gradient for operations without a rule: "
                + "; ".join(sorted(set(engine.fallbacks))[:5]),
                stacklevel=3,
            )
        return _Pass(grads, total, pos, neg, (t_x - t_r).detach())

    @staticmethod
    def _grad(t: Tensor, leaves: tuple[Tensor, ...], retain: bool) -> tuple[Tensor, ...]:
        if not t.requires_grad:
            return tuple(torch.zeros_like(v) for v in leaves)
        grads = torch.autograd.grad(t.sum(), leaves, retain_graph=retain, allow_unused=True)
        return tuple(torch.zeros_like(v) if g is None else g.detach()
                     for g, v in zip(grads, leaves))

    def _mean_sub(self, out: Tensor) -> bool:
        return self.softmax_mean_subtraction and out.dim() == 2

    def _target(self, out: Tensor, idx: Tensor | None) -> Tensor:
        t = select_target(out, idx)
        if self._mean_sub(out):
            t = t - out.mean(dim=1)
        return t

    def _target_split(self, s: Streams, idx: Tensor | None) -> tuple[Tensor, Tensor]:
        tp, tn = select_target(s.pos, idx), select_target(s.neg, idx)
        if self._mean_sub(s.pos):
            # t = Σ_j a_j z_j with a_c = 1 − 1/n > 0 and a_j = −1/n: negative weights swap parts.
            n = s.pos.shape[1]
            tp, tn = (tp * (1 - 1 / n) - (s.neg.sum(1) - tn) / n,
                      tn * (1 - 1 / n) - (s.pos.sum(1) - tp) / n)
        return tp, tn
