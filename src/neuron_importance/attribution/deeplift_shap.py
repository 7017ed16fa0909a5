"""DeepLIFT averaged over several references (DeepSHAP; Lundberg & Lee 2017).

``C̄_i(x) = (1/R) Σ_r C_i(x; x⁰_r)``, which sums to ``t(x) − (1/R) Σ_r t(x⁰_r)``. With the
Rescale rule and a background sample as references this approximates SHAP values
(``shap.DeepExplainer``); with dinucleotide-shuffled references it is the DeepLIFT
authors' multi-reference scoring for genomics.

Unlike Captum's ``DeepLiftShap`` the reference set may differ per input (shape
``(N, R, ...)``), and the ``N × R`` input–reference pairs are processed in chunks under a
memory cap instead of being expanded all at once.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ._common import (
    AttributionError,
    TargetType,
    TensorOrTuple,
    check_finite,
    convergence_warning,
    eval_mode,
    format_additional_args,
    format_inputs,
    format_target,
    run_forward,
    unpack,
)
from .deeplift import DeepLift, SplitContributions, _default_tol


class DeepLiftShap:
    """DeepLIFT averaged over a set of references.

    Args:
        model, rule, output, softmax_mean_subtraction, unsupported: as for :class:`DeepLift`.
        max_memory_mb: cap on the activation memory of one chunk of input–reference pairs;
            the per-pair cost is measured on the first pair.
    """

    def __init__(
        self,
        model: nn.Module,
        rule: str = "rescale",
        output: str = "logit",
        softmax_mean_subtraction: bool = False,
        unsupported: str = "error",
        completeness_tol: float | None = None,
        max_memory_mb: float = 512.0,
    ) -> None:
        self._deeplift = DeepLift(model, rule=rule, output=output,
                                  softmax_mean_subtraction=softmax_mean_subtraction,
                                  unsupported=unsupported, completeness_tol=float("inf"))
        self.completeness_tol = completeness_tol
        self.max_memory_mb = max_memory_mb

    def attribute(
        self,
        inputs: TensorOrTuple,
        baselines: TensorOrTuple,
        target: TargetType = None,
        additional_forward_args: Any = None,
        return_convergence_delta: bool = False,
        split: bool = False,
        internal_batch_size: int | None = None,
    ):
        """Mean DeepLIFT contributions over references.

        Args:
            baselines: the references: a tensor ``(R, *x.shape[1:])`` shared by every input,
                or ``(N, R, *x.shape[1:])`` with a set per input (e.g. dinucleotide shuffles of
                each sequence); a tuple of those for tuple inputs.
            internal_batch_size: pairs per chunk; by default chosen from ``max_memory_mb``.
            Other arguments as for :meth:`DeepLift.attribute`. The convergence delta is
            ``Σ_i C̄_i − (t(x) − mean_r t(x⁰_r))`` per input.
        """
        xs, was_tuple = format_inputs(inputs)
        check_finite(xs)
        if internal_batch_size is not None and (
            isinstance(internal_batch_size, bool) or not isinstance(internal_batch_size, int)
            or internal_batch_size < 1
        ):
            raise AttributionError(
                f"internal_batch_size must be a positive int or None, got {internal_batch_size!r}"
            )
        refs = self._format_references(baselines, xs)
        n = xs[0].shape[0]
        extra = format_additional_args(additional_forward_args)
        targets = self._per_example_target(target, n)
        model = self._deeplift.model
        with eval_mode(model, "DeepLiftShap"):
            # Check the target against the whole batch's output once, so that an error names
            # the input example and the batch shape rather than a pair inside some chunk.
            with torch.no_grad():
                format_target(targets, run_forward(model, xs, extra))
            result, delta = self._accumulate(xs, was_tuple, refs, targets, extra, split,
                                             internal_batch_size)
        total = result.total if split else result
        total = total if was_tuple else (total,)
        tol = self.completeness_tol or _default_tol(xs[0].dtype)
        scale = sum(t.reshape(n, -1).sum(1) for t in total) - delta
        convergence_warning("DeepLiftShap", delta, scale, tol)
        if return_convergence_delta:
            return result, delta
        return result

    def _accumulate(self, xs, was_tuple, refs, targets, extra, split, internal_batch_size):
        """Sum the contributions of all input–reference pairs chunk by chunk; return means."""
        n = xs[0].shape[0]
        r = refs[0].shape[1]
        pair_input = torch.arange(n, device=xs[0].device).repeat_interleave(r)
        pair_ref = torch.arange(r, device=xs[0].device).repeat(n)
        total_pairs = n * r

        sums_pos = [torch.zeros_like(x) for x in xs]
        sums_neg = [torch.zeros_like(x) for x in xs] if split else None
        delta_sum = torch.zeros(n, dtype=xs[0].dtype, device=xs[0].device)
        chunk = internal_batch_size
        start = 0
        while start < total_pairs:
            size = chunk if chunk is not None else 1  # the first pair measures the cost
            sel = slice(start, min(start + size, total_pairs))
            ii, rr = pair_input[sel], pair_ref[sel]
            res, delta, engine_bytes = self._run_pairs(xs, refs, ii, rr, targets, extra, split, n)
            if split:
                for k in range(len(xs)):
                    sums_pos[k].index_add_(0, ii, res.positive[k])
                    sums_neg[k].index_add_(0, ii, res.negative[k])
            else:
                for k in range(len(xs)):
                    sums_pos[k].index_add_(0, ii, res[k])
            delta_sum.index_add_(0, ii, delta)
            start = sel.stop
            if chunk is None:
                cap = self.max_memory_mb * 2**20
                per_pair = max(engine_bytes, 1) * 2  # backward roughly doubles the footprint
                chunk = max(1, int(cap // per_pair))
        mean_pos = tuple(s / r for s in sums_pos)
        delta = delta_sum / r
        if split:
            mean_neg = tuple(s / r for s in sums_neg)
            return SplitContributions(unpack(mean_pos, was_tuple), unpack(mean_neg, was_tuple)), delta
        return unpack(mean_pos, was_tuple), delta

    # ------------------------------------------------------------------ helpers
    def _run_pairs(self, xs, refs, ii, rr, targets, extra, split, n):
        px = tuple(x.index_select(0, ii) for x in xs)
        pr = tuple(ref[ii, rr] for ref in refs)
        pextra = tuple(
            a.index_select(0, ii) if isinstance(a, Tensor) and a.dim() > 0 and a.shape[0] == n
            else a
            for a in extra
        )
        pt = targets.index_select(0, ii) if isinstance(targets, Tensor) else targets
        dl = self._deeplift
        res_pass = dl._propagate(px, pr, pt, pextra, split)
        total = res_pass.contribs
        res: Any = (SplitContributions(res_pass.contribs_pos, res_pass.contribs_neg) if split
                    else total)
        delta = sum(t.reshape(t.shape[0], -1).sum(1) for t in total) - res_pass.delta_t
        return res, delta, getattr(dl, "_last_engine_bytes", 0) / max(len(ii), 1)

    @staticmethod
    def _format_references(baselines, xs: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        """Return references as ``(N, R, ...)`` tensors (shared sets are expanded as views)."""
        if baselines is None:
            raise AttributionError("DeepLiftShap needs a set of references (baselines)")
        items = tuple(baselines) if isinstance(baselines, (tuple, list)) else (baselines,)
        if len(items) != len(xs):
            raise AttributionError(f"got {len(items)} reference sets for {len(xs)} inputs")
        out = []
        r_count = None
        for i, (b, x) in enumerate(zip(items, xs)):
            if not isinstance(b, Tensor):
                raise AttributionError(f"baselines[{i}] must be a tensor of references")
            b = b.to(device=x.device, dtype=x.dtype)
            feat = tuple(x.shape[1:])
            if b.dim() == x.dim() and tuple(b.shape[1:]) == feat:
                b = b.unsqueeze(0).expand(x.shape[0], *b.shape)
            elif b.dim() == x.dim() + 1 and tuple(b.shape[2:]) == feat and b.shape[0] == x.shape[0]:
                pass
            else:
                raise AttributionError(
                    f"baselines[{i}] has shape {tuple(b.shape)}; for inputs of shape "
                    f"{tuple(x.shape)} give (R, {', '.join(map(str, feat))}) shared references "
                    f"or ({x.shape[0]}, R, {', '.join(map(str, feat))}) per-input references"
                )
            if b.shape[1] == 0:
                raise AttributionError(f"baselines[{i}] holds no references")
            if r_count is not None and b.shape[1] != r_count:
                raise AttributionError("every input needs the same number of references")
            r_count = b.shape[1]
            out.append(b)
        check_finite(tuple(out), "baselines")
        return tuple(out)

    @staticmethod
    def _per_example_target(target: TargetType, n: int):
        if target is None or isinstance(target, int):
            return target
        t = torch.as_tensor(target, dtype=torch.long).reshape(-1)
        if t.numel() == 1:
            return int(t)
        if t.numel() != n:
            raise AttributionError(f"target has {t.numel()} entries for a batch of {n} examples")
        return t
